"""AsyncFeedrank: the asyncio client, the same calls as Feedrank awaited (`await results.click(...)`)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from services.client import types
from services.client.retry import Retry, retryable
from services.client.sync import channel_credentials
from services.common.rpc_errors import from_rpc_error
from services.proto.feedrank.v1 import feedback_pb2_grpc, retriever_pb2_grpc


class AsyncFeedrank:
    """Feedrank for asyncio (see services.client.sync.Feedrank): deadlines covering the retries, retries
    on UNAVAILABLE only, the bearer token on every call, typed results. Make it inside the event loop
    that uses it (its gRPC channels belong to that loop)."""

    def __init__(self, retriever: str = "127.0.0.1:50051", feedback: str = "127.0.0.1:50053", *,
                 token: str = "", timeout_s: float = 10.0, retry: Retry = Retry(), source: str = "client",
                 session_id: str = "", tls_ca_file: str | Path | None = None,
                 interceptors: Sequence[grpc.aio.ClientInterceptor] = ()):
        credentials = channel_credentials(tls_ca_file)
        self._channels = [
            grpc.aio.secure_channel(t, credentials, interceptors=list(interceptors)) if credentials
            else grpc.aio.insecure_channel(t, interceptors=list(interceptors)) for t in (retriever, feedback)
        ]
        self._retriever = retriever_pb2_grpc.RetrieverStub(self._channels[0])
        self._feedback = feedback_pb2_grpc.FeedbackStub(self._channels[1])
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout_s = timeout_s
        self.retry = retry
        self.source = source
        self.session_id = session_id or uuid.uuid4().hex[:12]
        self._rng = random.Random()

    async def search(self, corpus_id: str, query: str, *, top_k: int = 0, session_id: str = "", model: str = "",
                     rerank_mode: str | None = None, timeout: float | None = None) -> types.SearchResults:
        request = types.search_request(corpus_id, query, top_k=top_k, session_id=session_id or self.session_id,
                                       model=model, rerank_mode=rerank_mode)
        response = await self._call(self._retriever.Search, request, "retriever", timeout)
        return types.search_results(request, response, self.feedback)

    async def feedback(self, query_id: str, *events: types.Feedback, session_id: str = "",
                         timeout: float | None = None, experiment_id: str = "") -> types.Recorded:
        """Clicks and ratings on one search's results, in one request (each event with the rank it was shown
        at); `SearchResults.click/rate/feedback` fill in the query id, session and ranks for you."""
        request = types.record_request(query_id, session_id or self.session_id, events, self.source,
                                       experiment_id)
        return types.recorded(await self._call(self._feedback.Record, request, "feedback", timeout))

    async def _call(self, method: Any, request: Any, service: str, timeout: float | None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout_s)
        pauses = self.retry.pauses(deadline, self._rng)
        while True:
            try:
                return await method(request, timeout=max(deadline - time.monotonic(), 0.001),
                                    metadata=self._metadata)
            except grpc.aio.AioRpcError as err:
                pause = next(pauses, None) if retryable(err) else None
                if pause is None:
                    raise from_rpc_error(err, service) from None
                await asyncio.sleep(pause)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def __aenter__(self) -> AsyncFeedrank:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
