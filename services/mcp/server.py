"""The MCP server: `search` and `feedback` tools over Retriever.Search and Feedback.Record.

It calls the services through the Python client (services.client) and answers in the gateway's
JSON shapes, so an agent and the web console see the same results; a failure reaches the agent as
a tool error naming the field.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from services.client import AsyncFeedrank, Click, Rating, SearchResults
from services.common.config import Settings
from services.common.errors import FeedrankError, invalid
from services.events.kinds import TEACHING_KINDS
from services.gateway import convert, schemas

INSTRUCTIONS = (
    "feedrank searches indexed corpora (documents or code) with hybrid BM25 + vector retrieval and a "
    "cross-encoder reranker that learns from feedback. Call `search`, then report which results helped "
    "with `feedback` (rating 5 = relevant, 1 = not relevant), passing the query_id and the result's rank."
)


def create_server(settings: Settings) -> MCPServer:
    clients: list[AsyncFeedrank] = []  # made in the server's event loop, which its channels belong to

    @asynccontextmanager
    async def lifespan(server: MCPServer):
        clients.append(AsyncFeedrank(settings.endpoints.retriever, settings.endpoints.feedback,
                                     token=settings.endpoints.read_token, timeout_s=settings.gateway.rpc_timeout_s,
                                     source="mcp", session_id="mcp"))
        try:
            yield {}
        finally:
            await clients.pop().close()

    server = MCPServer("feedrank", instructions=INSTRUCTIONS, lifespan=lifespan)

    @server.tool(description="Hybrid search of a corpus; returns ranked results and the query_id to cite in feedback")
    async def search(corpus_id: str, query: str, top_k: int = 10, session_id: str = "mcp") -> schemas.SearchReply:
        try:
            results = await clients[0].search(corpus_id, query, top_k=top_k, session_id=session_id,
                                          timeout=settings.gateway.search_timeout_s)
        except FeedrankError as err:
            raise _tool_error(err) from None
        return _search_reply(results)

    @server.tool(description="Record whether a search result was relevant (rating 1-5) or that it was opened (click)")
    async def feedback(query_id: str, doc_id: str, rank: int, rating: int | None = None,
                       kind: Literal[TEACHING_KINDS] = "rating", dwell_ms: int = 0,
                       session_id: str = "mcp") -> schemas.Accepted:
        try:
            if kind == "rating":
                if rating is None:
                    raise invalid("rating", "is required for a rating event")
                event: Rating | Click = Rating(doc_id, rating, rank)
            elif kind == "click":
                event = Click(doc_id, dwell_ms, rank)
            else:  # a kinds-table row this tool has no arguments for yet
                raise invalid("kind", f"{kind!r} events cannot be recorded through this tool")
            reply = await clients[0].feedback(query_id, event, session_id=session_id)
        except FeedrankError as err:
            raise _tool_error(err) from None
        return schemas.Accepted(accepted=reply.accepted, spooled=reply.spooled)

    return server


def _search_reply(results: SearchResults) -> schemas.SearchReply:
    return schemas.SearchReply(
        query_id=results.query_id, model_version=results.model_version, reranked=results.reranked,
        query_adapter_version=results.query_adapter_version, degraded_reason=results.degraded_reason,
        experiment_id=results.experiment_id, timings=results.timings,
        results=[schemas.SearchHit(**asdict(hit)) for hit in results.hits],
    )


def _tool_error(err: FeedrankError) -> ToolError:
    # The feedback service names its request's fields ("events[0].rating.rating"); the agent gave "rating".
    field = convert.feedback_field(err.field) if err.field else None
    return ToolError(f"{err.kind.value}: {field + ': ' if field else ''}{err.message}")
