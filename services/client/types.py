"""The client's typed results and feedback, and their conversion to and from the protos (the only
place the client touches protobuf messages)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import invalid
from services.proto.feedrank.v1 import common_pb2, feedback_pb2, retriever_pb2


@dataclass(frozen=True)
class Legs:
    """What each retrieval leg said about a result (ranks are 1-based; 0 = the leg did not return it)."""

    lexical_score: float
    lexical_rank: int
    vector_score: float
    vector_rank: int
    fused_score: float
    fused_rank: int


@dataclass(frozen=True)
class Hit:
    doc_id: str
    title: str
    snippet: str
    rank: int  # 1-based, as shown
    rerank_score: float
    legs: Legs
    team: str = ""  # interleaved searches: "champion" or "challenger", the ranker that contributed it


@dataclass(frozen=True)
class Click:
    doc_id: str
    dwell_ms: int = 0
    rank: int = 0  # 1-based rank it was shown at; SearchResults fills it in


@dataclass(frozen=True)
class Rating:
    doc_id: str
    rating: int  # 1-5; thumbs up = 5, thumbs down = 1
    rank: int = 0  # 1-based rank it was shown at; SearchResults fills it in


@dataclass(frozen=True)
class Recorded:
    accepted: int
    spooled: int  # of accepted, how many wait in the feedback service's spool for the broker


Feedback = Click | Rating


@dataclass(frozen=True)
class SearchResults:
    """One search's results, and the feedback on them in one call: `click(doc_id)`, `rate(doc_id, 5)`,
    or `feedback(Click(...), Rating(...))` for several events in one request. The rank of each event
    is the rank the result was shown at. With AsyncFeedrank these return awaitables."""

    query_id: str
    corpus_id: str
    query: str
    session_id: str
    hits: tuple[Hit, ...]
    model_version: str
    query_adapter_version: str
    reranked: bool
    degraded_reason: str
    timings: dict[str, float]
    experiment_id: str = ""  # set when the list interleaves an online experiment; feedback echoes it
    # The client's feedback(query_id, *events, session_id=..., timeout=...).
    _send: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    def __iter__(self):
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def hit(self, doc_id: str) -> Hit:
        for hit in self.hits:
            if hit.doc_id == doc_id:
                return hit
        raise invalid("doc_id", f"{doc_id!r} is not among this search's results")

    def click(self, doc_id: str, dwell_ms: int = 0, *, timeout: float | None = None) -> Any:
        return self.feedback(Click(doc_id, dwell_ms), timeout=timeout)

    def rate(self, doc_id: str, rating: int, *, timeout: float | None = None) -> Any:
        return self.feedback(Rating(doc_id, rating), timeout=timeout)

    def feedback(self, *events: Feedback, timeout: float | None = None) -> Any:
        if self._send is None:
            raise RuntimeError("these results were not made by a client, so they cannot send feedback")
        # Feedback on a result that was not shown is refused before any call.
        shown = [dataclasses.replace(e, rank=self.hit(e.doc_id).rank) for e in events]
        return self._send(self.query_id, *shown, session_id=self.session_id, timeout=timeout,
                          experiment_id=self.experiment_id)


def search_request(corpus_id: str, query: str, *, top_k: int, session_id: str, model: str,
                   rerank_mode: str | None) -> retriever_pb2.SearchRequest:
    if not 0 <= top_k < 2**31:
        raise invalid("top_k", "must be between 0 (the retriever's default) and 2^31 - 1")
    request = retriever_pb2.SearchRequest(corpus_id=corpus_id, query=query, top_k=top_k, session_id=session_id,
                                          model=model)
    if rerank_mode is not None:
        request.rerank_mode = rerank_mode
    return request


def _legs(legs: common_pb2.LegScores) -> Legs:
    """The proto LegScores as `Legs`: the same fields by name (a leg added to both is carried over as it is)."""
    return Legs(**{f.name: getattr(legs, f.name) for f in dataclasses.fields(Legs)})


def search_results(request: retriever_pb2.SearchRequest, response: retriever_pb2.SearchResponse,
                   send: Callable[..., Any]) -> SearchResults:
    hits = tuple(
        Hit(r.doc_id, r.title, r.snippet, r.rank, r.rerank_score,
            _legs(r.legs), r.team)
        for r in response.results
    )
    t = response.timings
    timings = {"queue_ms": t.queue_ms, "tokenize_ms": t.tokenize_ms, "inference_ms": t.inference_ms,
               "total_ms": t.total_ms, "lexical_ms": response.lexical_ms, "vector_ms": response.vector_ms}
    return SearchResults(response.query_id, request.corpus_id, request.query, request.session_id, hits,
                         response.model_version, response.query_adapter_version, response.reranked,
                         response.degraded_reason, timings, response.experiment_id, send)


def record_request(query_id: str, session_id: str, events: Sequence[Feedback],
                   source: str, experiment_id: str = "") -> feedback_pb2.RecordRequest:
    """One request for all events; each gets its own event_id, which a retry resends unchanged."""
    now_ms = int(time.time() * 1000)
    out = []
    for i, event in enumerate(events):
        message = feedback_pb2.FeedbackEvent(event_id=uuid.uuid4().hex, query_id=query_id, session_id=session_id,
                                             timestamp_ms=now_ms, source=source, experiment_id=experiment_id)
        try:
            if isinstance(event, Click):
                message.click.CopyFrom(feedback_pb2.Click(doc_id=event.doc_id, rank=event.rank,
                                                          dwell_ms=event.dwell_ms))
            else:
                message.rating.CopyFrom(feedback_pb2.Rating(doc_id=event.doc_id, rating=event.rating,
                                                            rank=event.rank))
        except ValueError as err:  # an int protobuf cannot carry (past int32 / int64)
            raise invalid(f"events[{i}]", str(err)) from None
        out.append(message)
    return feedback_pb2.RecordRequest(events=out)


def recorded(response: feedback_pb2.RecordResponse) -> Recorded:
    return Recorded(response.accepted, response.spooled)

