"""Who is calling: the role the edge interceptor proved for the current call.

The gRPC interceptor (services/common/grpc_server.py) and the gateway set it once per call from the
bearer token; code deeper in a service asks `caller_role()` or `require_admin()` instead of reading
metadata, so a check that depends on the request's content (say, naming a version id rather than an
alias) lives next to the field it guards.
"""

from __future__ import annotations

import contextvars
from typing import Literal

from services.common.errors import ErrorKind, FeedrankError

Role = Literal["admin", "read", "anonymous"]

_ROLE: contextvars.ContextVar[Role] = contextvars.ContextVar("feedrank_caller_role", default="anonymous")


def caller_role() -> Role:
    return _ROLE.get()


def set_caller_role(role: Role) -> contextvars.Token:
    return _ROLE.set(role)


def require_admin(field: str | None = None, what: str = "this call") -> None:
    """Raise UNAUTHENTICATED unless the current call carried the admin token."""
    if _ROLE.get() != "admin":
        raise FeedrankError(ErrorKind.UNAUTHENTICATED, f"{what} needs the admin token", field)
