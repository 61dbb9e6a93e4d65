"""Combine a model's scores with what the retriever knew (a version's head: a `Blend` or a `LinearHead`).

Measured (bench/learning.md): a model alone throws away the lexical signal the fused order carries.
- `blend` re-scores the fused top `depth` with (1 - weight) * minmax(fused) + weight * minmax(model);
- `linear_head` re-scores it with a logistic model over features of the candidates' legs (`leg_features`:
  per leg its score, min-max score and reciprocal rank, then the fused score), the model's score standing
  in for the vector leg's (a query-adapter version scores exactly the adapted cosine its vector leg ranked
  by). Rows 8/9 of bench/learning.md: it wins over the blend when clicks are noisy.
Below the top `depth` the fused order is kept, under every re-scored candidate.
The candidates are the retriever's fused ones (services/common/legs.py `Candidate`), in request order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.common.legs import LEGS, Candidate
from services.engine.manifest import Blend, Head, LinearHead

MODEL_LEG = "vector"  # the leg whose score the model's own score stands in for
LEG_FEATURE_KINDS = ("score", "score_minmax", "rr")  # per leg, in this order


def leg_feature_names(legs: Sequence[str] = LEGS) -> tuple[str, ...]:
    return (*(f"{name}_{kind}" for name in legs for kind in LEG_FEATURE_KINDS), "fused_score")


LEG_FEATURES = leg_feature_names()
RR_K = 60.0  # 1 / (RR_K + rank): the reciprocal-rank features, as RRF's default k


def head_legs(head: LinearHead) -> tuple[str, ...]:
    """The legs a head was fitted on: the first ones of LEGS (a new leg goes last, so older heads keep theirs)."""
    count, extra = divmod(len(head.coef) - 1, len(LEG_FEATURE_KINDS))
    if extra or not 0 < count <= len(LEGS):
        raise ValueError(f"a linear head with {len(head.coef)} coefficients fits no legs of {LEGS}")
    return LEGS[:count]


def legs_known(candidates: Sequence[Candidate]) -> bool:
    """Whether the caller sent leg ranks at all (a plain Rerank call sends none)."""
    return any(hit.rank > 0 for c in candidates for hit in c.legs.values())


def _minmax(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / max(hi - lo, 1e-9)


def fused_signal(fused_scores: Sequence[float] | None, n: int) -> np.ndarray:
    """The retriever's fused scores when the request carries them, else the input order itself."""
    if fused_scores is not None and any(s != 0 for s in fused_scores):
        return np.asarray(fused_scores, dtype=np.float32)
    return -np.arange(n, dtype=np.float32)


def blend(model_scores: np.ndarray, fused: np.ndarray, weight: float, depth: int) -> np.ndarray:
    """Final scores: the fused top `depth` re-scored by the blend (all >= 2), the rest below in fused order."""
    order = np.argsort(-fused, kind="stable")
    top, rest = order[:depth], order[depth:]
    out = np.empty_like(model_scores, dtype=np.float32)
    out[top] = 2.0 + (1.0 - weight) * _minmax(fused[top]) + weight * _minmax(model_scores[top])
    out[rest] = _minmax(fused)[rest]
    return out


def leg_features(model_scores: np.ndarray, candidates: Sequence[Candidate], legs: Sequence[str] = LEGS) -> np.ndarray:
    """(n, 3 * len(legs) + 1) features of the given candidates (`leg_feature_names(legs)`); min-max runs over
    exactly these candidates."""
    def rr(rank: np.ndarray) -> np.ndarray:
        return np.where(rank > 0, 1.0 / (RR_K + np.maximum(rank, 1)), 0.0)

    columns = []
    for name in legs:
        rank = np.asarray([c.leg(name).rank for c in candidates], dtype=np.int64)
        own = model_scores if name == MODEL_LEG else np.asarray([c.leg(name).score for c in candidates], np.float64)
        score = np.where(rank > 0, own, 0.0)
        columns += [score, _minmax(score), rr(rank)]
    columns.append(np.asarray([c.score for c in candidates], dtype=np.float64))
    return np.stack(columns, axis=1).astype(np.float64).reshape(len(candidates), len(columns))


def linear(model_scores: np.ndarray, candidates: Sequence[Candidate], head: LinearHead) -> np.ndarray:
    """The fused top `depth` re-scored by 2 + sigmoid(w . z(features) + b), the rest below in fused order."""
    fused = fused_signal([c.score for c in candidates], len(model_scores))
    order = np.argsort(-fused, kind="stable")
    top, rest = order[: int(head.depth)], order[int(head.depth):]
    X = leg_features(np.asarray(model_scores, dtype=np.float64)[top], [candidates[i] for i in top], head_legs(head))
    z = ((X - np.asarray(head.mean)) / np.asarray(head.scale)) @ np.asarray(head.coef) + float(head.intercept)
    out = np.empty(len(model_scores), dtype=np.float32)
    out[top] = 2.0 + 1.0 / (1.0 + np.exp(-z))
    out[rest] = _minmax(fused)[rest]
    return out


def final_scores(head: Head | None, model_scores: np.ndarray, candidates: Sequence[Candidate]) -> np.ndarray:
    """What a version's head (`Manifest.head`) does with its scores: nothing, a blend or a linear head.

    A linear head needs leg ranks; a request without them is ranked by the model's own score.
    """
    if isinstance(head, LinearHead):
        return linear(model_scores, candidates, head) if legs_known(candidates) else model_scores
    if isinstance(head, Blend):
        fused = fused_signal([c.score for c in candidates], len(model_scores))
        return blend(model_scores, fused, float(head.weight), int(head.depth))
    return model_scores
