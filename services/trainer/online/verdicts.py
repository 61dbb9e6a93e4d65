"""What follows an online experiment's start and end: the event, the version's history, and a promotion.

Every start and end is published on `interleaving.decisions_topic` (a serialized feedrank.v1.Experiment,
keyed by corpus id). Every end (win, loss, undecided, stopped) is kept in the registry's history of the
challenger version with its counts and p-value. A win promotes the challenger when
`loop.auto_promote_online` is on, through the gate's promotion (judge "online": the alias history, the
gate's decision log and the ModelPublished event, like any promotion); otherwise the win is reported and an
operator promotes. A loss changes no alias: the experiment is over and its reason says why.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable

from services.common.config import KafkaSettings, Settings
from services.common.errors import FeedrankError
from services.kafka.connection import TopicPublisher
from services.proto.feedrank.v1 import trainer_pb2
from services.registry.store import Registry
from services.trainer.online.experiments import RUNNING, Experiment

log = logging.getLogger(__name__)

JUDGE = "online"


def experiment_message(experiment: Experiment, with_progress: bool = False) -> trainer_pb2.Experiment:
    fields = [name for name in trainer_pb2.Experiment.DESCRIPTOR.fields_by_name if name != "progress"]
    message = trainer_pb2.Experiment(**{name: getattr(experiment, name) for name in fields})
    if with_progress:
        message.progress.extend(trainer_pb2.ExperimentPoint(at_ms=at, wins=w, losses=lo, ties=t, p_value=p)
                                for at, w, lo, t, p in experiment.progress)
    return message


def summary(experiment: Experiment) -> str:
    return (f"online experiment {experiment.experiment_id}: {experiment.state} of {experiment.challenger_version} "
            f"against {experiment.champion_version or 'the fused order'} after "
            f"{experiment.wins + experiment.losses + experiment.ties} queries ({experiment.wins} wins, "
            f"{experiment.losses} losses, {experiment.ties} ties, p = {experiment.p_value:.4g}): {experiment.reason}")


class ExperimentPublisher:
    """Sends each experiment change to `topic`, keyed by corpus id, in order on one background thread: the RPC or
    the credit that changed the experiment never waits on the broker (down, it costs the event after a timeout).
    The thread is a daemon and changes still queued at exit are dropped: the experiment store keeps every state."""

    def __init__(self, kafka: KafkaSettings, topic: str, max_queued: int = 10_000):
        self._topic = TopicPublisher(kafka, topic)
        self._queue: queue.Queue[tuple[str, trainer_pb2.Experiment, float] | None] = queue.Queue(max_queued)
        threading.Thread(target=self._run, name="experiment-events", daemon=True).start()

    def publish(self, experiment: Experiment, timeout_s: float = 15.0) -> None:
        try:
            self._queue.put_nowait((experiment.corpus_id, experiment_message(experiment), timeout_s))
        except queue.Full:
            log.warning("experiment event not published: %d changes already wait for the broker", self._queue.qsize())

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._topic.send(*item)
            except FeedrankError as err:
                log.warning("experiment event not published: %s", err)

    def close(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)


class Verdicts:
    """The book's `on_change` listener."""

    def __init__(self, settings: Settings, registry: Registry, promote: Callable[[Experiment, str], dict],
                 publisher: ExperimentPublisher | None):
        self.settings = settings
        self.registry = registry
        self.promote = promote  # (the won experiment, the reason) -> the gate's decision
        self.publisher = publisher

    def __call__(self, experiment: Experiment) -> None:
        if experiment.state != RUNNING:
            try:
                self._ended(experiment)
            except FeedrankError as err:  # the experiment's own record already holds the verdict
                log.error("experiment %s ended but its verdict was not applied: %s", experiment.experiment_id, err)
        if self.publisher is not None:
            self.publisher.publish(experiment)

    def _ended(self, experiment: Experiment) -> None:
        said = summary(experiment)
        log.info(said)
        self.registry.note(experiment.corpus_id, experiment.challenger_version, said, judge=JUDGE,
                           numbers={"wins": experiment.wins, "losses": experiment.losses, "ties": experiment.ties,
                                    "p_value": experiment.p_value, "state": experiment.state})
        if experiment.state == "win" and self.settings.loop.auto_promote_online:
            decision = self.promote(experiment, said)
            log.info("online win promoted", extra={"fields": {"promoted": decision["promoted"],
                                                              "reason": decision["reason"]}})
