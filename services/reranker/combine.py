"""Blend a model's scores with the fused order the candidates came in (a version's `blend` setting).

Measured (bench/learning.md): a model alone throws away the lexical signal the fused order carries;
re-scoring the fused top `depth` with (1 - weight) * minmax(fused) + weight * minmax(model) keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
