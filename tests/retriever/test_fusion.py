"""Fusion: hand-checked RRF/weighted values, DBSF against qdrant-client's own implementation, any number of legs."""

from __future__ import annotations

import pytest
from qdrant_client.http import models
from qdrant_client.hybrid.fusion import distribution_based_score_fusion

from services.retriever import fusion

LEX = [("a", 12.0), ("b", 9.0), ("c", 3.0)]
VEC = [("c", 0.9), ("d", 0.8), ("a", 0.5)]


def _legs(lexical, vector):
    return {"lexical": lexical, "vector": vector}


def _weights(lexical, vector):
    return {"lexical": lexical, "vector": vector}


def test_rrf_scores_and_legs():
    fused = fusion.fuse(_legs(LEX, VEC), "rrf", rrf_k=60)
    scores = {f.doc_id: f.score for f in fused}
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["b"] == pytest.approx(1 / 62)
    assert scores["d"] == pytest.approx(1 / 62)
    # a and c tie exactly; b and d tie: doc id breaks ties.
    assert [f.doc_id for f in fused] == ["a", "c", "b", "d"]
    b = next(f for f in fused if f.doc_id == "b")
    assert (b.leg("lexical").rank, b.leg("lexical").score, b.leg("vector").rank, b.leg("vector").score) == (2, 9.0, 0, 0.0)
    assert set(b.legs) == {"lexical"}
    assert [f.rank for f in fused] == [1, 2, 3, 4]


def test_rrf_k_changes_the_balance():
    lex = [("x", 1.0), ("y", 0.5)]
    vec = [("y", 1.0), ("z", 0.9), ("w", 0.8), ("x", 0.1)]
    small_k = [f.doc_id for f in fusion.fuse(_legs(lex, vec), "rrf", rrf_k=1)]
    assert small_k[0] == "y"  # 1/3 + 1/2 beats x's 1/2 + 1/5
    assert fusion.rrf(_legs(lex, vec), 1)["x"] == pytest.approx(1 / 2 + 1 / 5)


def test_weighted_minmax():
    fused = fusion.fuse(_legs(LEX, VEC), "weighted", weights=_weights(0.3, 0.7), normalization="minmax")
    scores = {f.doc_id: f.score for f in fused}
    # lexical min-max: a 1, b 6/9, c 0 ; vector: c 1, d 0.75, a 0 ; missing -> leg minimum (0).
    assert scores["a"] == pytest.approx(0.3 * 1 + 0.7 * 0)
    assert scores["b"] == pytest.approx(0.3 * (6 / 9))
    assert scores["c"] == pytest.approx(0.7 * 1)
    assert scores["d"] == pytest.approx(0.7 * 0.75)
    assert fused[0].doc_id == "c"


def test_weighted_zscore_gives_missing_documents_the_leg_minimum():
    scores = fusion.weighted(_legs(LEX, VEC), _weights(1.0, 1.0), "zscore")
    lex_z = fusion.zscore(fusion.np.array([12.0, 9.0, 3.0]))
    vec_z = fusion.zscore(fusion.np.array([0.9, 0.8, 0.5]))
    assert scores["b"] == pytest.approx(lex_z[1] + vec_z.min())
    assert scores["d"] == pytest.approx(lex_z.min() + vec_z[1])


def test_weights_of_zero_reduce_to_one_leg():
    only_vector = fusion.fuse(_legs(LEX, VEC), "weighted", weights=_weights(0.0, 1.0))
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
    ours = fusion.dbsf(_legs(lex, vec), _weights(1.0, 1.0))
    assert ours.keys() == expected.keys()
    for doc, score in expected.items():
        assert ours[doc] == pytest.approx(score)


def test_empty_legs():
    assert fusion.fuse(_legs([], []), "rrf") == []
    only = fusion.fuse(_legs([], VEC), "dbsf")
    assert [f.doc_id for f in only] == ["c", "d", "a"]
    assert all(f.leg("lexical").rank == 0 for f in only)


def test_unknown_method():
    with pytest.raises(ValueError):
        fusion.fuse(_legs(LEX, VEC), "borda")


def test_limit_keeps_the_best_and_their_legs():
    full = fusion.fuse(_legs(LEX, VEC), "dbsf")
    assert fusion.fuse(_legs(LEX, VEC), "dbsf", limit=2) == full[:2]


# -- more than two legs (a third leg is a name and a list, as qdrant-client fuses any number of responses) --

SPLADE = [("d", 7.0), ("b", 6.0), ("e", 1.0)]


def test_rrf_over_three_named_legs():
    legs = {**_legs(LEX, VEC), "splade": SPLADE}
    fused = fusion.fuse(legs, "rrf", rrf_k=60)
    scores = {f.doc_id: f.score for f in fused}
    assert scores["d"] == pytest.approx(1 / 62 + 1 / 61)  # vector #2, splade #1
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 62)
    assert scores["e"] == pytest.approx(1 / 63)
    d = next(f for f in fused if f.doc_id == "d")
    assert (d.leg("splade").rank, d.leg("splade").score, d.leg("lexical").rank) == (1, 7.0, 0)
    # Weights by name scale to average 1 over the three legs: (0, 0, 3) is the splade leg alone.
    alone = fusion.rrf(legs, 60, {"lexical": 0.0, "vector": 0.0, "splade": 3.0})
    assert alone == pytest.approx({"d": 3 / 61, "b": 3 / 62, "e": 3 / 63, "a": 0.0, "c": 0.0})


def test_dbsf_over_three_legs_matches_qdrant():
    legs = [LEX, VEC, SPLADE]
    ids = sorted({d for leg in legs for d, _ in leg})
    responses = [[models.ScoredPoint(id=ids.index(d), version=0, score=s) for d, s in leg] for leg in legs]
    expected = {ids[p.id]: p.score for p in distribution_based_score_fusion(responses, limit=100)}
    ours = fusion.dbsf({"lexical": LEX, "vector": VEC, "splade": SPLADE}, {"lexical": 1, "vector": 1, "splade": 1})
    assert ours == pytest.approx(expected)


def test_weights_must_name_exactly_the_fused_legs():
    with pytest.raises(ValueError, match="splade"):
        fusion.fuse({**_legs(LEX, VEC), "splade": SPLADE}, "rrf", weights=_weights(0.5, 0.5))
    with pytest.raises(ValueError, match="splade"):
        fusion.fuse(_legs(LEX, VEC), "weighted", weights={**_weights(0.5, 0.5), "splade": 1.0})


def test_legs_of_gives_back_the_legs_a_fused_list_carries():
    fused = fusion.fuse(_legs(LEX, VEC), "rrf")
    assert fusion.legs_of(fused) == _legs(LEX, VEC)
