"""A real MCP client session (the mcp SDK's stdio client) with `python -m services.mcp`, over the
real retriever and feedback services: an agent searches, rates a result, and the rating reaches
the trainer's event store.

It lives with the gateway tests because it needs the same session-wide stack of services."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.gateway.conftest import CORPUS

REPO = Path(__file__).resolve().parents[2]


async def _session(env: dict[str, str], body):
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "services.mcp"], env=env, cwd=str(REPO))
    errlog = Path(env["FEEDRANK_DATA_DIR"]).parent / "mcp.stderr"
    with errlog.open("a") as err:
        async with stdio_client(params, errlog=err) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await body(session)


def test_agent_searches_and_gives_feedback(stack):
    pytest.importorskip("mcp")
    env = {**stack.env, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}

    async def body(session):
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) >= {"search", "feedback"}
        assert "query" in tools["search"].input_schema["properties"]

        found = await session.call_tool("search", {"corpus_id": CORPUS, "query": "hash table lookups", "top_k": 3})
        assert not found.is_error, found.content
        reply = found.structured_content
        assert reply == json.loads(found.content[0].text)
        assert len(reply["results"]) == 3 and reply["query_id"]
        chosen = reply["results"][0]

        rated = await session.call_tool("feedback", {"query_id": reply["query_id"], "doc_id": chosen["doc_id"],
                                                     "rank": chosen["rank"], "rating": 5})
        assert not rated.is_error, rated.content
        assert rated.structured_content["accepted"] == 1

        refused = await session.call_tool("feedback", {"query_id": reply["query_id"], "doc_id": chosen["doc_id"],
                                                       "rank": 1, "rating": 7})
        assert refused.is_error and "invalid_argument: rating:" in refused.content[0].text
        empty = await session.call_tool("search", {"corpus_id": CORPUS, "query": ""})
        assert empty.is_error and "query" in empty.content[0].text
        return reply["query_id"], chosen["doc_id"]

    query_id, doc_id = asyncio.run(_session(env, body))

    def rated_by_the_agent() -> bool:
        store = stack.events()
        try:
            return any(e.query_id == query_id and e.event.source == "mcp" and e.event.rating.doc_id == doc_id
                       for e in store.ratings())
        finally:
            store.close()

    from tests.feedback.helpers import wait_until

    wait_until(rated_by_the_agent, 60, "the agent's rating in the event store", interval_s=0.3)
