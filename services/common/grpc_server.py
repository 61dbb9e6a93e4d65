"""gRPC bootstrap every service shares: health, reflection, error mapping, metrics, shutdown.

`FeedrankError` is turned into a gRPC status here and nowhere else. Request ids arrive as
`x-request-id` metadata (or are made up) and reach every log line of the call.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram, start_http_server

from services.common.auth import Role, set_caller_role
from services.common.channels import message_options
from services.common.config import EndpointSettings, Settings, get_settings
from services.common.credentials import bearer_token, serving_admin_token, set_caller_token
from services.common.errors import ErrorKind, FeedrankError
from services.common.logs import request_id, setup_logging

log = logging.getLogger(__name__)

_STATUS = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.CANCELLED: grpc.StatusCode.CANCELLED,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}

RPC_REQUESTS = Counter("feedrank_grpc_requests_total", "gRPC calls served", ["method", "code"])
RPC_SECONDS = Histogram(
    "feedrank_grpc_request_seconds", "gRPC call latency", ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


# Probes and tooling need no token; every feedrank.v1 method does (admin or, with a read token set, read).
_OPEN_SERVICES = frozenset({health.SERVICE_NAME, reflection.SERVICE_NAME})


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    """Maps domain errors to statuses, counts calls, and proves the caller's role from its bearer token.

    Admin methods need the admin token; with a read token configured, every other feedrank method needs
    the read or the admin token. The role is then exposed to the call (`services.common.auth`) for checks
    that depend on the request's content.
    """

    def __init__(self, admin_methods: Iterable[str], admin_token: str, read_token: str = ""):
        if not admin_token:
            raise ValueError("an admin token is required: admin methods are never open")
        self._admin = frozenset(admin_methods)
        self._admin_token = admin_token.encode()
        self._read_token = read_token.encode()

    def role(self, authorization: str | None) -> Role:
        presented = bearer_token(authorization).encode()
        if not presented:
            return "anonymous"
        # compare_digest on both: which token matched must not be learnable from timing either
        is_admin = hmac.compare_digest(presented, self._admin_token)
        is_read = bool(self._read_token) and hmac.compare_digest(presented, self._read_token)
        return "admin" if is_admin else "read" if is_read else "anonymous"

    def refusal(self, method: str, role: Role) -> FeedrankError | None:
        service, _, name = method.strip("/").partition("/")
        if service in _OPEN_SERVICES or role == "admin":
            return None
        if name in self._admin:
            return FeedrankError(ErrorKind.UNAUTHENTICATED, f"{name} needs the admin token (authorization: Bearer ...)")
        if self._read_token and role != "read":
            return FeedrankError(ErrorKind.UNAUTHENTICATED, f"{name} needs the read or the admin token")
        return None

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        metadata = dict(details.invocation_metadata or ())
        rid = metadata.get("x-request-id") or uuid.uuid4().hex[:16]
        authorization = metadata.get("authorization")
        role = self.role(authorization)
        refused = self.refusal(method, role)

        async def guard(context: grpc.aio.ServicerContext) -> None:
            # Set inside the call's own task: the values belong to this call only.
            request_id.set(rid)
            set_caller_role(role)
            set_caller_token(bearer_token(authorization) if role != "anonymous" else "")
            if refused is not None:
                await _abort(context, method, refused)

        if handler.unary_unary or handler.stream_unary:
            inner = handler.unary_unary or handler.stream_unary

            async def unary_response(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                await guard(context)
                started = time.perf_counter()
                try:
                    response = await inner(request_or_iterator, context)
                except FeedrankError as err:
                    await _abort(context, method, err)
                except (grpc.aio.AbortError, asyncio.CancelledError):
                    RPC_REQUESTS.labels(method, "ABORTED").inc()
                    raise
                except Exception as err:  # the one place an unexpected failure becomes INTERNAL
                    log.exception("unhandled error in %s", method)
                    await _abort(context, method, FeedrankError(ErrorKind.INTERNAL, f"internal error: {err}"))
                RPC_REQUESTS.labels(method, "OK").inc()
                RPC_SECONDS.labels(method).observe(time.perf_counter() - started)
                return response

            factory = grpc.unary_unary_rpc_method_handler if handler.unary_unary else grpc.stream_unary_rpc_method_handler
            return factory(unary_response, handler.request_deserializer, handler.response_serializer)

        inner_stream = handler.unary_stream or handler.stream_stream

        async def stream_response(request_or_iterator: Any, context: grpc.aio.ServicerContext):
            await guard(context)
            try:
                async for item in inner_stream(request_or_iterator, context):
                    yield item
            except FeedrankError as err:
                await _abort(context, method, err)
            except Exception as err:
                if isinstance(err, grpc.aio.AbortError):
                    raise
                log.exception("unhandled error in %s", method)
                await _abort(context, method, FeedrankError(ErrorKind.INTERNAL, f"internal error: {err}"))
            RPC_REQUESTS.labels(method, "OK").inc()

        factory = grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
        return factory(stream_response, handler.request_deserializer, handler.response_serializer)


async def _abort(context: grpc.aio.ServicerContext, method: str, err: FeedrankError) -> None:
    code = _STATUS[err.kind]
    RPC_REQUESTS.labels(method, code.name).inc()
    await context.abort(code, str(err))


class GrpcApp:
    """One service's server: its servicers plus health and reflection, stopped by SIGTERM."""

    def __init__(
        self,
        name: str,
        service_names: list[str],
        register: Callable[[grpc.aio.Server], None],
        *,
        settings: Settings,
        bind: str,
        admin_methods: Iterable[str] = (),
        grace_seconds: float = 10.0,
        metrics_port: int = 0,
        options: list[tuple[str, Any]] | None = None,
    ):
        self.name = name
        self.service_names = service_names
        self.grace_seconds = grace_seconds
        self.metrics_port = metrics_port
        endpoints = settings.endpoints
        self.host = bind.rsplit(":", 1)[0]
        admin_token = serving_admin_token(settings, self.host)  # refuses a non-loopback bind without a token
        self.server = grpc.aio.server(
            interceptors=[EdgeInterceptor(admin_methods, admin_token, endpoints.read_token)],
            options=[*message_options(endpoints), *(options or ())],
        )
        register(self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        credentials = server_credentials(endpoints)
        if credentials is None:
            self.port = self.server.add_insecure_port(bind)
        else:
            self.port = self.server.add_secure_port(bind, credentials)
        if self.port == 0:
            raise OSError(f"{name}: cannot bind {bind}")

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for svc in ["", *self.service_names]:
            await self.health.set(svc, status)

    async def start(self) -> None:
        if self.metrics_port:
            try:
                start_http_server(self.metrics_port, addr=self.host.strip("[]"))
            except OSError as err:
                log.warning("metrics port %s unavailable: %s", self.metrics_port, err)
        await self.server.start()
        log.info("%s listening", self.name, extra={"fields": {"port": self.port}})

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.grace_seconds)

    async def run_until_signal(self, on_stop: Callable[[], Awaitable[None]] | None = None) -> None:
        """Serve until SIGTERM/SIGINT, then refuse new calls and drain in-flight ones."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("%s draining", self.name)
        await self.stop()
        if on_stop is not None:
            await on_stop()


def service_main(name: str, serve: Callable[[Settings, int | None], Awaitable[None]]) -> None:
    """The `python -m services.<name> [--port P]` entry point every gRPC service shares."""
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}")
    parser.add_argument("--port", type=int, default=None, help=f"gRPC port (default: the port of endpoints.{name})")
    args = parser.parse_args()
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    try:
        asyncio.run(serve(settings, args.port))
    except FeedrankError as err:  # a refused configuration (say, no admin token beyond loopback): say why, plainly
        raise SystemExit(f"{name}: {err}") from None


def server_credentials(endpoints: EndpointSettings) -> grpc.ServerCredentials | None:
    """TLS from endpoints.tls_cert_file/tls_key_file; with tls_client_ca_file, clients must present a
    certificate it signed (mTLS). None = plaintext."""
    if not (endpoints.tls_cert_file or endpoints.tls_key_file):
        if endpoints.tls_client_ca_file:
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, "mTLS needs the server's own certificate too",
                                "endpoints.tls_cert_file")
        return None
    if not (endpoints.tls_cert_file and endpoints.tls_key_file):
        raise FeedrankError(ErrorKind.FAILED_PRECONDITION, "TLS needs both tls_cert_file and tls_key_file",
                            "endpoints.tls_key_file" if endpoints.tls_cert_file else "endpoints.tls_cert_file")
    pair = (Path(endpoints.tls_key_file).read_bytes(), Path(endpoints.tls_cert_file).read_bytes())
    client_ca = Path(endpoints.tls_client_ca_file).read_bytes() if endpoints.tls_client_ca_file else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


def bind_address(target: str, bind_host: str, port: int | None) -> tuple[str, int]:
    """The bind address for a service whose endpoint is `target`, with an optional --port override."""
    default_port = int(target.rsplit(":", 1)[1])
    chosen = default_port if port is None else port
    return f"{bind_host}:{chosen}", chosen


def metrics_port_for(grpc_port: int, offset: int) -> int:
    return grpc_port + offset if offset and grpc_port else 0
