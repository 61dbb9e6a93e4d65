"""What the trainer reads of a corpus the retriever ingested, and the frozen evaluation set.

The retriever keeps `$FEEDRANK_DATA_DIR/corpora/<id>/` (docs.sqlite, queries.jsonl, qrels/<split>.tsv);
see services/retriever/corpus.py. Document text is built exactly as the retriever builds a
reranker input (title, newline, text, cut to `reranking.rerank_input_snippet_chars`), so the
model trains on what it will score in production.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from services.common.config import Settings
from services.common.errors import ErrorKind, FeedrankError, invalid
from services.ir import beir
from services.retriever.corpus import DocStore, check_corpus_id, corpora_root, missing_corpus, read_manifest


def normalize_query(text: str) -> str:
    """Queries are compared case- and whitespace-insensitively (eval leakage checks)."""
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class GoldenQuestion:
    query: str
    corpus_id: str
    expect_paths: tuple[str, ...]


def load_golden(path: Path, field: str = "golden_path") -> list[GoldenQuestion]:
    """The seed's golden.json: a list of {q, repo|corpus_id, expect_paths} (or {"questions": [...]})."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise invalid(field, f"no golden file at {path}") from err
    except (OSError, ValueError) as err:
        raise invalid(field, f"cannot read golden file {path}: {err}") from err
    rows = data.get("questions") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise invalid(field, f"{path}: expected a list of questions")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("q"), str) or not row["q"].strip():
            raise invalid(field, f"{path}: question {i} has no 'q'")
        paths = row.get("expect_paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise invalid(field, f"{path}: question {i}: expect_paths must be a list of strings")
        out.append(GoldenQuestion(row["q"], str(row.get("corpus_id") or row.get("repo") or ""), tuple(paths)))
    return out


def path_matches(doc_id: str, expect: str) -> bool:
    """A golden path names a document (BEIR id or file path) or every chunk `path:first-last` of a file."""
    return doc_id == expect or doc_id.startswith(expect + ":")


class CorpusData:
    """Read access to one ingested corpus (documents, queries, qrels)."""

    def __init__(self, settings: Settings, corpus_id: str):
        check_corpus_id(corpus_id)
        self.corpus_id = corpus_id
        self.root = corpora_root(settings.data_path) / corpus_id
        if not (self.root / "docs.sqlite").is_file():
            raise missing_corpus(corpus_id, settings.data_path)
        self.store = DocStore(self.root / "docs.sqlite")
        self.snippet_chars = settings.reranking.rerank_input_snippet_chars
        self._ids: list[str] | None = None

    def close(self) -> None:
        self.store.close()

    def texts(self, ids: list[str]) -> dict[str, str]:
        docs = self.store.get(ids)
        return {i: f"{d.title}\n{d.text}".strip()[: self.snippet_chars] for i, d in docs.items()}

    def doc_ids(self) -> list[str]:
        if self._ids is None:
            self._ids = sorted(self.store.ids())
        return self._ids

    def version(self) -> str:
        """Changes when the corpus is re-ingested (keys the evaluation candidate cache)."""
        manifest = read_manifest(self.root)
        return f"{manifest.get('updated_at', '')}|{self.store.count()}"

    def queries(self) -> dict[str, str]:
        return beir.load_queries(self.root)

    def qrels(self, split: str) -> dict[str, dict[str, int]]:
        return beir.load_qrels(self.root, split)

    def splits(self) -> list[str]:
        return beir.splits(self.root)

    def random_ids(self, rng: random.Random, n: int, exclude: set[str]) -> list[str]:
        ids = self.doc_ids()
        out: list[str] = []
        # Rejection sampling: corpora are far larger than the handful of ids excluded.
        for _ in range(n * 20):
            if len(out) >= n or len(ids) <= len(exclude):
                break
            pick = ids[rng.randrange(len(ids))]
            if pick not in exclude and pick not in out:
                out.append(pick)
        return out


@dataclass(frozen=True)
class EvalSet:
    """The frozen evaluation set of a corpus: query texts and graded relevance, never mined."""

    corpus_id: str
    name: str  # "qrels:test" or "golden:<file>"
    queries: dict[str, str]  # qid -> text
    qrels: dict[str, dict[str, int]]

    def texts(self) -> set[str]:
        return {normalize_query(q) for q in self.queries.values()}

    def digest(self) -> str:
        blob = json.dumps([self.name, sorted(self.queries.items()), sorted((q, sorted(r.items())) for q, r in self.qrels.items())])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_split(value: str, field: str) -> tuple[str, float | None]:
    """'test' -> ('test', None); 'train@0.2' -> ('train', 0.2): a seeded share of that split's queries."""
    split, sep, share = value.partition("@")
    if not split or "/" in split:
        raise invalid(field, f"{value!r} is not a split name or 'split@share'")
    if not sep:
        return split, None
    try:
        fraction = float(share)
    except ValueError:
        fraction = -1.0
    if not 0 < fraction < 1:
        raise invalid(field, f"{value!r}: the share after '@' must be a number between 0 and 1")
    return split, fraction


def seeded_share(qids: Iterable[str], share: float, salt: str) -> set[str]:
    """A seeded share of the query ids (at least one): the same ids for the same ids, share and salt."""
    ordered = sorted(qids)
    n = max(1, round(len(ordered) * share)) if ordered else 0
    return set(random.Random(salt).sample(ordered, n))


def eval_holdout(settings: Settings, data: CorpusData) -> set[str]:
    """Query ids of the whole frozen evaluation set (qrels splits only; a golden file's questions have no
    corpus query ids: compare texts with `frozen_texts`). With `eval_split=train@0.2` this is the
    holdout that simulated users (services/demo) must stay off, and that mining never reads."""
    if settings.training.eval_golden:
        return set()
    try:
        return set(eval_set(settings, data, sample=False).queries)
    except FeedrankError as err:
        if err.kind == ErrorKind.FAILED_PRECONDITION:
            return set()
        raise


def eval_set(settings: Settings, data: CorpusData, *, sample: bool = True) -> EvalSet:
    """The corpus's frozen evaluation set: a golden file if configured, else the `eval_split` qrels."""
    training = settings.training
    if training.eval_golden:
        questions = [g for g in load_golden(Path(training.eval_golden), "training.eval_golden")
                     if g.corpus_id in ("", data.corpus_id)]
        ids = data.doc_ids()
        queries, qrels = {}, {}
        for i, g in enumerate(questions):
            rel = {d: 1 for d in ids for p in g.expect_paths if path_matches(d, p)}
            if rel:
                queries[f"golden-{i}"] = g.query
                qrels[f"golden-{i}"] = rel
        name = f"golden:{Path(training.eval_golden).name}"
    else:
        split, share = parse_split(training.eval_split, "training.eval_split")
        if split not in data.splits():
            raise FeedrankError(
                ErrorKind.FAILED_PRECONDITION,
                f"corpus {data.corpus_id} has no frozen evaluation set: no qrels/{split}.tsv "
                "(set training.eval_split or training.eval_golden)",
            )
        all_queries = data.queries()
        qrels = {q: r for q, r in data.qrels(split).items() if q in all_queries and any(g > 0 for g in r.values())}
        if share is not None:
            keep = seeded_share(qrels, share, f"eval-holdout:{training.seed}")
            qrels = {q: r for q, r in qrels.items() if q in keep}
        queries = {q: all_queries[q] for q in qrels}
        name = f"qrels:{training.eval_split}"
    if not queries:
        raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"corpus {data.corpus_id}: the evaluation set {name} is empty")
    if sample and training.eval_max_queries and len(queries) > training.eval_max_queries:
        keep = sorted(random.Random(training.seed).sample(sorted(queries), training.eval_max_queries))
        queries = {q: queries[q] for q in keep}
        qrels = {q: qrels[q] for q in keep}
    return EvalSet(data.corpus_id, name, queries, qrels)


def frozen_texts(settings: Settings, data: CorpusData) -> set[str]:
    """Every eval query text of the corpus (the whole set, not the sample): what mining must skip."""
    try:
        return eval_set(settings, data, sample=False).texts()
    except FeedrankError as err:
        if err.kind == ErrorKind.FAILED_PRECONDITION:
            return set()  # no eval set declared: nothing to keep apart
        raise


def train_queries(settings: Settings, data: CorpusData, spec: str,
                  field: str = "training.train_split") -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """(qrels of the queries mining may learn from, why the others were skipped) for qrels split `spec`:
    'train', or 'train@0.25' for a seeded share of them. Only queries with a judged relevant document,
    outside the frozen evaluation set; the demo's simulated users ask the split's other queries."""
    split, share = parse_split(spec, field)
    training = settings.training
    if not training.eval_golden:
        eval_split, eval_share = parse_split(training.eval_split, "training.eval_split")
        if split == eval_split and eval_share is None:
            raise invalid(field, f"{split!r} is the frozen evaluation split; it is never mined")
    queries, frozen, frozen_text = data.queries(), eval_holdout(settings, data), frozen_texts(settings, data)
    skipped: dict[str, int] = {}
    minable = {}
    for qid, rel in sorted(data.qrels(split).items()):
        if qid not in queries or not any(g > 0 for g in rel.values()):
            reason = "no_positive"
        elif qid in frozen or normalize_query(queries[qid]) in frozen_text:
            reason = "eval_query"
        else:
            minable[qid] = rel
            continue
        skipped[reason] = skipped.get(reason, 0) + 1
    if share is not None:
        keep = seeded_share(minable, share, f"labelled:{training.seed}")
        skipped["outside_share"] = len(minable) - len(keep)
        minable = {q: r for q, r in minable.items() if q in keep}
    return minable, skipped
