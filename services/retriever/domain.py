"""The retriever's domain objects: a search request, its hits and outcome, and the legs' raw results.

`core.py` produces them and `convert.py` maps them to protobuf; both import them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.legs import Candidate
from services.retriever.interventions import Intervention


@dataclass(frozen=True)
class SearchQuery:
    corpus_id: str
    query: str
    top_k: int = 0  # 0 = configured default
    candidate_k: int = 0  # 0 = configured default
    fusion: dict = field(default_factory=dict)  # per-request overrides of FusionSettings fields
    rerank_mode: str | None = None  # "none" skips the reranker
    session_id: str = ""
    model: str = ""  # reranker alias or version id
    no_intervention: bool = False  # evaluation traffic: the ranking exactly as computed


@dataclass
class Hit:
    doc_id: str
    title: str
    snippet: str
    fused: Candidate
    rerank_score: float = 0.0
    rank: int = 0  # as shown
    ranked_rank: int = 0  # as ranked (differs under an intervention)
    team: str = ""  # interleaved searches: the ranker ("champion" | "challenger") that contributed it


@dataclass
class SearchOutcome:
    query_id: str
    hits: list[Hit]
    model_version: str
    reranked: bool
    degraded_reason: str
    leg_ms: dict[str, float]  # each leg's search time, by leg name
    rerank_ms: float
    total_ms: float
    query_adapter_version: str = ""
    intervention: Intervention | None = None  # the randomised reordering shown, if any
    experiment_id: str = ""  # the online experiment whose champion and challenger this list interleaves


@dataclass
class Legs:
    hits: dict[str, list[tuple[str, float]]]  # each leg's (doc id, score), best first, by leg name
    ms: dict[str, float]  # each leg's search time
