"""The gateway's FastAPI app, built by `create_app(settings)`: routes, the one error handler, the console."""

from __future__ import annotations

import hmac
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from services.common.config import Settings
from services.common.errors import ErrorKind, FeedrankError
from services.gateway.backends import Backends
from services.gateway.errors import feedrank_error_handler, validation_error_handler
from services.gateway.ratelimit import RateLimiter

STATIC = Path(__file__).parent / "static"


def backends(request: Request) -> Backends:
    return request.app.state.backends


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def admin(request: Request) -> str | None:
    """Checks the bearer token of an admin route; returns the header to pass on to the service."""
    token = request.app.state.settings.endpoints.admin_token
    header = request.headers.get("authorization")
    if token and not (header and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())):
        raise FeedrankError(ErrorKind.UNAUTHENTICATED, "this route needs Authorization: Bearer <admin token>")
    return header


def rate_limited(request: Request) -> None:
    client = request.client.host if request.client else "unknown"
    if not request.app.state.telemetry_limiter.allow(client):
        raise FeedrankError(ErrorKind.RESOURCE_EXHAUSTED, f"telemetry rate limit exceeded for {client}")


BackendsDep = Annotated[Backends, Depends(backends)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
AdminDep = Annotated[str | None, Depends(admin)]


def create_app(settings: Settings) -> FastAPI:
    from services.gateway.routes import compat, config, reranker, search

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await app.state.backends.close()

    app = FastAPI(
        title="feedrank gateway",
        version="0.1.0",
        description="HTTP/JSON face of the feedrank gRPC services, with Cohere- and TEI-compatible rerank routes.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.backends = Backends(settings)
    gw = settings.gateway
    app.state.telemetry_limiter = RateLimiter(gw.telemetry_rate_per_s, gw.telemetry_burst, gw.rate_limit_clients)
    app.add_exception_handler(FeedrankError, feedrank_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    for module in (search, reranker, config, compat):
        app.include_router(module.router)

    @app.get("/healthz", tags=["console"], summary="The gateway process is up (it checks no upstream)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/ui/index.html")

    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")
    return app
