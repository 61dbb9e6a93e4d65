"""Fusing the lexical and vector legs. Pure functions over (doc_id, score) lists, best first.

- RRF: score = sum over legs of 1 / (k + rank), rank 1-based (Cormack et al. 2009).
- weighted: each leg's scores normalised (min-max to [0, 1], or z-score), then
  sparse_weight * lexical + vector_weight * vector. A document a leg did not return gets that
  leg's lowest normalised value (it scored at most as well as the worst returned document).
- DBSF: Qdrant's distribution-based score fusion: each leg mapped with
  (s - (mu - 3 sigma)) / (6 sigma) (sample sigma; 0.5 for a single hit or zero spread), then summed,
  here weighted by the same leg weights (equal weights give Qdrant's order). Missing = 0.
Ties are broken by doc id so the order is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Hits = Sequence[tuple[str, float]]


@dataclass(frozen=True)
class Fused:
    doc_id: str
    score: float
    rank: int  # 1-based
    lexical_score: float
    lexical_rank: int  # 0 = not returned by the leg
    vector_score: float
    vector_rank: int


def rrf(lexical: Hits, vector: Hits, k: float) -> dict[str, float]:
    scores: dict[str, float] = {}
    for hits in (lexical, vector):
        for rank, (doc, _) in enumerate(hits, 1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return scores


def minmax(values: np.ndarray) -> np.ndarray:
    if values.size == 0:
        return values
    low, high = values.min(), values.max()
    return np.ones_like(values) if high == low else (values - low) / (high - low)


def zscore(values: np.ndarray) -> np.ndarray:
    if values.size == 0:
        return values
    std = values.std()
    return np.zeros_like(values) if std == 0 else (values - values.mean()) / std


def three_sigma(values: np.ndarray) -> np.ndarray:
    if values.size == 0:
        return values
    if values.size == 1:
        return np.full_like(values, 0.5)
    std = values.std(ddof=1)
    if std == 0:
        return np.full_like(values, 0.5)
    low = values.mean() - 3 * std
    return (values - low) / (6 * std)


def _combine(lexical: Hits, vector: Hits, w_lex: float, w_vec: float, norm, missing_is_min: bool) -> dict[str, float]:
    scores: dict[str, float] = {}
    legs = []
    for hits, weight in ((lexical, w_lex), (vector, w_vec)):
        values = norm(np.array([s for _, s in hits], dtype=np.float64))
        normalised = {doc: float(v) for (doc, _), v in zip(hits, values)}
        floor = float(values.min()) if missing_is_min and values.size else 0.0
        legs.append((normalised, weight, floor))
    docs = {doc for hits in (lexical, vector) for doc, _ in hits}
    for doc in docs:
        scores[doc] = sum(weight * normalised.get(doc, floor) for normalised, weight, floor in legs)
    return scores


def weighted(lexical: Hits, vector: Hits, sparse_weight: float, vector_weight: float, normalization: str) -> dict[str, float]:
    norm = {"minmax": minmax, "zscore": zscore}[normalization]
    return _combine(lexical, vector, sparse_weight, vector_weight, norm, missing_is_min=True)


def dbsf(lexical: Hits, vector: Hits, sparse_weight: float, vector_weight: float) -> dict[str, float]:
    return _combine(lexical, vector, sparse_weight, vector_weight, three_sigma, missing_is_min=False)


def fuse(
    lexical: Hits,
    vector: Hits,
    method: str,
    *,
    rrf_k: float = 60.0,
    sparse_weight: float = 0.5,
    vector_weight: float = 0.5,
    normalization: str = "minmax",
    limit: int | None = None,
) -> list[Fused]:
    """Documents either leg returned, best first (the first `limit`, or all), with both legs' scores and ranks."""
    if method == "rrf":
        scores = rrf(lexical, vector, rrf_k)
    elif method == "weighted":
        scores = weighted(lexical, vector, sparse_weight, vector_weight, normalization)
    elif method == "dbsf":
        scores = dbsf(lexical, vector, sparse_weight, vector_weight)
    else:
        raise ValueError(f"unknown fusion method {method!r}")
    order = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    if limit is not None:
        order = order[:limit]
    lex = {doc: (score, rank) for rank, (doc, score) in enumerate(lexical, 1)}
    vec = {doc: (score, rank) for rank, (doc, score) in enumerate(vector, 1)}
    absent = (0.0, 0)
    out = []
    for rank, (doc, score) in enumerate(order, 1):
        lex_score, lex_rank = lex.get(doc, absent)
        vec_score, vec_rank = vec.get(doc, absent)
        out.append(Fused(doc, score, rank, lex_score, lex_rank, vec_score, vec_rank))
    return out
