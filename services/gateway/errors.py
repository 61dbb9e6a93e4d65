"""HTTP errors, decided once.

Every failure reaches the client through `feedrank_error_handler`: gRPC statuses were already
turned into `FeedrankError` by `Upstreams.call`, request-body validation is turned into one here,
and the gateway's own refusals (token, rate limit, body size) raise one. The body's shape follows the route's
dialect, so drop-in clients parse errors the way they expect:

| kind                | feedrank (default) | Cohere `/v2/rerank`, `/v1/rerank` | TEI `/rerank`                  |
|---------------------|--------------------|-----------------------------------|--------------------------------|
| invalid_argument    | 422                | 400 (422 for a body that does not parse) | 413 `validation` (422 for a body that does not parse) |
| ... too large       | 413                | 413                               | 413 `validation`               |
| not_found           | 404                | 404                               | 424 `backend`                  |
| failed_precondition | 409                | 409                               | 424 `backend`                  |
| unauthenticated     | 401                | 401                               | 401                            |
| resource_exhausted  | 429                | 429                               | 429 `overloaded`               |
| unavailable         | 503                | 503                               | 503 `unhealthy`                |
| deadline_exceeded   | 504                | 504                               | 424 `backend`                  |
| cancelled, internal | 502                | 502                               | 424 `backend`                  |

Cohere's body is `{"message": ...}`; Jina's, Voyage's and Mixedbread's (`/v1/rerank`, `/v1/reranking`)
is FastAPI's `{"detail": ...}`.

FAILED_PRECONDITION is 409 Conflict: the request is well formed but the state of the system
refuses it (a run that is not finished, a promotion the gate or the registry refuses), which is a
conflict with current state rather than a failed HTTP precondition header (412).
An upstream INTERNAL is 502 Bad Gateway: the gateway itself did not fail.
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from services.common.errors import ErrorKind, FeedrankError, TooLarge

log = logging.getLogger(__name__)

STATUS = {
    ErrorKind.INVALID_ARGUMENT: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.FAILED_PRECONDITION: 409,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.RESOURCE_EXHAUSTED: 429,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.DEADLINE_EXCEEDED: 504,
    ErrorKind.CANCELLED: 502,
    ErrorKind.INTERNAL: 502,
}
_TEI = {
    ErrorKind.INVALID_ARGUMENT: (413, "validation"),
    ErrorKind.UNAUTHENTICATED: (401, "validation"),
    ErrorKind.RESOURCE_EXHAUSTED: (429, "overloaded"),
    ErrorKind.UNAVAILABLE: (503, "unhealthy"),
}
# Routes whose clients expect another API's error body; everything else gets feedrank's.
COHERE_PATHS = frozenset({"/v2/rerank"})
TEI_PATHS = frozenset({"/rerank"})
V1_RERANK_PATHS = frozenset({"/v1/rerank", "/v1/reranking"})


class BodyInvalid(FeedrankError):
    """A request body that did not match the route's schema (TEI and the rerank APIs answer these with 422)."""


def field_of(loc: tuple | list) -> str:
    """('body', 'documents', 0, 'text') -> 'documents[0].text'; the 'body'/'query'/'path' origin is dropped."""
    out = ""
    for part in list(loc)[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def render(request: Request, err: FeedrankError, headers: dict[str, str] | None = None) -> JSONResponse:
    path = request.url.path
    if path in TEI_PATHS:
        status, error_type = _TEI.get(err.kind, (424, "backend"))
        if isinstance(err, BodyInvalid):
            status = 422
        return JSONResponse({"error": str(err), "error_type": error_type}, status_code=status, headers=headers)
    status = 413 if isinstance(err, TooLarge) else STATUS[err.kind]
    if path in COHERE_PATHS or path in V1_RERANK_PATHS:
        status = 400 if status == 422 and not isinstance(err, BodyInvalid) else status
        body = {"message": str(err)} if path in COHERE_PATHS else {"detail": str(err)}
        return JSONResponse(body, status_code=status, headers=headers)
    body = {"error": {"code": err.kind.value, "message": err.message, "field": err.field}}
    return JSONResponse(body, status_code=status, headers=headers)


async def feedrank_error_handler(request: Request, err: FeedrankError) -> JSONResponse:
    if err.kind in (ErrorKind.INTERNAL, ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED):
        log.warning("upstream failure on %s: %s", request.url.path, err)
    headers = {"Retry-After": "1"} if err.kind == ErrorKind.RESOURCE_EXHAUSTED else None
    return render(request, err, headers)


async def validation_error_handler(request: Request, err: RequestValidationError) -> JSONResponse:
    first = err.errors()[0]
    field = field_of(first.get("loc", ()))
    return await feedrank_error_handler(request, BodyInvalid(ErrorKind.INVALID_ARGUMENT, first.get("msg", "invalid"), field))
