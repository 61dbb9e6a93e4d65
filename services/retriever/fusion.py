"""Fusing the lexical and vector legs. Pure functions over (doc_id, score) lists, best first.

Every method weighs the legs by their named weights (`LEGS`; FusionSettings' sparse_weight and
vector_weight, or a version's learned fusion, services/trainer/fusion_learner.py):
- RRF: score = sum over legs of w / (k + rank), rank 1-based (Cormack et al. 2009), the weights scaled to
  average 1 so equal weights give plain RRF's scores.
- weighted: each leg's scores normalised (min-max to [0, 1], or z-score), then
  sparse_weight * lexical + vector_weight * vector. A document a leg did not return gets that
  leg's lowest normalised value (it scored at most as well as the worst returned document).
- DBSF: Qdrant's distribution-based score fusion: each leg mapped with
  (s - (mu - 3 sigma)) / (6 sigma) (sample sigma; 0.5 for a single hit or zero spread), then summed,
  here weighted by the same leg weights (equal weights give Qdrant's order). Missing = 0.
Ties are broken by doc id so the order is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.config import FusionSettings, validated
from services.common.errors import invalid

Hits = Sequence[tuple[str, float]]

# The legs by name, in the order `fuse` takes their hits; a learned fusion names its weights by these.
LEGS = ("lexical", "vector")


@dataclass(frozen=True)
class Fused:
    doc_id: str
    score: float
    rank: int  # 1-based
    lexical_score: float
    lexical_rank: int  # 0 = not returned by the leg
    vector_score: float
    vector_rank: int


def rrf(lexical: Hits, vector: Hits, k: float, sparse_weight: float = 1.0, vector_weight: float = 1.0) -> dict[str, float]:
    total = sparse_weight + vector_weight
    scale = 2.0 / total if total > 0 else 0.0
    scores: dict[str, float] = {}
    for hits, weight in ((lexical, sparse_weight * scale), (vector, vector_weight * scale)):
        for rank, (doc, _) in enumerate(hits, 1):
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
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
        scores = rrf(lexical, vector, rrf_k, sparse_weight, vector_weight)
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


def fuse_by(lexical: Hits, vector: Hits, fusion: FusionSettings, limit: int | None = None) -> list[Fused]:
    """`fuse` with a FusionSettings (the configured one, or a version's learned one)."""
    return fuse(lexical, vector, fusion.method, rrf_k=fusion.rrf_k, sparse_weight=fusion.sparse_weight,
                vector_weight=fusion.vector_weight, normalization=fusion.normalization, limit=limit)


# -- a version's learned fusion (manifest `fusion`) --------------------------------------------

def learned(fusion: FusionSettings) -> dict[str, Any]:
    """How a version records its fusion: the method, its parameters and one weight per named leg."""
    return {"method": fusion.method, "rrf_k": fusion.rrf_k, "normalization": fusion.normalization,
            "weights": {"lexical": fusion.sparse_weight, "vector": fusion.vector_weight}}


def served_fusion(record: Mapping[str, Any] | None, configured: FusionSettings) -> FusionSettings:
    """The fusion a version is served with: its learned one (the manifest's `fusion`), else the configured one."""
    return configured if record is None else validated("fusion", FusionSettings, configured, learned_fields(record))


def learned_fields(record: Any) -> dict[str, Any]:
    """The FusionSettings fields a learned fusion sets; a bad record raises `invalid` naming its field."""
    if not isinstance(record, Mapping):
        raise invalid("fusion", "a version's learned fusion must be an object")
    fields = {k: v for k, v in record.items() if k != "weights"}
    weights = record.get("weights") or {}
    if not isinstance(weights, Mapping):
        raise invalid("fusion.weights", "must map leg names to weights")
    for leg, weight in weights.items():
        if leg not in LEGS:
            raise invalid(f"fusion.weights.{leg}", f"no leg named {leg!r} (the legs are {', '.join(LEGS)})")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise invalid(f"fusion.weights.{leg}", f"must be a number >= 0, got {weight!r}")
    names = {"lexical": "sparse_weight", "vector": "vector_weight"}
    fields.update({names[leg]: float(weight) for leg, weight in weights.items()})
    return fields
