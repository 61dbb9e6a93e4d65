"""Fusion: hand-checked RRF/weighted values, DBSF against qdrant-client's own implementation."""

from __future__ import annotations

import pytest
from qdrant_client.http import models
from qdrant_client.hybrid.fusion import distribution_based_score_fusion

from services.retriever import fusion

LEX = [("a", 12.0), ("b", 9.0), ("c", 3.0)]
VEC = [("c", 0.9), ("d", 0.8), ("a", 0.5)]


def test_rrf_scores_and_legs():
    fused = fusion.fuse(LEX, VEC, "rrf", rrf_k=60)
    scores = {f.doc_id: f.score for f in fused}
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["b"] == pytest.approx(1 / 62)
    assert scores["d"] == pytest.approx(1 / 62)
    # a and c tie exactly; b and d tie: doc id breaks ties.
    assert [f.doc_id for f in fused] == ["a", "c", "b", "d"]
    b = next(f for f in fused if f.doc_id == "b")
    assert (b.lexical_rank, b.lexical_score, b.vector_rank, b.vector_score) == (2, 9.0, 0, 0.0)
    assert [f.rank for f in fused] == [1, 2, 3, 4]


def test_rrf_k_changes_the_balance():
    lex = [("x", 1.0), ("y", 0.5)]
    vec = [("y", 1.0), ("z", 0.9), ("w", 0.8), ("x", 0.1)]
    small_k = [f.doc_id for f in fusion.fuse(lex, vec, "rrf", rrf_k=1)]
    assert small_k[0] == "y"  # 1/3 + 1/2 beats x's 1/2 + 1/5
    assert fusion.rrf(lex, vec, 1)["x"] == pytest.approx(1 / 2 + 1 / 5)


def test_weighted_minmax():
    fused = fusion.fuse(LEX, VEC, "weighted", sparse_weight=0.3, vector_weight=0.7, normalization="minmax")
    scores = {f.doc_id: f.score for f in fused}
    # lexical min-max: a 1, b 6/9, c 0 ; vector: c 1, d 0.75, a 0 ; missing -> leg minimum (0).
    assert scores["a"] == pytest.approx(0.3 * 1 + 0.7 * 0)
    assert scores["b"] == pytest.approx(0.3 * (6 / 9))
    assert scores["c"] == pytest.approx(0.7 * 1)
    assert scores["d"] == pytest.approx(0.7 * 0.75)
    assert fused[0].doc_id == "c"


def test_weighted_zscore_gives_missing_documents_the_leg_minimum():
    scores = fusion.weighted(LEX, VEC, 1.0, 1.0, "zscore")
    lex_z = fusion.zscore(fusion.np.array([12.0, 9.0, 3.0]))
    vec_z = fusion.zscore(fusion.np.array([0.9, 0.8, 0.5]))
    assert scores["b"] == pytest.approx(lex_z[1] + vec_z.min())
    assert scores["d"] == pytest.approx(lex_z.min() + vec_z[1])


def test_weights_of_zero_reduce_to_one_leg():
    only_vector = fusion.fuse(LEX, VEC, "weighted", sparse_weight=0.0, vector_weight=1.0)
    assert [f.doc_id for f in only_vector][:2] == ["c", "d"]


def _points(hits):
    return [models.ScoredPoint(id=i, version=0, score=s) for i, (_, s) in enumerate(hits)]


@pytest.mark.parametrize(
    "lex,vec",
    [
        (LEX, VEC),
        ([("a", 5.0)], [("a", 0.2), ("b", 0.1)]),  # a single hit normalises to 0.5
        ([("a", 2.0), ("b", 2.0)], [("c", 0.7), ("a", 0.3), ("d", 0.1)]),  # zero spread normalises to 0.5
    ],
)
def test_dbsf_matches_qdrant(lex, vec):
    ids = sorted({d for d, _ in lex + vec})
    number = {d: n for n, d in enumerate(ids)}
    responses = [
        [models.ScoredPoint(id=number[d], version=0, score=s) for d, s in leg] for leg in (lex, vec)
    ]
    expected = {ids[p.id]: p.score for p in distribution_based_score_fusion(responses, limit=100)}
    # Equal weights of 1 are Qdrant's plain sum.
    ours = fusion.dbsf(lex, vec, 1.0, 1.0)
    assert ours.keys() == expected.keys()
    for doc, score in expected.items():
        assert ours[doc] == pytest.approx(score)


def test_empty_legs():
    assert fusion.fuse([], [], "rrf") == []
    only = fusion.fuse([], VEC, "dbsf")
    assert [f.doc_id for f in only] == ["c", "d", "a"]
    assert all(f.lexical_rank == 0 for f in only)


def test_unknown_method():
    with pytest.raises(ValueError):
        fusion.fuse(LEX, VEC, "borda")


def test_limit_keeps_the_best_and_their_legs():
    full = fusion.fuse(LEX, VEC, "dbsf")
    assert fusion.fuse(LEX, VEC, "dbsf", limit=2) == full[:2]
