"""The Python client against the real retriever and feedback services: typed results, feedback in one
call that reaches the trainer's event store, deadlines, and retries on UNAVAILABLE only."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from services.client import AsyncFeedrank, Click, Feedrank, Hit, Rating, Retry, SearchResults
from services.common.errors import ErrorKind, FeedrankError
from tests.conftest import free_port
from tests.feedback.helpers import wait_until
from tests.gateway.conftest import ADMIN_TOKEN, CORPUS, GrpcProcess

QUERY = "hash table lookups"


class Attempts(grpc.UnaryUnaryClientInterceptor):
    """Counts the calls that leave the client, and keeps the metadata they carried."""

    def __init__(self):
        self.calls = 0
        self.metadata: list[dict[str, str]] = []

    def intercept_unary_unary(self, continuation, details, request):
        self.calls += 1
        self.metadata.append(dict(details.metadata or ()))
        return continuation(details, request)


def targets(stack) -> tuple[str, str]:
    return tuple(f"127.0.0.1:{stack.services[name].port}" for name in ("retriever", "feedback"))


@pytest.fixture
def client(stack):
    seen = Attempts()
    with Feedrank(*targets(stack), token=ADMIN_TOKEN, source="client-test", interceptors=[seen]) as feedrank:
        feedrank.seen = seen
        yield feedrank


def stored(stack, query_id: str, wanted: int) -> list:
    def arrived() -> list:
        path = stack.data_dir / "events" / "events.sqlite3"
        if not path.exists():
            return []
        store = stack.events()
        try:
            return [e for e in store.iter_events() if e.query_id == query_id and e.kind in ("click", "rating")]
        finally:
            store.close()

    wait_until(lambda: len(arrived()) >= wanted, 60, f"{wanted} feedback events of {query_id}")
    return arrived()


def test_search_then_feedback_in_one_call(stack, client):
    results = client.search(CORPUS, QUERY, top_k=3, session_id="s-client")
    assert isinstance(results, SearchResults) and results.query_id and len(results) == 3
    assert all(isinstance(h, Hit) for h in results) and [h.rank for h in results] == [1, 2, 3]
    assert results.hits[0].legs.fused_rank >= 1 and results.timings["total_ms"] >= 0
    first, second = results.hits[0], results.hits[1]

    assert results.click(second.doc_id, dwell_ms=12_000).accepted == 1
    both = results.feedback(Click(first.doc_id, 40_000), Rating(first.doc_id, 5))
    assert both.accepted == 2

    events = stored(stack, results.query_id, 3)
    assert {e.session_id for e in events} == {"s-client"}
    assert {e.event.source for e in events} == {"client-test"}
    ranks = {(e.kind, e.event.click.doc_id or e.event.rating.doc_id): e.event.click.rank or e.event.rating.rank
             for e in events}
    assert ranks == {("click", second.doc_id): 2, ("click", first.doc_id): 1, ("rating", first.doc_id): 1}
    # The token went as bearer metadata on every call.
    assert client.seen.calls == 3
    assert all(m.get("authorization") == f"Bearer {ADMIN_TOKEN}" for m in client.seen.metadata)


def test_feedback_on_a_result_not_shown_is_refused_before_any_call(client):
    results = client.search(CORPUS, QUERY, top_k=2)
    calls = client.seen.calls
    with pytest.raises(FeedrankError) as refused:
        results.rate("no-such-doc", 5)
    assert refused.value.field == "doc_id" and client.seen.calls == calls


def test_invalid_argument_is_raised_at_once_naming_the_field(client):
    with pytest.raises(FeedrankError) as refused:
        client.search(CORPUS, "")
    assert refused.value.kind == ErrorKind.INVALID_ARGUMENT and refused.value.field == "query"
    assert client.seen.calls == 1  # an answer, not an outage: never tried again

    results = client.search(CORPUS, QUERY, top_k=1)
    before = client.seen.calls
    with pytest.raises(FeedrankError) as bad_rating:
        results.rate(results.hits[0].doc_id, 7)
    assert bad_rating.value.kind == ErrorKind.INVALID_ARGUMENT and "rating" in bad_rating.value.field
    assert client.seen.calls == before + 1


def test_unavailable_is_retried_with_backoff_then_raised(stack):
    seen = Attempts()
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    retry = Retry(attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)
    with Feedrank(nowhere, nowhere, retry=retry, timeout_s=60, interceptors=[seen]) as client:
        with pytest.raises(FeedrankError) as down:
            client.search(CORPUS, QUERY)
    assert down.value.kind == ErrorKind.UNAVAILABLE and "retriever" in str(down.value)
    assert seen.calls == 4


def test_a_service_that_comes_back_is_reached_by_the_retries(stack, tmp_path):
    """Feedback goes to a feedback service that is still starting: the client keeps trying until it serves."""
    port = free_port()
    late = GrpcProcess("services.feedback", port, stack.env, tmp_path / "feedback-late.log")
    seen = Attempts()
    retry = Retry(attempts=1000, initial_backoff_s=0.05, max_backoff_s=0.5)
    with Feedrank(targets(stack)[0], f"127.0.0.1:{port}", retry=retry, timeout_s=300,
                  interceptors=[seen]) as client:
        results = client.search(CORPUS, QUERY, top_k=1)
        starter = threading.Thread(target=late.start)
        starter.start()
        try:
            assert results.click(results.hits[0].doc_id).accepted == 1
        finally:
            starter.join()
            late.stop()
    assert seen.calls > 2  # the search, the refused tries while it started, the one that got through


def test_async_client_does_the_same(stack):
    async def body():
        seen_calls = []

        class Count(grpc.aio.UnaryUnaryClientInterceptor):
            async def intercept_unary_unary(self, continuation, details, request):
                seen_calls.append(details.method)
                return await continuation(details, request)

        async with AsyncFeedrank(*targets(stack), token=ADMIN_TOKEN, interceptors=[Count()]) as client:
            results = await client.search(CORPUS, QUERY, top_k=2, session_id="s-async")
            recorded = await results.rate(results.hits[0].doc_id, 5)
            with pytest.raises(FeedrankError) as refused:
                await client.search(CORPUS, "")
        return results, recorded, refused.value, seen_calls

    results, recorded, refused, calls = asyncio.run(body())
    assert len(results) == 2 and recorded.accepted == 1
    assert refused.kind == ErrorKind.INVALID_ARGUMENT and refused.field == "query"
    assert len(calls) == 3
    assert stored(stack, results.query_id, 1)[0].event.rating.rank == 1


def test_every_call_has_a_deadline(stack):
    """A deadline shorter than any search can take ends the call with DEADLINE_EXCEEDED, not a hang."""
    with Feedrank(*targets(stack)) as client:
        with pytest.raises(FeedrankError) as late:
            client.search(CORPUS, QUERY, timeout=1e-6)
    assert late.value.kind == ErrorKind.DEADLINE_EXCEEDED
