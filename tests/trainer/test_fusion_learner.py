"""The fusion learner: it finds the better leg's dominance from feedback alone, and keeps the configured
fusion when nothing beats it."""

from __future__ import annotations

import random

import pytest

from services.common.config import FusionSettings, TrainingSettings
from services.common.errors import ErrorKind, FeedrankError
from services.common.legs import Candidate, LegHit
from services.retriever.fusion import LegHits, fuse_by, legs_of
from services.trainer import fusion_learner
from services.trainer.candidates import CandidateSource
from services.trainer.fusion_learner import learn_fusion
from services.trainer.mining import Triplet


def _world(queries: int = 40, seed: int = 7) -> tuple[dict[str, LegHits], dict[str, dict[str, int]]]:
    """A strong vector leg (the relevant document at rank 1-3) and a weak lexical one (rank 15-40 or absent)
    whose top is filled with documents both legs return: equal RRF weights pull the order under the vector leg."""
    rng = random.Random(seed)
    legs, qrels = {}, {}
    for q in range(queries):
        relevant = f"q{q}-rel"
        shared = [f"q{q}-s{i}" for i in range(10)]  # lexical top 10, vector ranks 4-13
        vector = [f"q{q}-v{i}" for i in range(40)]
        vector[3:13] = shared
        vector.insert(rng.randrange(0, 3), relevant)
        lexical = shared + [f"q{q}-l{i}" for i in range(30)]
        if q % 2:
            lexical.insert(rng.randrange(15, 35), relevant)
        legs[str(q)] = {"lexical": [(d, 30.0 - 0.5 * i) for i, d in enumerate(lexical)],
                        "vector": [(d, 0.9 - 0.01 * i) for i, d in enumerate(vector)]}
        qrels[str(q)] = {relevant: 1}
    return legs, qrels


def test_it_recovers_the_better_legs_dominance():
    legs, qrels = _world()
    configured = FusionSettings()  # RRF, equal weights
    training = TrainingSettings()
    chosen = learn_fusion(legs, qrels, configured, training)
    vector_alone = configured.model_copy(update={"sparse_weight": 0.0, "vector_weight": 1.0})
    assert chosen.configured_ndcg < fusion_learner.fused_ndcg(vector_alone, legs, qrels) - 0.1
    assert chosen.ndcg >= fusion_learner.fused_ndcg(vector_alone, legs, qrels)
    assert chosen.fusion.vector_weight > chosen.fusion.sparse_weight
    assert chosen.tried == 1 + 3 * 11 - 1  # the configured fusion is RRF 0.5/0.5, already in the grid
    # The grid is the knob: with the methods and shares narrowed, only those are tried.
    narrow = training.model_copy(update={"fusion_choice": training.fusion_choice.model_copy(
        update={"methods": ["weighted"], "vector_shares": [0.0, 0.3]})})
    limited = learn_fusion(legs, qrels, configured, narrow)
    assert limited.tried == 3 and limited.fusion in (configured, *fusion_learner.grid(configured, narrow))


def test_the_configured_fusion_is_kept_when_nothing_beats_it():
    # Both legs rank the relevant document first: every fusion ties, so nothing changes.
    legs = {str(q): {"lexical": [(f"r{q}", 2.0), (f"x{q}", 1.0)], "vector": [(f"r{q}", 0.9), (f"y{q}", 0.5)]}
            for q in range(5)}
    qrels = {str(q): {f"r{q}": 1} for q in range(5)}
    configured = FusionSettings(rrf_k=20)
    chosen = learn_fusion(legs, qrels, configured, TrainingSettings())
    assert chosen.fusion == configured and chosen.ndcg == pytest.approx(1.0) == chosen.configured_ndcg


def test_a_fusion_that_wins_by_less_than_min_gain_is_not_learned():
    legs, qrels = _world()
    training = TrainingSettings()
    best = learn_fusion(legs, qrels, FusionSettings(), training)
    gain = best.ndcg - best.configured_ndcg
    just_above = training.model_copy(update={"fusion_choice": training.fusion_choice.model_copy(
        update={"min_gain": gain + 0.001})})
    kept = learn_fusion(legs, qrels, FusionSettings(), just_above)
    assert kept.fusion == FusionSettings() and kept.ndcg == kept.configured_ndcg == best.configured_ndcg
    just_below = training.model_copy(update={"fusion_choice": training.fusion_choice.model_copy(
        update={"min_gain": gain - 0.001})})
    assert learn_fusion(legs, qrels, FusionSettings(), just_below).fusion == best.fusion


def test_a_candidate_list_is_fused_again_from_the_legs_it_carries():
    rows = [Candidate("a", 0.03, 1, {"lexical": LegHit(1, 9.0), "vector": LegHit(2, 0.7)}),
            Candidate("b", 0.02, 2, {"lexical": LegHit(2, 5.0)}), Candidate("c", 0.01, 3, {"vector": LegHit(1, 0.9)})]
    legs = legs_of(rows)
    assert legs == {"lexical": [("a", 9.0), ("b", 5.0)], "vector": [("c", 0.9), ("a", 0.7)]}
    vector_only = FusionSettings(method="weighted", sparse_weight=0.0, vector_weight=1.0)
    again = fusion_learner.refused(rows, vector_only)
    assert [c.doc_id for c in again][:2] == ["c", "a"]
    assert (again[0].leg("vector").rank, again[0].leg("lexical").rank, again[0].score) == (1, 0, pytest.approx(1.0))


class _Lists(CandidateSource):
    """Fused lists as the retriever answers them (every candidate with its leg ranks and scores)."""

    def __init__(self, legs: dict[str, LegHits]):
        self.lists = {f"query  {q}": fuse_by(hits, FusionSettings()) for q, hits in legs.items()}

    def candidates(self, corpus_id: str, query: str, depth: int) -> list[Candidate]:
        if query not in self.lists:
            raise FeedrankError(ErrorKind.NOT_FOUND, f"no candidates for {query!r}")
        return self.lists[query]


def test_a_run_without_its_own_lists_learns_from_its_triplets_queries():
    """The cross-encoder recipe's path: triplet queries, their positives, the retriever's lists."""
    legs, qrels = _world()
    triplets = [Triplet(f"query  {q}", "", rel, [""], [f"q{q}-s0"], "events") for q, rels in qrels.items()
                for rel in rels]  # the learner compares queries normalised, and asks for the text as written
    triplets.append(Triplet("a query the source never saw", "", "x", [""], ["y"], "events"))  # skipped, not fatal
    chosen = fusion_learner.learn_from_triplets(triplets, "c", _Lists(legs), FusionSettings(), TrainingSettings())
    assert chosen.fusion.vector_weight > chosen.fusion.sparse_weight
    assert chosen.ndcg == pytest.approx(learn_fusion(legs, qrels, FusionSettings(), TrainingSettings()).ndcg)
