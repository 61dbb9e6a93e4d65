"""Fusion over named legs gives, for the two served legs, exactly what the two-leg fusion gave.

`_two_leg_fuse` below is the two-leg code as it was before fusion took any number of named legs
(services/retriever/fusion.py at 508cded), kept verbatim as the oracle: every method, weight and
normalisation must give the same documents in the same order with bit-identical scores, ranks and
per-leg (rank, score), on random legs with overlaps, ties, empty and single-hit legs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.config import FusionSettings
from services.retriever import fusion

# -- the two-leg fusion as it was (the oracle) ------------------------------------------------------


def _rrf(lexical, vector, k, sparse_weight=1.0, vector_weight=1.0):
    total = sparse_weight + vector_weight
    scale = 2.0 / total if total > 0 else 0.0
    scores = {}
    for hits, weight in ((lexical, sparse_weight * scale), (vector, vector_weight * scale)):
        for rank, (doc, _) in enumerate(hits, 1):
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
    return scores


def _minmax(values):
    if values.size == 0:
        return values
    low, high = values.min(), values.max()
    return np.ones_like(values) if high == low else (values - low) / (high - low)


def _zscore(values):
    if values.size == 0:
        return values
    std = values.std()
    return np.zeros_like(values) if std == 0 else (values - values.mean()) / std


def _three_sigma(values):
    if values.size == 0:
        return values
    if values.size == 1:
        return np.full_like(values, 0.5)
    std = values.std(ddof=1)
    if std == 0:
        return np.full_like(values, 0.5)
    low = values.mean() - 3 * std
    return (values - low) / (6 * std)


def _combine(lexical, vector, w_lex, w_vec, norm, missing_is_min):
    scores = {}
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


def _two_leg_fuse(lexical, vector, method, *, rrf_k=60.0, sparse_weight=0.5, vector_weight=0.5,
                  normalization="minmax", limit=None):
    """(doc_id, score, rank, lexical_score, lexical_rank, vector_score, vector_rank) per fused document."""
    if method == "rrf":
        scores = _rrf(lexical, vector, rrf_k, sparse_weight, vector_weight)
    elif method == "weighted":
        norm = {"minmax": _minmax, "zscore": _zscore}[normalization]
        scores = _combine(lexical, vector, sparse_weight, vector_weight, norm, missing_is_min=True)
    else:
        scores = _combine(lexical, vector, sparse_weight, vector_weight, _three_sigma, missing_is_min=False)
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
        out.append((doc, score, rank, lex_score, lex_rank, vec_score, vec_rank))
    return out


# -- the N-leg fusion, read back in the oracle's shape ----------------------------------------------


def _named_fuse(lexical, vector, method, *, rrf_k, sparse_weight, vector_weight, normalization, limit):
    fused = fusion.fuse({"lexical": lexical, "vector": vector}, method,
                        weights={"lexical": sparse_weight, "vector": vector_weight},
                        rrf_k=rrf_k, normalization=normalization, limit=limit)
    return [(c.doc_id, c.score, c.rank, c.leg("lexical").score, c.leg("lexical").rank,
             c.leg("vector").score, c.leg("vector").rank) for c in fused]


# A small id alphabet makes the legs overlap; few distinct scores make ties (within a leg and fused).
_DOCS = st.sampled_from([f"d{i}" for i in range(12)])
_SCORES = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.floats(-50, 50, allow_nan=False, width=32))
_LEG = st.lists(st.tuples(_DOCS, _SCORES), max_size=10, unique_by=lambda hit: hit[0]).map(
    lambda hits: sorted(hits, key=lambda hit: -hit[1]))  # a leg is best first
_WEIGHT = st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 5, allow_nan=False))


@settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lexical=_LEG, vector=_LEG, method=st.sampled_from(["rrf", "weighted", "dbsf"]),
       normalization=st.sampled_from(["minmax", "zscore"]), rrf_k=st.sampled_from([1.0, 60.0, 7.5]),
       sparse_weight=_WEIGHT, vector_weight=_WEIGHT, limit=st.one_of(st.none(), st.integers(0, 12)))
def test_named_legs_fuse_two_legs_exactly_as_the_two_leg_code(lexical, vector, method, normalization, rrf_k,
                                                              sparse_weight, vector_weight, limit):
    kwargs = {"rrf_k": rrf_k, "sparse_weight": sparse_weight, "vector_weight": vector_weight,
              "normalization": normalization, "limit": limit}
    # Exact equality, scores included: the served order and the LegScores on the wire must not move.
    assert _named_fuse(lexical, vector, method, **kwargs) == _two_leg_fuse(lexical, vector, method, **kwargs)


LEX = [("a", 12.0), ("b", 9.0), ("c", 3.0), ("e", 3.0)]
VEC = [("c", 0.9), ("d", 0.8), ("a", 0.5)]


@pytest.mark.parametrize("fields", [
    {}, {"method": "weighted", "sparse_weight": 0.3, "vector_weight": 0.7}, {"method": "dbsf", "sparse_weight": 0.0},
    {"method": "weighted", "normalization": "zscore", "vector_weight": 0.2}, {"rrf_k": 5.0, "sparse_weight": 0.9},
])
def test_fuse_by_reads_each_legs_weight_from_its_setting(fields):
    """sparse_weight weighs the lexical leg and vector_weight the vector leg, as they always did."""
    configured = FusionSettings(**fields)
    expected = _two_leg_fuse(LEX, VEC, configured.method, rrf_k=configured.rrf_k,
                             sparse_weight=configured.sparse_weight, vector_weight=configured.vector_weight,
                             normalization=configured.normalization)
    fused = fusion.fuse_by({"lexical": LEX, "vector": VEC}, configured)
    assert [(c.doc_id, c.score, c.rank, c.leg("lexical").score, c.leg("lexical").rank, c.leg("vector").score,
             c.leg("vector").rank) for c in fused] == expected
