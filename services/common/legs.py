"""The retrieval legs by name, and the one shape a fused candidate has from fusion to training.

A leg is one ranked list the retriever fuses: today BM25 (`lexical`) and the dense index (`vector`).
`LEGS` is their order wherever an order matters: the fields of the proto `LegScores` and a linear head's
features (services/reranker/combine.py reads a head's legs as the first ones of `LEGS`), so a new leg goes
at the end and existing heads keep scoring as they did.

`Candidate` is a fused document with its fused score and rank and each leg's (rank, score): the retriever's
fusion makes it, the reranker's heads read it, the trainer fetches, re-fuses and fits heads on it. On the
wire a leg is the `LegScores` fields `<leg>_rank` and `<leg>_score`, and so it is in the flat JSON records of
candidate files (`record`/`from_record`); these functions are the only places that spell them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.proto.feedrank.v1 import common_pb2

LEGS = ("lexical", "vector")

# The FusionSettings field that holds each leg's weight: the settings' (and environment's) names are a
# contract, older than the leg names.
WEIGHT_SETTINGS = {"lexical": "sparse_weight", "vector": "vector_weight"}


@dataclass(frozen=True)
class LegHit:
    rank: int = 0  # 1-based; 0 = the leg did not return the document
    score: float = 0.0  # the leg's own score


ABSENT = LegHit()


@dataclass(frozen=True)
class Candidate:
    doc_id: str
    score: float  # the fused score
    rank: int = 0  # the fused rank, 1-based; 0 = not known
    legs: Mapping[str, LegHit] = field(default_factory=dict)  # only the legs that returned the document

    def leg(self, name: str) -> LegHit:
        return self.legs.get(name, ABSENT)


def legs_from(get: Callable[[str], Any]) -> dict[str, LegHit]:
    """The legs of a flat record whose `get(f"{leg}_rank")`/`get(f"{leg}_score")` hold them (rank 0: absent)."""
    out = {}
    for name in LEGS:
        rank = int(get(f"{name}_rank") or 0)
        if rank > 0:
            out[name] = LegHit(rank, float(get(f"{name}_score") or 0.0))
    return out


def from_record(row: Mapping[str, Any]) -> Candidate:
    """A candidate from a flat JSON record: doc_id, score, rank (optional) and `<leg>_rank`/`<leg>_score`."""
    return Candidate(str(row["doc_id"]), float(row.get("score") or 0.0), int(row.get("rank") or 0), legs_from(row.get))


def record(candidate: Candidate) -> dict[str, Any]:
    out: dict[str, Any] = {"doc_id": candidate.doc_id, "score": candidate.score, "rank": candidate.rank}
    for name in LEGS:
        hit = candidate.leg(name)
        out[f"{name}_rank"], out[f"{name}_score"] = hit.rank, hit.score
    return out


def from_leg_scores(doc_id: str, legs: common_pb2.LegScores) -> Candidate:
    return Candidate(doc_id, legs.fused_score, legs.fused_rank, legs_from(lambda name: getattr(legs, name)))


def leg_scores(candidate: Candidate) -> common_pb2.LegScores:
    fields: dict[str, float] = {}
    for name in LEGS:
        hit = candidate.leg(name)
        fields[f"{name}_rank"], fields[f"{name}_score"] = hit.rank, hit.score
    return common_pb2.LegScores(fused_score=candidate.score, fused_rank=candidate.rank, **fields)
