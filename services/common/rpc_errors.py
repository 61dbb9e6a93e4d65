"""The one place a gRPC failure becomes a FeedrankError, for every caller of the services (the
gateway, the Python client, the MCP server): the inverse of the services' own mapping in
services/common/grpc_server.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import grpc

from services.common.errors import ErrorKind, FeedrankError, TooLarge

_KIND = {
    grpc.StatusCode.INVALID_ARGUMENT: ErrorKind.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE: ErrorKind.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: ErrorKind.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION: ErrorKind.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS: ErrorKind.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED: ErrorKind.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ErrorKind.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE: ErrorKind.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ErrorKind.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED: ErrorKind.CANCELLED,
    grpc.StatusCode.UNAUTHENTICATED: ErrorKind.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: ErrorKind.UNAUTHENTICATED,
}
# The services' edge writes INVALID_ARGUMENT details as "field: message" (FeedrankError.__str__).
_FIELD = re.compile(r"^([A-Za-z_][\w.\[\]@-]*): (.+)$", re.DOTALL)

# gRPC reports a message over a channel's size limit as RESOURCE_EXHAUSTED; it is no overload to retry.
_TOO_LARGE = re.compile(r"message larger than max", re.IGNORECASE)

Rename = Callable[[str], str]


def from_rpc_error(err: grpc.aio.AioRpcError | grpc.RpcError, service: str, rename: Rename | None = None
                   ) -> FeedrankError:
    code = err.code()
    details = err.details() or code.name.lower()
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and _TOO_LARGE.search(details):
        return TooLarge(f"{service}: {details} (endpoints.max_message_bytes)")
    kind = _KIND.get(code, ErrorKind.INTERNAL)
    field = None
    if kind in (ErrorKind.INVALID_ARGUMENT, ErrorKind.NOT_FOUND):
        match = _FIELD.match(details)
        if match:
            field, details = match.group(1), match.group(2)
            field = rename(field) if rename else field
    elif kind in (ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED, ErrorKind.INTERNAL):
        details = f"{service}: {details}"  # the operator needs to know which upstream failed
    return FeedrankError(kind, details, field)
