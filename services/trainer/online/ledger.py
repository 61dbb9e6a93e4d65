"""Joins interleaved impressions with their clicks and credits each query once its click window has passed.

Impressions and clicks arrive from the event stream in any order (two topics, no ordering between them).
An impression names its experiment and the team per shown position; a click names the impression's query
id, its rank and the experiment id the response carried (a client that does not echo it is joined by the
query id alone, when the impression came first). A query is credited `click_window_ms` after its
impression, with the clicks that had arrived by then. Clicks (or impressions) naming an experiment the book
does not know, or one that has ended, are counted and left uncredited; the event store keeps them anyway.

The trainer's event consumer calls `consume` after every poll (services/trainer/__main__.py). What is
pending lives in memory: a restart forgets the queries not yet credited (at most one click window's worth).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter

from services.proto.feedrank.v1 import feedback_pb2
from services.trainer.online.credit import credit
from services.trainer.online.experiments import Experiment, ExperimentBook


UNCREDITED = Counter("feedrank_experiment_uncredited_total", "Impressions and clicks stored but not credited",
                     ["kind", "reason"])


@dataclass
class _Pending:
    experiment_id: str
    teams: tuple[str, ...]
    shown_ms: int


@dataclass
class LedgerCounts:
    credited: int = 0
    unknown_experiment_impressions: int = 0
    unknown_experiment_clicks: int = 0
    clicks_without_impression: int = 0  # the click's query was never shown interleaved, or was already credited


@dataclass
class Ledger:
    book: ExperimentBook
    click_window_ms: int
    counts: LedgerCounts = field(default_factory=LedgerCounts)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _clicks: dict[str, tuple[int, set[int]]] = field(default_factory=dict)  # query id -> (first click ms, ranks)
    _credited: dict[str, int] = field(default_factory=dict)  # query id -> when credited (late clicks are refused)

    def impression(self, query_id: str, experiment_id: str, teams: Sequence[str], shown_ms: int) -> None:
        if not self._live(experiment_id):
            self.counts.unknown_experiment_impressions += 1
            UNCREDITED.labels("impression", "unknown_experiment").inc()
            return
        if query_id not in self._credited:
            self._pending[query_id] = _Pending(experiment_id, tuple(teams), shown_ms)

    def click(self, query_id: str, experiment_id: str, rank: int, clicked_ms: int) -> None:
        if not experiment_id and query_id not in self._pending:
            return  # a click on a list that was not interleaved: nothing to credit
        if experiment_id and not self._live(experiment_id):
            self.counts.unknown_experiment_clicks += 1
            UNCREDITED.labels("click", "unknown_experiment").inc()
            return
        if query_id in self._credited:
            self.counts.clicks_without_impression += 1
            UNCREDITED.labels("click", "after_window").inc()
            return
        self._clicks.setdefault(query_id, (clicked_ms, set()))[1].add(rank)

    def feed(self, event: feedback_pb2.FeedbackEvent) -> None:
        """One event from the feedback stream: interleaved impressions and clicks are joined, the rest ignored."""
        kind = event.WhichOneof("kind")
        if kind == "impression" and event.impression.experiment_id:
            shown = sorted(event.impression.results, key=lambda r: r.rank)
            self.impression(event.query_id, event.impression.experiment_id, [r.team for r in shown],
                            event.timestamp_ms)
        elif kind == "click":
            self.click(event.query_id, event.experiment_id, event.click.rank, event.timestamp_ms)

    def consume(self, events: Sequence[feedback_pb2.FeedbackEvent], now_ms: int) -> list[Experiment]:
        """One poll of the feedback stream (possibly empty): join its events, credit what is due."""
        for event in events:
            self.feed(event)
        return self.settle(now_ms)

    def settle(self, now_ms: int) -> list[Experiment]:
        """Credit every impression older than the click window; the experiments that changed, updated."""
        due = sorted((p.shown_ms, q) for q, p in self._pending.items() if now_ms - p.shown_ms >= self.click_window_ms)
        by_experiment: dict[str, list] = defaultdict(list)
        for _, query_id in due:
            pending = self._pending.pop(query_id)
            _, ranks = self._clicks.pop(query_id, (0, set()))
            by_experiment[pending.experiment_id].append(credit(pending.teams, ranks))
            self._credited[query_id] = now_ms
        self.counts.credited += len(due)
        # Forget what can no longer matter: clicks whose impression has not come in twice the window, and
        # credited query ids old enough that no click for them can still be in flight.
        horizon = now_ms - 2 * self.click_window_ms
        for query_id in [q for q, (first, _) in self._clicks.items() if first < horizon and q not in self._pending]:
            del self._clicks[query_id]
            self.counts.clicks_without_impression += 1
            UNCREDITED.labels("click", "no_impression").inc()
        for query_id in [q for q, at in self._credited.items() if at < horizon]:
            del self._credited[query_id]
        return [self.book.record(experiment_id, outcomes) for experiment_id, outcomes in by_experiment.items()]

    def _live(self, experiment_id: str) -> bool:
        experiment = self.book.get(experiment_id) if experiment_id else None
        return experiment is not None and experiment.running
