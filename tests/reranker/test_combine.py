"""The heads a version may carry (services/reranker/combine.py), and the legs reaching them over gRPC."""

from __future__ import annotations

import numpy as np

from services.common.legs import Candidate, LegHit
from services.engine.manifest import Blend, LinearHead
from services.proto.feedrank.v1 import common_pb2, reranker_pb2
from services.reranker.combine import LEG_FEATURES, final_scores, leg_features
from services.reranker.server import to_query

# Six candidates in fused order; the last two were not returned by the vector leg.


def _candidate(i: int, lexical_score: float, lexical_rank: int, vector_rank: int, fused_score: float) -> Candidate:
    legs = {"lexical": LegHit(lexical_rank, lexical_score)} if lexical_rank else {}
    if vector_rank:
        legs["vector"] = LegHit(vector_rank, 0.5)
    return Candidate(f"d{i}", fused_score, i + 1, legs)


LEGS = [_candidate(i, *row) for i, row in enumerate([(12.0, 1, 3, 0.032), (9.0, 2, 1, 0.031), (0.0, 0, 2, 0.016),
                                                     (7.0, 3, 4, 0.015), (6.0, 4, 0, 0.015), (5.0, 5, 0, 0.0148)])]
MODEL = np.array([0.2, 0.5, 0.9, 0.1, 0.8, 0.7], dtype=np.float32)


def test_leg_features_follow_the_legs():
    X = leg_features(MODEL.astype(np.float64), LEGS)
    assert X.shape == (6, len(LEG_FEATURES))
    col = {name: X[:, i] for i, name in enumerate(LEG_FEATURES)}
    np.testing.assert_allclose(col["lexical_score"], [12, 9, 0, 7, 6, 5])
    np.testing.assert_allclose(col["lexical_rr"], [1 / 61, 1 / 62, 0, 1 / 63, 1 / 64, 1 / 65])
    # The model's score stands in for the vector leg's, only where that leg returned the document.
    np.testing.assert_allclose(col["vector_score"], [0.2, 0.5, 0.9, 0.1, 0, 0], atol=1e-7)
    assert col["vector_score_minmax"].max() == 1 and col["vector_score_minmax"].min() == 0
    np.testing.assert_allclose(col["fused_score"], [c.score for c in LEGS])


def test_linear_head_rescores_the_fused_top_and_keeps_the_tail():
    # All weight on the vector-score feature: the top 4 by fused score reorder by the model's score.
    head = LinearHead(depth=4, coef=[0, 0, 0, 5.0, 0, 0, 0], intercept=0.0, mean=[0.0] * 7, scale=[1.0] * 7)
    scores = final_scores(head, MODEL, LEGS)
    order = list(np.argsort(-scores, kind="stable"))
    assert order == [2, 1, 0, 3, 4, 5]
    assert scores[:4].min() > 2 > scores[4:].max()  # the tail stays below, in fused order


def test_without_legs_a_linear_head_ranks_by_the_model_and_a_blend_by_input_order():
    head = LinearHead(depth=4, coef=[1.0] * 7, intercept=0.0, mean=[0.0] * 7, scale=[1.0] * 7)
    none = [Candidate(f"d{i}", 0.0) for i in range(6)]
    np.testing.assert_array_equal(final_scores(head, MODEL, none), MODEL)
    blended = final_scores(Blend(weight=0.0, depth=6), MODEL, none)
    assert list(np.argsort(-blended, kind="stable")) == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(final_scores(None, MODEL, LEGS), MODEL)


def test_grpc_request_legs_reach_the_core():
    request = reranker_pb2.RerankRequest(query="q", documents=[reranker_pb2.RerankDocument(
        id="d", text="t", embedding=[0.5, 0.5],
        legs=common_pb2.LegScores(lexical_score=3.5, lexical_rank=2, vector_score=0.7, vector_rank=5, fused_score=0.03),
    )])
    (doc,) = to_query(request).documents
    legs = doc.candidate
    assert (legs.leg("lexical"), legs.leg("vector").rank, doc.vector) == (LegHit(2, 3.5), 5, (0.5, 0.5))
    assert abs(legs.leg("vector").score - 0.7) < 1e-7 and abs(legs.score - 0.03) < 1e-7
