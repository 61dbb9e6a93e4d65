"""Combine a model's scores with what the retriever knew (a version's head: a `Blend` or a `LinearHead`).

Measured (bench/learning.md): a model alone throws away the lexical signal the fused order carries.
- `blend` re-scores the fused top `depth` with (1 - weight) * minmax(fused) + weight * minmax(model);
- `linear_head` re-scores it with a logistic model over LegScores features (LEG_FEATURES), the model's score
  standing in for the vector leg's (a query-adapter version scores exactly the adapted cosine its vector leg
  ranked by). Rows 8/9 of bench/learning.md: it wins over the blend when clicks are noisy.
Below the top `depth` the fused order is kept, under every re-scored candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.engine.manifest import Blend, Head, LinearHead

LEG_FEATURES = (
    "lexical_score", "lexical_score_minmax", "lexical_rr", "vector_score", "vector_score_minmax", "vector_rr",
    "fused_score",
)
RR_K = 60.0  # 1 / (RR_K + rank): the reciprocal-rank features, as RRF's default k


@dataclass(frozen=True)
class Legs:
    """Per candidate, in request order: what the retriever's LegScores said (ranks 1-based, 0 = not returned)."""

    lexical_score: np.ndarray
    lexical_rank: np.ndarray
    vector_rank: np.ndarray
    fused_score: np.ndarray

    @classmethod
    def of(cls, rows: Sequence[tuple[float, int, int, float]]) -> Legs:
        """From (lexical_score, lexical_rank, vector_rank, fused_score) per candidate."""
        a = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
        return cls(a[:, 0], a[:, 1].astype(int), a[:, 2].astype(int), a[:, 3])

    @property
    def known(self) -> bool:
        """Whether the caller sent leg ranks at all (a plain Rerank call sends none)."""
        return bool(np.any(self.lexical_rank > 0) or np.any(self.vector_rank > 0))

    def take(self, rows: np.ndarray) -> Legs:
        return Legs(self.lexical_score[rows], self.lexical_rank[rows], self.vector_rank[rows], self.fused_score[rows])


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


def leg_features(model_scores: np.ndarray, legs: Legs) -> np.ndarray:
    """(n, 7) LEG_FEATURES of the given candidates; min-max runs over exactly these candidates."""
    lexical = np.where(legs.lexical_rank > 0, legs.lexical_score, 0.0)
    vector = np.where(legs.vector_rank > 0, model_scores, 0.0)

    def rr(rank: np.ndarray) -> np.ndarray:
        return np.where(rank > 0, 1.0 / (RR_K + np.maximum(rank, 1)), 0.0)

    return np.stack([
        lexical, _minmax(lexical), rr(legs.lexical_rank), vector, _minmax(vector), rr(legs.vector_rank),
        legs.fused_score,
    ], axis=1).astype(np.float64)


def linear(model_scores: np.ndarray, legs: Legs, head: LinearHead) -> np.ndarray:
    """The fused top `depth` re-scored by 2 + sigmoid(w . z(features) + b), the rest below in fused order."""
    fused = fused_signal(legs.fused_score, len(model_scores))
    order = np.argsort(-fused, kind="stable")
    top, rest = order[: int(head.depth)], order[int(head.depth):]
    X = leg_features(np.asarray(model_scores, dtype=np.float64)[top], legs.take(top))
    z = ((X - np.asarray(head.mean)) / np.asarray(head.scale)) @ np.asarray(head.coef) + float(head.intercept)
    out = np.empty(len(model_scores), dtype=np.float32)
    out[top] = 2.0 + 1.0 / (1.0 + np.exp(-z))
    out[rest] = _minmax(fused)[rest]
    return out


def final_scores(head: Head | None, model_scores: np.ndarray, legs: Legs) -> np.ndarray:
    """What a version's head (`Manifest.head`) does with its scores: nothing, a blend or a linear head.

    A linear head needs leg ranks; a request without them is ranked by the model's own score.
    """
    if isinstance(head, LinearHead):
        return linear(model_scores, legs, head) if legs.known else model_scores
    if isinstance(head, Blend):
        fused = fused_signal(legs.fused_score, len(model_scores))
        return blend(model_scores, fused, float(head.weight), int(head.depth))
    return model_scores
