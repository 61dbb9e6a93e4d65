"""gRPC clients of the four services, and the one place a gRPC failure becomes a FeedrankError.

Every call carries a deadline (gateway.* timeouts) and, when the caller sent one, its
`Authorization` header as the `authorization` metadata the services' admin guard checks.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from services.common.config import Settings
from services.common.errors import ErrorKind, FeedrankError
from services.proto.feedrank.v1 import (
    feedback_pb2_grpc,
    reranker_pb2_grpc,
    retriever_pb2_grpc,
    trainer_pb2_grpc,
)

_KIND = {
    grpc.StatusCode.INVALID_ARGUMENT: ErrorKind.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE: ErrorKind.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: ErrorKind.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION: ErrorKind.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS: ErrorKind.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED: ErrorKind.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ErrorKind.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE: ErrorKind.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ErrorKind.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED: ErrorKind.CANCELLED,
    grpc.StatusCode.UNAUTHENTICATED: ErrorKind.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: ErrorKind.UNAUTHENTICATED,
}
# The services' edge writes INVALID_ARGUMENT details as "field: message" (FeedrankError.__str__).
_FIELD = re.compile(r"^([A-Za-z_][\w.\[\]@-]*): (.+)$", re.DOTALL)

Rename = Callable[[str], str]


def from_rpc_error(err: grpc.aio.AioRpcError | grpc.RpcError, service: str, rename: Rename | None = None
                   ) -> FeedrankError:
    code = err.code()
    details = err.details() or code.name.lower()
    kind = _KIND.get(code, ErrorKind.INTERNAL)
    field = None
    if kind in (ErrorKind.INVALID_ARGUMENT, ErrorKind.NOT_FOUND):
        match = _FIELD.match(details)
        if match:
            field, details = match.group(1), match.group(2)
            field = rename(field) if rename else field
    elif kind in (ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED, ErrorKind.INTERNAL):
        details = f"{service}: {details}"  # the operator needs to know which upstream failed
    return FeedrankError(kind, details, field)


class Backends:
    """Channels to the services, opened on first use, closed with the app."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, target: str) -> grpc.aio.Channel:
        if target not in self._channels:
            self._channels[target] = grpc.aio.insecure_channel(target)
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
                                metadata=_metadata(authorization))
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err, service, rename) from None

    async def stream(self, method: Any, request: Any, *, service: str, timeout: float,
                     authorization: str | None = None) -> AsyncIterator[Any]:
        try:
            async for item in method(request, timeout=timeout, metadata=_metadata(authorization)):
                yield item
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err, service) from None

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def _metadata(authorization: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", authorization),) if authorization else ()
