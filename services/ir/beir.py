"""Reading BEIR-format datasets: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from services.common.documents import Doc
from services.common.errors import invalid


def check_dataset(path: Path) -> None:
    if not (path / "corpus.jsonl").is_file():
        raise invalid("dataset", f"{path} is not a BEIR dataset: no corpus.jsonl")


def iter_corpus(path: Path) -> Iterator[Doc]:
    with open(path / "corpus.jsonl", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "_id" not in row:
                raise invalid("dataset", f"{path / 'corpus.jsonl'} line {line_no} has no _id")
            yield Doc(str(row["_id"]), row.get("title") or "", row.get("text") or "")


def load_queries(path: Path) -> dict[str, str]:
    file = path / "queries.jsonl"
    if not file.is_file():
        return {}
    with open(file, encoding="utf-8") as fh:
        return {str(r["_id"]): r["text"] for r in map(json.loads, filter(str.strip, fh))}


def splits(path: Path) -> list[str]:
    return sorted(p.stem for p in (path / "qrels").glob("*.tsv"))


def load_qrels(path: Path, split: str) -> dict[str, dict[str, int]]:
    """{qid: {docid: grade}} from qrels/<split>.tsv (header line optional)."""
    file = path / "qrels" / f"{split}.tsv"
    if not file.is_file():
        raise invalid("split", f"no qrels for split {split!r} in {path} (have: {', '.join(splits(path)) or 'none'})")
    qrels: dict[str, dict[str, int]] = {}
    with open(file, encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) < 3 or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    return qrels
