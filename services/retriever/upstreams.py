"""The retriever's two outgoing calls: Reranker.Rerank (awaited, with a deadline) and
Feedback.Record for impressions (fire-and-forget: never awaited by a search)."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from services.common.channels import open_aio_channel
from services.common.config import EndpointSettings
from services.common.credentials import service_token
from services.proto.feedrank.v1 import feedback_pb2, feedback_pb2_grpc, reranker_pb2, reranker_pb2_grpc

log = logging.getLogger(__name__)


class RerankerClient:
    def __init__(self, target: str, endpoints: EndpointSettings):
        self.target = target
        self.endpoints = endpoints
        self._channel: grpc.aio.Channel | None = None
        self._stub: reranker_pb2_grpc.RerankerStub | None = None

    async def rerank(self, request: reranker_pb2.RerankRequest, timeout: float) -> reranker_pb2.RerankResponse:
        """Raises grpc.aio.AioRpcError (UNAVAILABLE, DEADLINE_EXCEEDED, ...) for the caller to degrade on."""
        if self._stub is None:
            self._channel = open_aio_channel(self.target, self.endpoints, service_token(self.endpoints.read_token))
            self._stub = reranker_pb2_grpc.RerankerStub(self._channel)
        return await self._stub.Rerank(request, timeout=timeout)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None


class ImpressionSender:
    """Sends each impression in a background task with a short deadline; failures are logged, not raised."""

    def __init__(self, target: str, timeout: float, endpoints: EndpointSettings):
        self.target = target
        self.timeout = timeout
        self.endpoints = endpoints
        self._channel: grpc.aio.Channel | None = None
        self._stub: feedback_pb2_grpc.FeedbackStub | None = None
        self._tasks: set[asyncio.Task] = set()
        self._last_warning = 0.0
        self.sent = 0
        self.failed = 0

    def send(self, event: feedback_pb2.FeedbackEvent) -> None:
        if self._stub is None:
            self._channel = open_aio_channel(self.target, self.endpoints, service_token(self.endpoints.read_token))
            self._stub = feedback_pb2_grpc.FeedbackStub(self._channel)
        task = asyncio.get_running_loop().create_task(self._record(event))
        self._tasks.add(task)  # keep a reference until done, or the task may be collected mid-flight
        task.add_done_callback(self._tasks.discard)

    async def _record(self, event: feedback_pb2.FeedbackEvent) -> None:
        try:
            await self._stub.Record(feedback_pb2.RecordRequest(events=[event]), timeout=self.timeout)
            self.sent += 1
        except grpc.aio.AioRpcError as err:
            self.failed += 1
            now = time.monotonic()
            if now - self._last_warning > 60:  # one line a minute while the feedback service is away
                self._last_warning = now
                log.warning("impression not recorded (%s at %s): %s", err.code().name, self.target, err.details())

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for impressions in flight (at shutdown, or before a CLI process exits)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout or self.timeout * 2)

    async def close(self) -> None:
        await self.drain()
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None
