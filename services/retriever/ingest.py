"""Ingestion: documents -> doc store + lexical index + vector index, idempotently.

A document is re-indexed only when its title or text changed (a sha per doc in the doc store).
The doc store records a document only after both indexes committed it, so an interrupted
ingest is finished by simply running it again.
"""

from __future__ import annotations

import logging
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from services.common.documents import Doc
from services.common.errors import ErrorKind, FeedrankError, invalid
from services.ir import beir
from services.retriever.backends import Corpus
from services.retriever.corpus import batched, doc_sha, read_manifest, write_manifest
from services.retriever.embedder import Embedder

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
COMMIT_EVERY = 1024  # documents between index commits


@dataclass
class IngestReport:
    corpus_id: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    documents: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def embed_text(doc: Doc) -> str:
    """What the bi-encoder sees: title and text, as BEIR's dense baselines do."""
    return f"{doc.title} {doc.text}".strip()


def ingest_docs(
    corpus: Corpus,
    embedder: Embedder,
    docs: Iterable[Doc],
    *,
    prune: bool = False,
    progress: Progress | None = None,
    source: str = "",
    backends: tuple[str, str] = ("", ""),
    window: int = 512,
) -> IngestReport:
    """Add new documents, re-index changed ones, skip unchanged ones; `prune` deletes the rest.

    Documents are read `window` at a time: the embedder sorts each window by token count, so a
    wider window pads less.
    """
    started = time.perf_counter()
    report = IngestReport(corpus.corpus_id)
    seen: set[str] = set()
    with corpus.lock:
        pending: list[Doc] = []
        pending_vectors: list[np.ndarray] = []
        for batch in batched(docs, window):
            batch = _dedupe(batch, seen)
            known = corpus.store.shas([d.id for d in batch])
            changed = [d for d in batch if known.get(d.id) != doc_sha(d)]
            report.unchanged += len(batch) - len(changed)
            report.updated += sum(1 for d in changed if d.id in known)
            report.added += sum(1 for d in changed if d.id not in known)
            if changed:
                vectors = embedder.encode([embed_text(d) for d in changed])
                corpus.lexical.upsert(changed)
                corpus.vector.upsert([d.id for d in changed], vectors)
                pending += changed
                pending_vectors.append(vectors)
            if len(pending) >= COMMIT_EVERY:
                _commit(corpus, pending, pending_vectors)
                pending, pending_vectors = [], []
            if progress:
                progress(len(batch))
        _commit(corpus, pending, pending_vectors)
        if prune:
            stale = sorted(corpus.store.ids() - seen)
            report.deleted = _delete_locked(corpus, stale)
        if report.added or report.updated:
            corpus.vector.optimize()
        report.documents = corpus.store.count()
        # An ingest that changed nothing leaves the manifest (and so the corpus version that keys
        # the trainer's caches) as it was: a rerun resumes instead of starting over.
        if report.added or report.updated or report.deleted or not (corpus.root / "manifest.json").is_file():
            _record(corpus, embedder, report, source, backends)
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def delete_docs(corpus: Corpus, ids: list[str], embedder: Embedder, backends: tuple[str, str]) -> IngestReport:
    report = IngestReport(corpus.corpus_id)
    with corpus.lock:
        present = corpus.store.shas(ids)
        report.deleted = _delete_locked(corpus, sorted(present))
        report.documents = corpus.store.count()
        _record(corpus, embedder, report, "", backends)
    return report


def _dedupe(batch: list[Doc], seen: set[str]) -> list[Doc]:
    """Later duplicates of an id within one ingest are dropped (the first one wins)."""
    out = []
    for doc in batch:
        if not doc.id:
            raise invalid("dataset", "a document has an empty id")
        if doc.id not in seen:
            seen.add(doc.id)
            out.append(doc)
    return out


def _commit(corpus: Corpus, docs: list[Doc], vectors: list[np.ndarray]) -> None:
    corpus.lexical.commit()
    corpus.vector.commit()
    if docs:
        corpus.store.upsert(docs, np.concatenate(vectors))


def _delete_locked(corpus: Corpus, ids: list[str]) -> int:
    if not ids:
        return 0
    corpus.lexical.delete(ids)
    corpus.vector.delete(ids)
    corpus.lexical.commit()
    corpus.vector.commit()
    corpus.store.delete(ids)
    return len(ids)


def _record(corpus: Corpus, embedder: Embedder, report: IngestReport, source: str, backends: tuple[str, str]) -> None:
    manifest = read_manifest(corpus.root)
    manifest.update(
        corpus_id=corpus.corpus_id,
        documents=report.documents,
        lexical_backend=backends[0],
        vector_backend=backends[1],
        embedder=embedder.version,
    )
    if source:
        manifest["source"] = source
    write_manifest(corpus.root, manifest)


def copy_beir_extras(dataset: Path, corpus_root: Path) -> list[str]:
    """Queries and qrels next to the corpus, for eval and the trainer. Returns the splits copied."""
    if (dataset / "queries.jsonl").is_file():
        shutil.copy2(dataset / "queries.jsonl", corpus_root / "queries.jsonl")
    copied = []
    for split in beir.splits(dataset):
        (corpus_root / "qrels").mkdir(exist_ok=True)
        shutil.copy2(dataset / "qrels" / f"{split}.tsv", corpus_root / "qrels" / f"{split}.tsv")
        copied.append(split)
    return copied


def count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def download_dataset(name: str, url_template: str, dest_root: Path, timeout: float = 30.0) -> Path:
    """Fetch and unzip a BEIR dataset into dest_root/<name>; an existing copy is reused."""
    target = dest_root / name
    if (target / "corpus.jsonl").is_file():
        return target
    url = url_template.format(name=name)
    dest_root.mkdir(parents=True, exist_ok=True)
    archive = dest_root / f"{name}.zip.part"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as err:
        archive.unlink(missing_ok=True)
        raise FeedrankError(
            ErrorKind.UNAVAILABLE,
            f"cannot download BEIR dataset {name!r} from {url} ({err}); this machine looks offline: "
            f"download it elsewhere and pass its folder with --dataset PATH",
            "dataset",
        ) from err
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(dest_root)
    archive.unlink()
    if not (target / "corpus.jsonl").is_file():
        raise invalid("dataset", f"the archive from {url} has no {name}/corpus.jsonl")
    return target
