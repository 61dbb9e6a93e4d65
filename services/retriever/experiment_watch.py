"""Which corpora run an online experiment, as the retriever knows it, and the breaker that stops a broken one.

The trainer owns the experiments (services/trainer/online/experiments.py). The retriever asks it,
Trainer.GetExperiment per corpus, at most once every `interleaving.watch_ttl_s`, in a background task: a
search reads the cached answer and never waits for the trainer. A trainer that cannot be reached means "no
experiment" until it answers again, so searches keep the champion alone. Why a poll rather than reading the
trainer's file: the retriever and the trainer need not share a disk (Kubernetes), only the gRPC contract,
and one small call per corpus every few seconds costs nothing next to the searches.

The breaker: after `interleaving.max_consecutive_failures` interleaved searches in a row whose challenger
failed (late, broken, or no longer the challenger the experiment names), the retriever stops interleaving
that experiment at once and asks the trainer to stop it with the reason (an admin call with the data dir's or
the configured admin token). If that call fails the experiment stays off here and the call is tried again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

import grpc
from prometheus_client import Counter

from services.common.channels import open_aio_channel
from services.common.config import EndpointSettings
from services.common.credentials import service_token
from services.proto.feedrank.v1 import trainer_pb2, trainer_pb2_grpc
from services.retriever.online import OnlineExperiment

log = logging.getLogger(__name__)

BROKEN = Counter("feedrank_experiments_broken_total",
                 "Experiments the retriever stopped after consecutive challenger failures", ["corpus"])


class ExperimentSource(Protocol):
    async def running(self, corpus_id: str) -> OnlineExperiment | None: ...

    async def stop(self, corpus_id: str, reason: str) -> None: ...

    async def close(self) -> None: ...


class TrainerExperiments:
    """ExperimentSource over the Trainer gRPC API."""

    def __init__(self, target: str, endpoints: EndpointSettings, admin_token: str, timeout_s: float = 2.0):
        self.target = target
        self.endpoints = endpoints
        self.admin_token = admin_token
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: trainer_pb2_grpc.TrainerStub | None = None

    def _trainer(self) -> trainer_pb2_grpc.TrainerStub:
        if self._stub is None:
            self._channel = open_aio_channel(self.target, self.endpoints, service_token(self.endpoints.read_token))
            self._stub = trainer_pb2_grpc.TrainerStub(self._channel)
        return self._stub

    async def running(self, corpus_id: str) -> OnlineExperiment | None:
        try:
            e = await self._trainer().GetExperiment(trainer_pb2.GetExperimentRequest(corpus_id=corpus_id),
                                                    timeout=self.timeout_s)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        if e.state != "running":
            return None
        return OnlineExperiment(e.experiment_id, e.corpus_id, e.challenger_version, e.share, e.shadow)

    async def stop(self, corpus_id: str, reason: str) -> None:
        metadata = (("authorization", f"Bearer {self.admin_token}"),) if self.admin_token else None
        try:
            await self._trainer().StopExperiment(trainer_pb2.StopExperimentRequest(corpus_id=corpus_id, reason=reason),
                                                 timeout=self.timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.FAILED_PRECONDITION:  # already stopped: nothing left to do
                raise

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None


class ExperimentWatch:
    def __init__(self, source: ExperimentSource, ttl_s: float, max_failures: int,
                 clock: Callable[[], float] = time.monotonic):
        self.source = source
        self.ttl_s = ttl_s
        self.max_failures = max_failures
        self.clock = clock
        self._known: dict[str, tuple[OnlineExperiment | None, float]] = {}  # corpus -> (experiment, fetched at)
        self._refreshing: dict[str, asyncio.Task] = {}
        self._failures: dict[str, int] = {}  # experiment id -> consecutive challenger failures
        self._broken: dict[str, str] = {}  # experiment id -> why the retriever stopped it
        self._stopping: set[asyncio.Task] = set()
        self._last_warning = 0.0

    def current(self, corpus_id: str) -> OnlineExperiment | None:
        """The corpus's running experiment as last heard (None while not yet known); refreshes when stale."""
        known, fetched = self._known.get(corpus_id, (None, float("-inf")))
        if self.clock() - fetched >= self.ttl_s and corpus_id not in self._refreshing:
            task = asyncio.get_running_loop().create_task(self._refresh(corpus_id))
            self._refreshing[corpus_id] = task
            task.add_done_callback(lambda _: self._refreshing.pop(corpus_id, None))
        if known is None or known.experiment_id in self._broken:
            return None
        return known

    async def refresh(self, corpus_id: str) -> OnlineExperiment | None:
        """Ask the trainer now (tests, and the first search of a corpus if a caller wants to wait)."""
        await self._refresh(corpus_id)
        return self.current(corpus_id)

    async def _refresh(self, corpus_id: str) -> None:
        try:
            experiment = await self.source.running(corpus_id)
        except Exception as err:  # noqa: BLE001 - no trainer means no experiment, never a failed search
            experiment = None
            if self.clock() - self._last_warning > 60:
                self._last_warning = self.clock()
                log.warning("cannot learn the running experiment of %s: %s", corpus_id, err)
        self._known[corpus_id] = (experiment, self.clock())
        if experiment is not None and experiment.experiment_id in self._broken:
            self._stop(experiment, self._broken[experiment.experiment_id])  # the last stop call did not land

    def succeeded(self, experiment: OnlineExperiment) -> None:
        self._failures[experiment.experiment_id] = 0

    def failed(self, experiment: OnlineExperiment, reason: str) -> None:
        count = self._failures.get(experiment.experiment_id, 0) + 1
        self._failures[experiment.experiment_id] = count
        if count >= self.max_failures and experiment.experiment_id not in self._broken:
            why = (f"the challenger failed {count} {'shadowed' if experiment.shadow else 'interleaved'} searches "
                   f"in a row (last: {reason}); searches were served the champion alone")
            self._broken[experiment.experiment_id] = why
            BROKEN.labels(experiment.corpus_id).inc()
            log.warning("stopping experiment %s on %s: %s", experiment.experiment_id, experiment.corpus_id, why)
            self._stop(experiment, why)

    def _stop(self, experiment: OnlineExperiment, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(self._send_stop(experiment, reason))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _send_stop(self, experiment: OnlineExperiment, reason: str) -> None:
        try:
            await self.source.stop(experiment.corpus_id, reason)
        except Exception as err:  # noqa: BLE001 - retried at the next refresh that still sees it running
            log.warning("could not stop experiment %s: %s", experiment.experiment_id, err)

    async def close(self) -> None:
        pending = [*self._refreshing.values(), *self._stopping]
        if pending:
            await asyncio.wait(pending, timeout=5)
        await self.source.close()
