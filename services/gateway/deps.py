"""The routes' FastAPI dependencies: the app's upstreams and settings, the admin check, the telemetry limit.

They read `request.app.state`, which `app.create_app` fills; routes import them from here, not from the app.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from services.common.config import Settings
from services.common.credentials import bearer_token
from services.common.errors import ErrorKind, FeedrankError
from services.gateway.upstreams import Upstreams, request_authorization


def upstreams(request: Request) -> Upstreams:
    return request.app.state.upstreams


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def admin(request: Request) -> str | None:
    """Checks the bearer token of an admin route; returns the header to pass on to the service."""
    header = request.headers.get("authorization")
    presented = bearer_token(header).encode()
    if not (presented and hmac.compare_digest(presented, request.app.state.admin_token.encode())):
        raise FeedrankError(ErrorKind.UNAUTHENTICATED, "this route needs Authorization: Bearer <admin token>")
    return header


async def forward_authorization(request: Request) -> None:
    """Every service call of this request carries the caller's Authorization header (async: same context)."""
    request_authorization.set(request.headers.get("authorization"))


def rate_limited(request: Request) -> None:
    client = request.client.host if request.client else "unknown"
    if not request.app.state.telemetry_limiter.allow(client):
        raise FeedrankError(ErrorKind.RESOURCE_EXHAUSTED, f"telemetry rate limit exceeded for {client}")


UpstreamsDep = Annotated[Upstreams, Depends(upstreams)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
AdminDep = Annotated[str | None, Depends(admin)]
