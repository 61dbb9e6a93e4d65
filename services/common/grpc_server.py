"""gRPC bootstrap every service shares: health, reflection, error mapping, metrics, shutdown.

`FeedrankError` is turned into a gRPC status here and nowhere else. Request ids arrive as
`x-request-id` metadata (or are made up) and reach every log line of the call.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram, start_http_server

from services.common.config import Settings, get_settings
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


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    """Maps domain errors to statuses, counts calls, and guards admin methods with a token."""

    def __init__(self, admin_methods: Iterable[str] = (), admin_token: str = ""):
        self._admin = frozenset(admin_methods)
        self._token = admin_token

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        needs_token = bool(self._token) and method.rsplit("/", 1)[-1] in self._admin
        metadata = dict(details.invocation_metadata or ())
        rid = metadata.get("x-request-id") or uuid.uuid4().hex[:16]
        authorized = not needs_token or metadata.get("authorization") == f"Bearer {self._token}"

        async def guard(context: grpc.aio.ServicerContext) -> None:
            request_id.set(rid)
            if not authorized:
                await _abort(context, method, FeedrankError(ErrorKind.UNAUTHENTICATED, "admin token required"))

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
        bind: str,
        admin_methods: Iterable[str] = (),
        admin_token: str = "",
        grace_seconds: float = 10.0,
        metrics_port: int = 0,
        options: list[tuple[str, Any]] | None = None,
    ):
        self.name = name
        self.service_names = service_names
        self.grace_seconds = grace_seconds
        self.metrics_port = metrics_port
        self.server = grpc.aio.server(
            interceptors=[EdgeInterceptor(admin_methods, admin_token)],
            options=options or [("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )
        register(self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        self.port = self.server.add_insecure_port(bind)
        if self.port == 0:
            raise OSError(f"{name}: cannot bind {bind}")

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for svc in ["", *self.service_names]:
            await self.health.set(svc, status)

    async def start(self) -> None:
        if self.metrics_port:
            try:
                start_http_server(self.metrics_port)
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
    asyncio.run(serve(settings, args.port))


def bind_address(target: str, bind_host: str, port: int | None) -> tuple[str, int]:
    """The bind address for a service whose endpoint is `target`, with an optional --port override."""
    default_port = int(target.rsplit(":", 1)[1])
    chosen = default_port if port is None else port
    return f"{bind_host}:{chosen}", chosen


def metrics_port_for(grpc_port: int, offset: int) -> int:
    return grpc_port + offset if offset and grpc_port else 0
