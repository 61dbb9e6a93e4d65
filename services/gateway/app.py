"""The gateway's FastAPI app, built by `create_app(settings)`: routes, the one error handler, the console."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from services.common.config import Settings
from services.common.credentials import serving_admin_token
from services.common.errors import FeedrankError
from services.gateway.body_limit import BodyLimit
from services.gateway.deps import forward_authorization
from services.gateway.errors import feedrank_error_handler, validation_error_handler
from services.gateway.ratelimit import RateLimiter
from services.gateway.routes import compat, config, experiments, judging, reranker, search
from services.gateway.upstreams import Upstreams

STATIC = Path(__file__).parent / "static"


def create_app(settings: Settings, bind_host: str | None = None) -> FastAPI:
    """The app; `bind_host` (default endpoints.bind_host) decides where the admin token may come from."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await app.state.upstreams.close()

    app = FastAPI(
        title="feedrank gateway",
        version="0.1.0",
        description="HTTP/JSON face of the feedrank gRPC services, with Cohere- and TEI-compatible rerank routes.",
        lifespan=lifespan,
        dependencies=[Depends(forward_authorization)],
    )
    app.state.settings = settings
    app.state.admin_token = serving_admin_token(settings, bind_host or settings.endpoints.bind_host)
    app.add_middleware(BodyLimit, limit=settings.gateway.max_body_bytes)
    app.state.upstreams = Upstreams(settings)
    gw = settings.gateway
    app.state.telemetry_limiter = RateLimiter(gw.telemetry_rate_per_s, gw.telemetry_burst, gw.rate_limit_clients)
    app.add_exception_handler(FeedrankError, feedrank_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    for module in (search, reranker, config, compat, judging, experiments):
        app.include_router(module.router)

    @app.get("/healthz", tags=["console"], summary="The gateway process is up (it checks no upstream)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/ui/index.html")

    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")
    return app
