"""Only feedback on what the retriever showed: signed query_ids checked, caps per query and session.

Each event's query_id must open with the signing key (see services/common/query_token.py) and be
younger than `query_id_ttl_s`. An impression must be the one the retriever signed (same corpus,
query and results in rank order); a click or rating must name a document shown for that query_id,
at the rank it was shown (a rating may leave the rank 0, unknown). Clicks and ratings are capped
per query_id and per session window, and a query_id gets one impression. The counts live in this
process (one feedback replica); they bound what one signed search lets a client send.
Every refused event is counted by reason in `feedrank_feedback_events_rejected_total`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter

from services.common.config import FeedbackSettings
from services.common.errors import ErrorKind, FeedrankError
from services.common.query_token import QueryIdError, QueryIdSigner, SignedQuery
from services.proto.feedrank.v1 import feedback_pb2

EVENTS_REJECTED = Counter(
    "feedrank_feedback_events_rejected_total", "Feedback events refused, by reason", ["reason"]
)


class Refused(FeedrankError):
    """A refused event, with the reason it is counted under."""

    def __init__(self, reason: str, field_name: str, message: str, kind: ErrorKind = ErrorKind.INVALID_ARGUMENT):
        super().__init__(kind, message, field_name)
        self.reason = reason


def count_rejection(err: FeedrankError) -> None:
    EVENTS_REJECTED.labels(err.reason if isinstance(err, Refused) else "malformed").inc()


@dataclass
class _QueryCounts:
    events: set[str] = field(default_factory=set)  # event_ids of accepted clicks and ratings
    impression: str = ""  # event_id of the accepted impression


@dataclass
class _SessionWindow:
    started: float
    count: int = 0


class FeedbackGuard:
    def __init__(self, signer: QueryIdSigner, limits: FeedbackSettings, clock: Callable[[], float] = time.time):
        self.signer = signer
        self.limits = limits
        self.clock = clock
        self._queries: OrderedDict[str, _QueryCounts] = OrderedDict()
        self._sessions: OrderedDict[str, _SessionWindow] = OrderedDict()

    def check(self, event: feedback_pb2.FeedbackEvent, index: int) -> None:
        """Refuse an event (already schema-valid) that the signed query_id does not back."""
        at = f"events[{index}]"
        try:
            signed = self.signer.open(event.query_id, self.clock(), self.limits.query_id_ttl_s,
                                      self.limits.max_future_skew_s)
        except QueryIdError as err:
            raise Refused(f"query_id_{err.reason}", f"{at}.query_id", str(err)) from None
        kind = event.WhichOneof("kind")
        if kind == "impression":
            self._check_impression(event.impression, signed, at)
        else:
            shown = getattr(event, kind)
            self._check_shown(shown.doc_id, shown.rank, signed, f"{at}.{kind}", unknown_rank_ok=kind == "rating")

    def _check_impression(self, imp: feedback_pb2.Impression, signed: SignedQuery, at: str) -> None:
        if self.signer.query_tag(imp.corpus_id, imp.query) != signed.query_tag:
            raise Refused("impression_forged", f"{at}.impression.query",
                          "corpus_id and query are not those of the search that issued query_id")
        ordered = sorted(imp.results, key=lambda r: r.rank)
        if [r.rank for r in ordered] != list(range(1, len(ordered) + 1)) or \
                tuple(self.signer.doc_tag(r.doc_id) for r in ordered) != signed.doc_tags:
            raise Refused("impression_forged", f"{at}.impression.results",
                          "are not the results the retriever showed for query_id, at their ranks")

    def _check_shown(self, doc_id: str, rank: int, signed: SignedQuery, at: str, unknown_rank_ok: bool) -> None:
        tag = self.signer.doc_tag(doc_id)
        ranks = [r for r, t in enumerate(signed.doc_tags, 1) if t == tag]
        if not ranks:
            raise Refused("doc_not_shown", f"{at}.doc_id", "was not among the results shown for query_id")
        if rank not in ranks and not (unknown_rank_ok and rank == 0):
            raise Refused("rank_mismatch", f"{at}.rank", f"the document was shown at rank {ranks[0]}, not {rank}")

    def admit(self, events: Sequence[feedback_pb2.FeedbackEvent]) -> Callable[[], None]:
        """Count a checked batch against the caps, all or nothing; returns an undo for a batch
        that is then not recorded. A resent event (same event_id) is not counted twice per query."""
        now = self.clock()
        queries: dict[str, _QueryCounts] = {}
        added: dict[str, set[str]] = {}
        impressions: dict[str, str] = {}
        sessions: dict[str, int] = {}
        for i, event in enumerate(events):
            at = f"events[{i}]"
            counts = queries.setdefault(event.query_id, self._queries.get(event.query_id) or _QueryCounts())
            if event.WhichOneof("kind") == "impression":
                taken = impressions.get(event.query_id) or counts.impression
                if taken and taken != event.event_id:
                    raise Refused("impression_duplicate", f"{at}.query_id", "already has its impression")
                impressions[event.query_id] = event.event_id
                continue
            new = added.setdefault(event.query_id, set())
            if event.event_id not in counts.events:
                new.add(event.event_id)
            if len(counts.events) + len(new) > self.limits.max_events_per_query:
                raise Refused("query_cap", f"{at}.query_id", (
                    f"has more clicks and ratings than feedback.max_events_per_query {self.limits.max_events_per_query}"))
            window = self._window(event.session_id, now)
            sessions[event.session_id] = sessions.get(event.session_id, 0) + 1
            if window.count + sessions[event.session_id] > self.limits.max_events_per_session:
                raise Refused("session_cap", f"{at}.session_id", (
                    f"sent more than feedback.max_events_per_session {self.limits.max_events_per_session} clicks and "
                    f"ratings in {self.limits.session_window_s:g}s; retry later"), ErrorKind.RESOURCE_EXHAUSTED)
        for query_id, counts in queries.items():
            counts.events |= added.get(query_id, set())
            counts.impression = impressions.get(query_id, counts.impression)
            self._remember(self._queries, query_id, counts)
        for session_id, n in sessions.items():
            window = self._window(session_id, now)
            window.count += n
            self._remember(self._sessions, session_id, window)

        def undo() -> None:
            for query_id, ids in added.items():
                if query_id in self._queries:
                    self._queries[query_id].events -= ids
            for query_id in impressions:
                if query_id in self._queries and self._queries[query_id].impression == impressions[query_id]:
                    self._queries[query_id].impression = ""
            for session_id, n in sessions.items():
                if session_id in self._sessions:
                    self._sessions[session_id].count -= n

        return undo

    def _window(self, session_id: str, now: float) -> _SessionWindow:
        window = self._sessions.get(session_id)
        if window is None or now - window.started >= self.limits.session_window_s:
            return _SessionWindow(now)
        return window

    def _remember(self, table: OrderedDict, key: str, value) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.limits.tracked_queries:
            table.popitem(last=False)
