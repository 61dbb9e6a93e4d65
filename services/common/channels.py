"""Every gRPC client channel: TLS when configured, the message size limit, and a bearer token.

Services, the gateway and the CLI open channels here and nowhere else, so `endpoints.tls_*` and
`endpoints.max_message_bytes` reach every client, and a token is attached to every call of a channel
without each call site passing metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from services.common.config import EndpointSettings

TokenSource = str | Callable[[], str]


def message_options(endpoints: EndpointSettings) -> list[tuple[str, Any]]:
    limit = endpoints.max_message_bytes
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def client_credentials(endpoints: EndpointSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials verifying the servers with endpoints.tls_ca_file (and presenting our certificate for
    mTLS when one is configured); None = plaintext."""
    if not endpoints.tls_ca_file:
        return None
    key = cert = None
    if endpoints.tls_cert_file and endpoints.tls_key_file:
        key, cert = Path(endpoints.tls_key_file).read_bytes(), Path(endpoints.tls_cert_file).read_bytes()
    return grpc.ssl_channel_credentials(Path(endpoints.tls_ca_file).read_bytes(), key, cert)


def open_channel(target: str, endpoints: EndpointSettings, token: TokenSource = "",
                 options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A blocking channel to `target`; `token` (or what it returns, per call) goes out as a bearer token."""
    opts = [*message_options(endpoints), *options]
    creds = client_credentials(endpoints)
    channel = grpc.secure_channel(target, creds, opts) if creds else grpc.insecure_channel(target, opts)
    return grpc.intercept_channel(channel, _Bearer(token)) if token else channel


def open_aio_channel(target: str, endpoints: EndpointSettings, token: TokenSource = "",
                     options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """The asyncio twin of `open_channel`."""
    opts = [*message_options(endpoints), *options]
    creds = client_credentials(endpoints)
    interceptors = [kind(token) for kind in _AIO_KINDS] if token else None
    if creds:
        return grpc.aio.secure_channel(target, creds, opts, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, opts, interceptors=interceptors)


def _with_token(metadata: Any, token: TokenSource) -> list[tuple[str, str]]:
    """The call's metadata plus the channel's bearer token, unless the call already names one."""
    pairs = [(k, v) for k, v in (metadata or ())]
    if any(k == "authorization" for k, _ in pairs):
        return pairs
    value = token() if callable(token) else token
    return [*pairs, ("authorization", f"Bearer {value}")] if value else pairs


class _Details(grpc.ClientCallDetails):
    def __init__(self, base: grpc.ClientCallDetails, metadata: list[tuple[str, str]]):
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, token: TokenSource):
        self.token = token

    def _details(self, details: grpc.ClientCallDetails) -> _Details:
        return _Details(details, _with_token(details.metadata, self.token))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def _aio_details(details: grpc.aio.ClientCallDetails, token: TokenSource) -> grpc.aio.ClientCallDetails:
    return grpc.aio.ClientCallDetails(details.method, details.timeout,
                                      grpc.aio.Metadata(*_with_token(details.metadata, token)),
                                      details.credentials, details.wait_for_ready)


class _AioBearer:
    def __init__(self, token: TokenSource):
        self.token = token


# grpc.aio files each interceptor under the first call kind it implements: one class per kind.
class _AioUnaryUnary(_AioBearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(_aio_details(client_call_details, self.token), request)


class _AioUnaryStream(_AioBearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(_aio_details(client_call_details, self.token), request)


class _AioStreamUnary(_AioBearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(_aio_details(client_call_details, self.token), request_iterator)


class _AioStreamStream(_AioBearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(_aio_details(client_call_details, self.token), request_iterator)


_AIO_KINDS = (_AioUnaryUnary, _AioUnaryStream, _AioStreamUnary, _AioStreamStream)
