"""Learning how a corpus's legs are fused, from the feedback a run learns from.

Equal RRF weights can pull the fused order under its better leg (CoSQA: dense alone 0.721 nDCG@10, RRF
0.649), and every candidate the reranker sees comes from that order. A run therefore also chooses the
fusion its version is served with: each of its dev queries' two legs (as the retriever serves them
through the version: the lexical leg, and the vector leg through the version's adapter) are fused by
every fusion of the grid (`training.fusion_choice.methods` x `vector_shares`, the configured
fusion included), and the one whose fused order has the best nDCG@10 on the queries' feedback (the
clicked or judged documents the run trains on: the model's own judge) is kept if it beats the configured
fusion by `training.fusion_choice.min_gain` (the best of a grid is optimistic on the queries that chose it);
ties keep the earlier grid entry. The query-adapter recipe does this over its adapted legs
(services/trainer/adapter.py); the cross-encoder recipe over its dev triplets' base legs
(`learn_from_triplets`). The version records it (manifest `fusion`, named per-leg
weights: services/retriever/fusion.py `learned`); the retriever serves it for the version's corpus and
the gate evaluates the version through it (services/trainer/evaluation.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.common.config import FusionSettings, TrainingSettings
from services.common.errors import ErrorKind, FeedrankError
from services.common.legs import Candidate
from services.ir import metrics as ir
from services.retriever.fusion import LegHits, fuse_by, legs_of
from services.trainer.candidates import CandidateSource
from services.trainer.corpus_data import normalize_query
from services.trainer.mining import Triplet


@dataclass(frozen=True)
class LearnedFusion:
    fusion: FusionSettings
    ndcg: float  # nDCG@10 of its fused order on the queries it was chosen on
    configured_ndcg: float  # the configured fusion's, on the same queries
    tried: int


def refused(rows: Iterable[Candidate], fusion: FusionSettings) -> list[Candidate]:
    """A fused candidate list fused again, by `fusion`, from the legs it carries."""
    return fuse_by(legs_of(list(rows)), fusion)


def grid(configured: FusionSettings, training: TrainingSettings) -> list[FusionSettings]:
    """The configured fusion first, then every method x vector share (the lexical leg gets 1 - share)."""
    out = [configured]
    for method in training.fusion_choice.methods:
        for share in training.fusion_choice.vector_shares:
            candidate = configured.model_copy(update={
                "method": method, "vector_weight": float(share), "sparse_weight": round(1.0 - share, 6)})
            if candidate not in out:
                out.append(candidate)
    return out


def fused_ndcg(fusion: FusionSettings, legs: dict[str, LegHits], qrels: dict[str, dict[str, int]]) -> float:
    run = {qid: {f.doc_id: -float(f.rank) for f in fuse_by(q, fusion)} for qid, q in legs.items()}
    return ir.evaluate(run, {qid: qrels.get(qid, {}) for qid in legs}, ("ndcg@10",))["ndcg@10"]


def learn_fusion(legs: dict[str, LegHits], qrels: dict[str, dict[str, int]], configured: FusionSettings,
                 training: TrainingSettings) -> LearnedFusion:
    """The grid's fusion with the best fused nDCG@10 on `qrels` (feedback of the queries in `legs`), or the
    configured one when the best does not beat it by `min_gain`."""
    options = grid(configured, training)
    base = fused_ndcg(configured, legs, qrels)
    best, best_value = configured, base
    for fusion in options[1:]:
        value = fused_ndcg(fusion, legs, qrels)
        if value > best_value + 1e-9:
            best, best_value = fusion, value
    if best_value < base + training.fusion_choice.min_gain:
        return LearnedFusion(configured, base, base, len(options))
    return LearnedFusion(best, best_value, base, len(options))


def learn_from_triplets(triplets: Iterable[Triplet], corpus_id: str, candidates: CandidateSource,
                        configured: FusionSettings, training: TrainingSettings) -> LearnedFusion:
    """For a run that has no served lists of its own (the cross-encoder recipe): each triplet query's base
    legs from the retriever, its positives as the feedback. A query whose positives neither leg returns (an
    answer-selection set's) scores 0 under every fusion and decides nothing."""
    texts: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for t in triplets:
        key = normalize_query(t.query)
        texts.setdefault(key, t.query)
        qrels.setdefault(key, {})[t.positive_doc_id] = 1
    legs = {}
    for key, text in texts.items():
        try:
            legs[key] = legs_of(candidates.candidates(corpus_id, text, training.eval_depth))
        except FeedrankError as err:
            if err.kind != ErrorKind.NOT_FOUND:  # a file source without this query: the others still decide
                raise
    return learn_fusion(legs, qrels, configured, training)
