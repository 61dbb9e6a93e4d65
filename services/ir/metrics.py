"""IR metrics over plain dicts, pure numpy (no I/O, no feedrank imports).

Inputs:
- run:   {qid: {docid: score}}   higher score = ranked higher; ties broken by docid (ascending),
                                  so results do not depend on dict order.
- qrels: {qid: {docid: grade}}   grade > 0 is relevant; graded gains are used by nDCG.

Conventions (they match ranx / trec_eval):
- Queries are those in qrels. A query missing from the run, or with no relevant (grade > 0)
  document, scores 0 (as ranx counts it). Run queries absent from qrels are ignored.
- nDCG uses the exponential-free (linear) gain `grade / log2(rank + 1)`, as trec_eval's ndcg_cut.
- MRR@k: reciprocal rank of the first relevant document within the top k, else 0.
- Recall@k: relevant documents in the top k / all relevant documents.
- Hit@k: 1 when any relevant document is in the top k.

`per_query(...)` gives each query's value (for paired significance tests); `evaluate(...)` the means.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, float]]

METRICS = ("ndcg", "mrr", "recall", "hit")


def parse_metric(name: str) -> tuple[str, int]:
    """'ndcg@10' -> ('ndcg', 10). Raises ValueError on anything else."""
    base, sep, cut = name.lower().partition("@")
    if base not in METRICS or not sep or not cut.isdigit() or int(cut) < 1:
        raise ValueError(f"unknown metric {name!r}: use one of {', '.join(m + '@k' for m in METRICS)}")
    return base, int(cut)


def ranked(scores: Mapping[str, float], k: int | None = None) -> list[str]:
    """Doc ids best first; ties broken by doc id so the order is deterministic."""
    order = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return [doc for doc, _ in (order if k is None else order[:k])]


def _query_value(metric: str, k: int, docs: list[str], rel: Mapping[str, float]) -> float:
    relevant = {d: g for d, g in rel.items() if g > 0}
    if not relevant:
        return 0.0
    top = docs[:k]
    hits = np.array([1.0 if d in relevant else 0.0 for d in top])
    if metric == "hit":
        return float(hits.any()) if len(hits) else 0.0
    if metric == "recall":
        return float(hits.sum() / len(relevant))
    if metric == "mrr":
        first = np.flatnonzero(hits)
        return float(1.0 / (first[0] + 1)) if len(first) else 0.0
    gains = np.array([float(relevant.get(d, 0.0)) for d in top])
    discounts = 1.0 / np.log2(np.arange(2, len(top) + 2))
    dcg = float((gains * discounts).sum())
    ideal = np.sort(np.array(list(relevant.values()), dtype=float))[::-1][:k]
    idcg = float((ideal * (1.0 / np.log2(np.arange(2, len(ideal) + 2)))).sum())
    return dcg / idcg


def per_query(run: Run, qrels: Qrels, metric: str) -> dict[str, float]:
    """{qid: value} for every query in qrels."""
    base, k = parse_metric(metric)
    out: dict[str, float] = {}
    for qid, rel in qrels.items():
        docs = ranked(run.get(qid, {}), k)
        out[qid] = _query_value(base, k, docs, rel)
    return out


def evaluate(run: Run, qrels: Qrels, metrics: Iterable[str]) -> dict[str, float]:
    """{metric: mean over judged queries}."""
    result = {}
    for metric in metrics:
        values = per_query(run, qrels, metric)
        result[metric] = float(np.mean(list(values.values()))) if values else 0.0
    return result


DEFAULT_METRICS = ("ndcg@10", "mrr@10", "recall@100", "hit@1", "hit@3", "hit@5", "hit@10")
