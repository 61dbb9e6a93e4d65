"""gRPC clients of the four services; a gRPC failure comes out as a FeedrankError (common/rpc_errors.py).

Every call carries a deadline (gateway.* timeouts) and, when the caller sent one, its
`Authorization` header as the `authorization` metadata the services check: the gateway holds no
token of its own to lend, so a caller gets exactly the rights its token proves.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from typing import Any

import grpc

from services.common.channels import open_aio_channel
from services.common.config import Settings
from services.common.rpc_errors import Rename, from_rpc_error
from services.proto.feedrank.v1 import (
    feedback_pb2_grpc,
    reranker_pb2_grpc,
    retriever_pb2_grpc,
    trainer_pb2_grpc,
)

# The Authorization header of the HTTP request being served, set once per request by the app.
request_authorization: contextvars.ContextVar[str | None] = contextvars.ContextVar("authorization", default=None)


class Upstreams:
    """Channels to the services, opened on first use, closed with the app."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, target: str) -> grpc.aio.Channel:
        if target not in self._channels:
            self._channels[target] = open_aio_channel(target, self.settings.endpoints)
        return self._channels[target]

    @property
    def retriever(self) -> retriever_pb2_grpc.RetrieverStub:
        return retriever_pb2_grpc.RetrieverStub(self._channel(self.settings.endpoints.retriever))

    @property
    def reranker(self) -> reranker_pb2_grpc.RerankerStub:
        return reranker_pb2_grpc.RerankerStub(self._channel(self.settings.endpoints.reranker))

    @property
    def feedback(self) -> feedback_pb2_grpc.FeedbackStub:
        return feedback_pb2_grpc.FeedbackStub(self._channel(self.settings.endpoints.feedback))

    @property
    def trainer(self) -> trainer_pb2_grpc.TrainerStub:
        return trainer_pb2_grpc.TrainerStub(self._channel(self.settings.endpoints.trainer))

    async def call(self, method: Any, request: Any, *, service: str, timeout: float | None = None,
                   authorization: str | None = None, rename: Rename | None = None) -> Any:
        """One unary call with a deadline; gRPC failures come out as FeedrankError."""
        try:
            return await method(request, timeout=timeout or self.settings.gateway.rpc_timeout_s,
                                metadata=_metadata(authorization or request_authorization.get()))
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err, service, rename) from None

    async def stream(self, method: Any, request: Any, *, service: str, timeout: float,
                     authorization: str | None = None) -> AsyncIterator[Any]:
        try:
            async for item in method(request, timeout=timeout,
                                     metadata=_metadata(authorization or request_authorization.get())):
                yield item
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err, service) from None

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def _metadata(authorization: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", authorization),) if authorization else ()
