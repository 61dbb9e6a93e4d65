"""Feedrank: the blocking client of the Retriever and Feedback services."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from services.client import types
from services.client.retry import Retry, retryable
from services.common.rpc_errors import from_rpc_error
from services.proto.feedrank.v1 import feedback_pb2_grpc, retriever_pb2_grpc


def channel_credentials(tls_ca_file: str | Path | None) -> grpc.ChannelCredentials | None:
    return grpc.ssl_channel_credentials(Path(tls_ca_file).read_bytes()) if tls_ca_file else None


class Feedrank:
    """Search a corpus and send feedback on what was shown.

    Every call has a deadline (`timeout_s`, or the call's `timeout`) that covers its retries; a
    failure is a services.common.errors.FeedrankError naming the field at fault. `token` goes as
    `authorization: Bearer <token>` metadata on every call.
    """

    def __init__(self, retriever: str = "127.0.0.1:50051", feedback: str = "127.0.0.1:50053", *,
                 token: str = "", timeout_s: float = 10.0, retry: Retry = Retry(), source: str = "client",
                 session_id: str = "", tls_ca_file: str | Path | None = None,
                 interceptors: Sequence[grpc.UnaryUnaryClientInterceptor] = ()):
        credentials = channel_credentials(tls_ca_file)
        self._channels = [grpc.secure_channel(t, credentials) if credentials else grpc.insecure_channel(t)
                          for t in (retriever, feedback)]
        retriever_channel, feedback_channel = (grpc.intercept_channel(c, *interceptors) for c in self._channels)
        self._retriever = retriever_pb2_grpc.RetrieverStub(retriever_channel)
        self._feedback = feedback_pb2_grpc.FeedbackStub(feedback_channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout_s = timeout_s
        self.retry = retry
        self.source = source
        self.session_id = session_id or uuid.uuid4().hex[:12]
        self._rng = random.Random()

    def search(self, corpus_id: str, query: str, *, top_k: int = 0, session_id: str = "", model: str = "",
               rerank_mode: str | None = None, timeout: float | None = None) -> types.SearchResults:
        """Ranked results (top_k 0 = the retriever's default), ready for `.click()` / `.rate()`."""
        request = types.search_request(corpus_id, query, top_k=top_k, session_id=session_id or self.session_id,
                                       model=model, rerank_mode=rerank_mode)
        response = self._call(self._retriever.Search, request, "retriever", timeout)
        return types.search_results(request, response, self.feedback)

    def feedback(self, query_id: str, *events: types.Feedback, session_id: str = "",
                   timeout: float | None = None, experiment_id: str = "") -> types.Recorded:
        """Clicks and ratings on one search's results, in one request (each event with the rank it was shown
        at); `SearchResults.click/rate/feedback` fill in the query id, session and ranks for you."""
        request = types.record_request(query_id, session_id or self.session_id, events, self.source,
                                       experiment_id)
        return types.recorded(self._call(self._feedback.Record, request, "feedback", timeout))

    def _call(self, method: Any, request: Any, service: str, timeout: float | None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout_s)
        pauses = self.retry.pauses(deadline, self._rng)
        while True:
            try:
                return method(request, timeout=max(deadline - time.monotonic(), 0.001), metadata=self._metadata)
            except grpc.RpcError as err:
                pause = next(pauses, None) if retryable(err) else None
                if pause is None:
                    raise from_rpc_error(err, service) from None
                time.sleep(pause)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> Feedrank:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
