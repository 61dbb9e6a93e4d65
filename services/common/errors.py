"""The one domain error type. Each edge (gRPC interceptor, HTTP gateway) maps it once."""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    FAILED_PRECONDITION = "failed_precondition"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    UNAVAILABLE = "unavailable"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    CANCELLED = "cancelled"
    UNAUTHENTICATED = "unauthenticated"
    INTERNAL = "internal"


class FeedrankError(Exception):
    """A failure a caller can act on. `field` names the request field at fault, if any."""

    def __init__(self, kind: ErrorKind, message: str, field: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class TooLarge(FeedrankError):
    """A request (or a message) over a size limit: INVALID_ARGUMENT, HTTP 413 on every route, never
    Retry-After, since it can never succeed as it is (gRPC itself reports it as RESOURCE_EXHAUSTED)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(ErrorKind.INVALID_ARGUMENT, message, field)


def invalid(field: str, message: str) -> FeedrankError:
    return FeedrankError(ErrorKind.INVALID_ARGUMENT, message, field)


def not_found(message: str, field: str | None = None) -> FeedrankError:
    return FeedrankError(ErrorKind.NOT_FOUND, message, field)


def unavailable(message: str) -> FeedrankError:
    return FeedrankError(ErrorKind.UNAVAILABLE, message)
