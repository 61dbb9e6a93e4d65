"""Fusing the retriever's legs. Pure functions over each leg's (doc_id, score) list, best first, by leg name.

Any number of named legs (services/common/legs.py `LEGS`), each with its weight (FusionSettings'
sparse_weight and vector_weight, or a version's learned fusion, services/trainer/fusion_learner.py; equal
shares when none are given), as qdrant-client fuses any number of responses:
- RRF: score = sum over legs of w / (k + rank), rank 1-based (Cormack et al. 2009), the weights scaled to
  average 1 so equal weights give plain RRF's scores.
- weighted: each leg's scores normalised (min-max to [0, 1], or z-score), then the weighted sum over the
  legs. A document a leg did not return gets that leg's lowest normalised value (it scored at most as well
  as the worst returned document).
- DBSF: Qdrant's distribution-based score fusion: each leg mapped with
  (s - (mu - 3 sigma)) / (6 sigma) (sample sigma; 0.5 for a single hit or zero spread), then summed,
  here weighted by the same leg weights (equal weights give Qdrant's order). Missing = 0.
Ties are broken by doc id so the order is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from services.common.config import FusionSettings, validated
from services.common.errors import invalid
from services.common.legs import LEGS, WEIGHT_SETTINGS, Candidate, LegHit

Hits = Sequence[tuple[str, float]]
LegHits = Mapping[str, Hits]  # each leg's hits by leg name, best first


def _leg_weights(legs: LegHits, weights: Mapping[str, float] | None) -> dict[str, float]:
    """One weight per fused leg: the given ones (every leg named, no other), or equal shares."""
    if weights is None:
        return {name: 1.0 / len(legs) for name in legs}
    if set(weights) != set(legs):
        raise ValueError(f"fusion weights name the legs {sorted(weights)}, the hits {sorted(legs)}")
    return {name: float(weights[name]) for name in legs}


def rrf(legs: LegHits, k: float, weights: Mapping[str, float] | None = None) -> dict[str, float]:
    weights = _leg_weights(legs, weights)
    total = sum(weights.values())
    scale = len(weights) / total if total > 0 else 0.0
    scores: dict[str, float] = {}
    for name, hits in legs.items():
        weight = weights[name] * scale
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


def _combine(legs: LegHits, weights: Mapping[str, float] | None, norm, missing_is_min: bool) -> dict[str, float]:
    weights = _leg_weights(legs, weights)
    normalised_legs = []
    for name, hits in legs.items():
        values = norm(np.array([s for _, s in hits], dtype=np.float64))
        normalised = {doc: float(v) for (doc, _), v in zip(hits, values)}
        floor = float(values.min()) if missing_is_min and values.size else 0.0
        normalised_legs.append((normalised, weights[name], floor))
    docs = {doc for hits in legs.values() for doc, _ in hits}
    return {doc: sum(weight * normalised.get(doc, floor) for normalised, weight, floor in normalised_legs)
            for doc in docs}


def weighted(legs: LegHits, weights: Mapping[str, float] | None, normalization: str) -> dict[str, float]:
    norm = {"minmax": minmax, "zscore": zscore}[normalization]
    return _combine(legs, weights, norm, missing_is_min=True)


def dbsf(legs: LegHits, weights: Mapping[str, float] | None = None) -> dict[str, float]:
    return _combine(legs, weights, three_sigma, missing_is_min=False)


def fuse(
    legs: LegHits,
    method: str,
    *,
    weights: Mapping[str, float] | None = None,
    rrf_k: float = 60.0,
    normalization: str = "minmax",
    limit: int | None = None,
) -> list[Candidate]:
    """Documents any leg returned, best first (the first `limit`, or all), with every leg's rank and score."""
    if method == "rrf":
        scores = rrf(legs, rrf_k, weights)
    elif method == "weighted":
        scores = weighted(legs, weights, normalization)
    elif method == "dbsf":
        scores = dbsf(legs, weights)
    else:
        raise ValueError(f"unknown fusion method {method!r}")
    order = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    if limit is not None:
        order = order[:limit]
    by_leg = {name: {doc: LegHit(rank, score) for rank, (doc, score) in enumerate(hits, 1)}
              for name, hits in legs.items()}
    return [Candidate(doc, score, rank, {name: hits[doc] for name, hits in by_leg.items() if doc in hits})
            for rank, (doc, score) in enumerate(order, 1)]


def fusion_weights(fusion: FusionSettings) -> dict[str, float]:
    """The weight FusionSettings gives each leg, by leg name."""
    return {name: getattr(fusion, WEIGHT_SETTINGS[name]) for name in LEGS}


def fuse_by(legs: LegHits, fusion: FusionSettings, limit: int | None = None) -> list[Candidate]:
    """`fuse` with a FusionSettings (the configured one, or a version's learned one)."""
    return fuse(legs, fusion.method, weights=fusion_weights(fusion), rrf_k=fusion.rrf_k,
                normalization=fusion.normalization, limit=limit)


def legs_of(candidates: Sequence[Candidate]) -> dict[str, list[tuple[str, float]]]:
    """The legs behind a fused list (each candidate carries its legs' ranks and scores), each best first."""
    out = {}
    for name in LEGS:
        returned = sorted((c for c in candidates if c.leg(name).rank), key=lambda c: c.leg(name).rank)
        out[name] = [(c.doc_id, c.leg(name).score) for c in returned]
    return out


# -- a version's learned fusion (manifest `fusion`) --------------------------------------------

def learned(fusion: FusionSettings) -> dict[str, Any]:
    """How a version records its fusion: the method, its parameters and one weight per named leg."""
    return {"method": fusion.method, "rrf_k": fusion.rrf_k, "normalization": fusion.normalization,
            "weights": fusion_weights(fusion)}


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
    fields.update({WEIGHT_SETTINGS[leg]: float(weight) for leg, weight in weights.items()})
    return fields
