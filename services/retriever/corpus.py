"""One corpus on disk: its documents, queries and qrels, and the handles of its two indexes.

Layout under `$FEEDRANK_DATA_DIR/corpora/<corpus_id>/` (other stages read it):
- `docs.sqlite`   table `docs(id TEXT PRIMARY KEY, title, text, sha)`: the source of titles,
                  snippets and reranker inputs, and the trainer's document texts.
- `queries.jsonl`, `qrels/<split>.tsv`: BEIR copies, when the corpus came from a BEIR dataset.
- `manifest.json` which backends and embedder the indexes were built with, document count.
- `lexical/` (tantivy) and `vectors/` (qdrant-edge) when the embedded backends are used.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from services.common.documents import Doc
from services.common.errors import ErrorKind, FeedrankError
from services.common.ids import check_corpus_id  # noqa: F401  (re-exported: the corpus modules' callers use it)


def corpora_root(data_dir: Path) -> Path:
    return data_dir / "corpora"


def list_corpus_ids(data_dir: Path) -> list[str]:
    root = corpora_root(data_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "docs.sqlite").is_file())


def doc_sha(doc: Doc) -> str:
    return hashlib.sha256(f"{doc.title}\x00{doc.text}".encode()).hexdigest()[:24]


class DocStore:
    """The documents of one corpus, keyed by doc id (sqlite, safe across threads)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, title TEXT, text TEXT, sha TEXT)")
        # A plain copy of each document's dense vector: the trainer and offline tools read it here,
        # since the embedded vector shard can be open in one process only.
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(docs)")}
        if "vector" not in columns:
            self._db.execute("ALTER TABLE docs ADD COLUMN vector BLOB")
        self._lock = threading.Lock()

    def shas(self, ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                out.update(self._db.execute(f"SELECT id, sha FROM docs WHERE id IN ({marks})", chunk).fetchall())
        return out

    def upsert(self, docs: list[Doc], vectors: np.ndarray | None = None) -> None:
        blobs = [None] * len(docs) if vectors is None else [v.astype(np.float32).tobytes() for v in vectors]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO docs (id, title, text, sha, vector) VALUES (?, ?, ?, ?, ?)",
                [(d.id, d.title, d.text, doc_sha(d), blob) for d, blob in zip(docs, blobs)],
            )
            self._db.execute("COMMIT")

    def vectors(self) -> tuple[list[str], np.ndarray]:
        """Every document that has a stored vector: (ids, float32 matrix), ordered by id."""
        with self._lock:
            rows = self._db.execute("SELECT id, vector FROM docs WHERE vector IS NOT NULL ORDER BY id").fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        return [r[0] for r in rows], np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])

    def delete(self, ids: list[str]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM docs WHERE id = ?", [(i,) for i in ids])
            self._db.execute("COMMIT")

    def get(self, ids: list[str]) -> dict[str, Doc]:
        out: dict[str, Doc] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT id, title, text FROM docs WHERE id IN ({marks})", chunk)
                out.update({r[0]: Doc(r[0], r[1], r[2]) for r in rows})
        return out

    def ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM docs")}

    def iter_docs(self) -> Iterator[Doc]:
        with self._lock:
            rows = self._db.execute("SELECT id, title, text FROM docs ORDER BY id").fetchall()
        for r in rows:
            yield Doc(*r)

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def read_manifest(root: Path) -> dict:
    path = root / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_manifest(root: Path, manifest: dict) -> None:
    tmp = root / "manifest.json.tmp"
    tmp.write_text(json.dumps({**manifest, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
    os.replace(tmp, root / "manifest.json")


def missing_corpus(corpus_id: str, data_dir: Path) -> FeedrankError:
    known = ", ".join(list_corpus_ids(data_dir)) or "none yet: run `feedrank ingest`"
    return FeedrankError(ErrorKind.INVALID_ARGUMENT, f"unknown corpus {corpus_id!r} (known: {known})", "corpus_id")


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
