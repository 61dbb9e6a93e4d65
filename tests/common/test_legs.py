"""The one candidate shape and its only conversions: the proto LegScores and the flat JSON records."""

from __future__ import annotations

import pytest

from services.common.legs import LEGS, Candidate, LegHit, from_leg_scores, from_record, leg_scores, record
from services.proto.feedrank.v1 import common_pb2

BOTH = Candidate("a", 0.03125, 2, {"lexical": LegHit(3, 7.5), "vector": LegHit(1, 0.75)})
LEXICAL_ONLY = Candidate("b", 0.015625, 5, {"lexical": LegHit(1, 12.0)})


@pytest.mark.parametrize("candidate", [BOTH, LEXICAL_ONLY, Candidate("c", 0.0)])
def test_leg_scores_round_trip(candidate):
    wire = leg_scores(candidate)
    assert from_leg_scores(candidate.doc_id, common_pb2.LegScores.FromString(wire.SerializeToString())) == candidate
    assert record(candidate) and from_record(record(candidate)) == candidate


def test_the_wire_fields_are_the_contract():
    wire = leg_scores(LEXICAL_ONLY)
    assert (wire.lexical_rank, wire.lexical_score, wire.vector_rank, wire.vector_score) == (1, 12.0, 0, 0.0)
    assert (wire.fused_score, wire.fused_rank) == (0.015625, 5)
    assert {f"{name}_{part}" for name in LEGS for part in ("rank", "score")} <= set(
        common_pb2.LegScores.DESCRIPTOR.fields_by_name)


def test_a_leg_that_did_not_return_the_document_is_absent():
    assert LEXICAL_ONLY.leg("vector") == LegHit(0, 0.0) and "vector" not in LEXICAL_ONLY.legs
    # A score sent with rank 0 says nothing: the leg did not return the document.
    legs = from_leg_scores("d", common_pb2.LegScores(vector_score=0.4, vector_rank=0, fused_score=0.1))
    assert legs.legs == {} and legs.score == pytest.approx(0.1)


def test_old_flat_records_load():
    """A candidates file or an eval cache written before the fused rank was recorded (no `rank`, no scores)."""
    row = {"doc_id": "x", "score": 0.02, "lexical_rank": 2, "vector_rank": 0}
    assert from_record(row) == Candidate("x", 0.02, 0, {"lexical": LegHit(2, 0.0)})
