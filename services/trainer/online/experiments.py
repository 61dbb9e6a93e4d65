"""The online experiments: at most one running per corpus, every one kept (with its verdict) as history.

An experiment interleaves a corpus's champion with one challenger version on a share of its Search traffic
until the sequential test decides (win, loss), the query budget runs out (undecided) or an operator or a
fault stops it (stopped, with the reason). The book is one JSON file, rewritten atomically on each change.
`on_change` hears of every start and every end (services/trainer/online/verdicts.py acts on them), outside
the book's lock.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from prometheus_client import Counter, Gauge

from services.common.config import InterleavingSettings
from services.common.durable import write_json_atomic
from services.common.errors import ErrorKind, FeedrankError, invalid, not_found
from services.trainer.online.credit import Outcome
from services.trainer.online.sequential import SequentialTest, Verdict

RUNNING = Verdict.RUNNING.value
STOPPED = "stopped"

QUERIES = Gauge("feedrank_experiment_queries", "Credited interleaved queries of the corpus's current experiment",
                ["corpus", "outcome"])
P_VALUE = Gauge("feedrank_experiment_p_value", "Always-valid p-value of the corpus's current experiment", ["corpus"])
ENDED = Counter("feedrank_experiments_ended_total", "Online experiments ended, by how", ["state"])
MAX_POINTS = 256  # progress points kept per experiment: every other one is dropped when it grows past this


@dataclass
class Experiment:
    experiment_id: str
    corpus_id: str
    champion_version: str
    challenger_version: str
    share: float
    query_budget: int
    alpha: float
    prior_strength: float
    started_ms: int
    state: str = RUNNING  # running | win | loss | undecided | stopped
    reason: str = ""
    ended_ms: int = 0
    wins: int = 0
    losses: int = 0
    ties: int = 0
    p_value: float = 1.0
    progress: list[list] = field(default_factory=list)  # [at_ms, wins, losses, ties, p_value] per credited batch
    shadow: bool = False  # scored beside the champion, never shown: no credit, runs until stopped

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def test(self) -> SequentialTest:
        return SequentialTest(alpha=self.alpha, budget=self.query_budget, prior_strength=self.prior_strength,
                              wins=self.wins, losses=self.losses, ties=self.ties, p_value=self.p_value,
                              verdict=Verdict(self.state) if self.state != STOPPED else Verdict.RUNNING)


class ExperimentBook:
    def __init__(self, path: Path, settings: InterleavingSettings,
                 on_change: Callable[[Experiment], None] | None = None):
        self.path = path
        self.settings = settings
        self.on_change = on_change
        self._lock = threading.Lock()
        self._experiments: dict[str, Experiment] = {}
        if path.exists():
            for row in json.loads(path.read_text()):
                self._experiments[row["experiment_id"]] = Experiment(**row)

    def start(self, corpus_id: str, champion_version: str, challenger_version: str, *,
              share: float | None = None, query_budget: int | None = None, shadow: bool = False) -> Experiment:
        if not corpus_id:
            raise invalid("corpus_id", "name the corpus to run the experiment on")
        if not challenger_version:
            raise invalid("challenger_version", f"corpus {corpus_id!r} has no challenger to interleave")
        if challenger_version == champion_version:
            raise invalid("challenger_version", f"{challenger_version!r} is already the champion")
        share = self.settings.share if share is None else share
        if not 0.0 <= share <= 1.0:
            raise invalid("share", f"must be within [0, 1], got {share}")
        budget = self.settings.query_budget if query_budget is None else query_budget
        if budget < 1:
            raise invalid("query_budget", f"must be >= 1, got {budget}")
        with self._lock:
            if (current := self._running(corpus_id)) is not None:
                raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"corpus {corpus_id!r} already runs experiment "
                                    f"{current.experiment_id}; stop it first", "corpus_id")
            experiment = Experiment(uuid.uuid4().hex[:12], corpus_id, champion_version, challenger_version, share,
                                    budget, self.settings.alpha, self.settings.prior_strength, _now_ms(),
                                    shadow=shadow)
            self._experiments[experiment.experiment_id] = experiment
            self._save()
            _publish(experiment)
        self._changed(experiment)
        return experiment

    def running(self, corpus_id: str) -> Experiment | None:
        with self._lock:
            return self._running(corpus_id)

    def get(self, experiment_id: str) -> Experiment | None:
        with self._lock:
            return self._experiments.get(experiment_id)

    def status(self, corpus_id: str) -> Experiment:
        """The corpus's running experiment, else its latest."""
        with self._lock:
            mine = [e for e in self._experiments.values() if e.corpus_id == corpus_id]
        if not mine:
            raise not_found(f"corpus {corpus_id!r} has had no online experiment", "corpus_id")
        return max(mine, key=lambda e: (e.running, e.started_ms))

    def history(self, corpus_id: str) -> list[Experiment]:
        with self._lock:
            return sorted((e for e in self._experiments.values() if e.corpus_id == corpus_id),
                          key=lambda e: e.started_ms)

    def stop(self, corpus_id: str, reason: str) -> Experiment:
        with self._lock:
            experiment = self._running(corpus_id)
            if experiment is None:
                raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"corpus {corpus_id!r} runs no experiment",
                                    "corpus_id")
            experiment.state, experiment.reason, experiment.ended_ms = STOPPED, reason, _now_ms()
            self._save()
            ENDED.labels(STOPPED).inc()
        self._changed(experiment)
        return experiment

    def record(self, experiment_id: str, outcomes: Iterable[Outcome]) -> Experiment:
        """Count credited queries in order; the experiment ends when its test decides or its budget runs out
        (queries credited after that are not counted)."""
        with self._lock:
            experiment = self._experiments[experiment_id]
            if not experiment.running:
                return experiment
            ended = False
            test = experiment.test()
            for outcome in outcomes:
                if test.update(outcome) is not Verdict.RUNNING:
                    break
            experiment.wins, experiment.losses, experiment.ties = test.wins, test.losses, test.ties
            experiment.p_value = test.p_value
            experiment.progress.append([_now_ms(), test.wins, test.losses, test.ties, test.p_value])
            if len(experiment.progress) > MAX_POINTS:  # thinned, the newest point always kept
                experiment.progress = experiment.progress[-1::-2][::-1]
            if test.verdict is not Verdict.RUNNING:
                experiment.state, experiment.ended_ms = test.verdict.value, _now_ms()
                experiment.reason = (f"sequential test: {test.verdict.value} after {test.queries} queries "
                                     f"({test.wins} wins, {test.losses} losses, {test.ties} ties, "
                                     f"p = {test.p_value:.4g}, alpha = {test.alpha})")
                ENDED.labels(experiment.state).inc()
                ended = True
            self._save()
            _publish(experiment)
        if ended:
            self._changed(experiment)
        return experiment

    def _changed(self, experiment: Experiment) -> None:
        if self.on_change is not None:
            self.on_change(replace(experiment, progress=list(experiment.progress)))  # the listener may outlive the lock

    def _running(self, corpus_id: str) -> Experiment | None:
        return next((e for e in self._experiments.values() if e.corpus_id == corpus_id and e.running), None)

    def _save(self) -> None:
        write_json_atomic(self.path, [asdict(e) for e in self._experiments.values()])


def _publish(experiment: Experiment) -> None:
    for outcome, count in (("win", experiment.wins), ("loss", experiment.losses), ("tie", experiment.ties)):
        QUERIES.labels(experiment.corpus_id, outcome).set(count)
    P_VALUE.labels(experiment.corpus_id).set(experiment.p_value)


def _now_ms() -> int:
    return int(time.time() * 1000)
