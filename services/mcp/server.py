"""The MCP server: `search` and `feedback` tools over Retriever.Search and Feedback.Record.

It shares the gateway's gRPC clients and JSON<->protobuf conversion, so an agent and the web
console produce the same events; a failure reaches the agent as a tool error naming the field.
"""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from services.common.config import Settings
from services.common.errors import FeedrankError
from services.gateway import convert, schemas
from services.gateway.backends import Backends
from services.proto.feedrank.v1 import feedback_pb2

INSTRUCTIONS = (
    "feedrank searches indexed corpora (documents or code) with hybrid BM25 + vector retrieval and a "
    "cross-encoder reranker that learns from feedback. Call `search`, then report which results helped "
    "with `feedback` (rating 5 = relevant, 1 = not relevant), passing the query_id and the result's rank."
)


def create_server(settings: Settings) -> MCPServer:
    backends = Backends(settings)

    @asynccontextmanager
    async def lifespan(server: MCPServer):
        try:
            yield {}
        finally:
            await backends.close()

    server = MCPServer("feedrank", instructions=INSTRUCTIONS, lifespan=lifespan)

    @server.tool(description="Hybrid search of a corpus; returns ranked results and the query_id to cite in feedback")
    async def search(corpus_id: str, query: str, top_k: int = 10, session_id: str = "mcp") -> schemas.SearchReply:
        try:
            body = schemas.SearchBody(corpus_id=corpus_id, query=query, top_k=top_k, session_id=session_id)
            response = await backends.call(backends.retriever.Search, convert.search_request(body),
                                           service="retriever", timeout=settings.gateway.search_timeout_s)
        except (FeedrankError, ValidationError) as err:
            raise _tool_error(err) from None
        return schemas.SearchReply(**convert.search_reply(response))

    @server.tool(description="Record whether a search result was relevant (rating 1-5) or that it was opened (click)")
    async def feedback(query_id: str, doc_id: str, rank: int, rating: int | None = None,
                       kind: Literal["rating", "click"] = "rating", dwell_ms: int = 0,
                       session_id: str = "mcp") -> schemas.Accepted:
        try:
            event = schemas.TelemetryEvent(
                event_id=f"mcp-{uuid.uuid4().hex}", query_id=query_id, doc_id=doc_id, rank=rank, rating=rating,
                type=kind, dwell_ms=dwell_ms, session_id=session_id, source="mcp",
            )
            request = feedback_pb2.RecordRequest(events=[convert.feedback_event(event)])
            reply = await backends.call(backends.feedback.Record, request, service="feedback",
                                        rename=convert.feedback_field)
        except (FeedrankError, ValidationError) as err:
            raise _tool_error(err) from None
        return schemas.Accepted(accepted=reply.accepted, spooled=reply.spooled)

    return server


def _tool_error(err: FeedrankError | ValidationError) -> ToolError:
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        return ToolError(f"invalid_argument: {'.'.join(map(str, first['loc']))}: {first['msg']}")
    return ToolError(f"{err.kind.value}: {err}")
