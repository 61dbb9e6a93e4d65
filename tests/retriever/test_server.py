"""The embedded pair (tantivy + qdrant-edge) end to end through the real gRPC server.

The reranker and feedback services are stood in for by small gRPC servers on loopback
(tests of those services live with them); everything on the retriever's side is real.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid

import grpc
import pytest

from services.common.config import EndpointSettings, Settings
from services.common.query_token import QueryIdSigner, signing_key
from services.proto.feedrank.v1 import (
    feedback_pb2_grpc,
    reranker_pb2_grpc,
    retriever_pb2,
    retriever_pb2_grpc,
)
from services.retriever.core import RetrieverCore
from services.retriever.server import build_app
from tests.conftest import admin_metadata, free_port
from tests.retriever.conftest import DOCS, RecordingFeedback, ReversingReranker, start_stub_server

UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1


def _settings(data_dir, reranker=UNREACHABLE, feedback=UNREACHABLE, retrieval=None, **reranking) -> Settings:
    base = Settings(data_dir=str(data_dir))
    return base.replace(
        endpoints=EndpointSettings(reranker=reranker, feedback=feedback, metrics_port_offset=0, grace_seconds=0.5),
        reranking=base.reranking.model_copy(update={"reranker_timeout": 2.0, "tribrid_reranker_topn": 5, **reranking}),
        retrieval=retrieval or base.retrieval,
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory, embedder_dir, embedder):
    """A data dir with corpus `tiny` ingested once; each test works on its own copy."""
    data = tmp_path_factory.mktemp("template")
    shutil.copytree(embedder_dir, data / "models" / "embedder")
    core = RetrieverCore(_settings(data), embedder=embedder)
    report = core.ingest("tiny", DOCS)
    assert report.added == len(DOCS)
    core.close()
    return data


@pytest.fixture
def data(template, tmp_path):
    target = tmp_path / "data"
    shutil.copytree(template, target)
    return target


async def _with_server(settings, embedder, body):
    core = RetrieverCore(settings, embedder=embedder)
    app = build_app(settings, core, port=free_port())
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            return await body(retriever_pb2_grpc.RetrieverStub(channel), core)
    finally:
        await app.stop()
        await core.aclose()


def _run(data, embedder, body, **settings_kw):
    return asyncio.run(_with_server(_settings(data, **settings_kw), embedder, body))


def test_search_reranks_and_records_an_impression(data, embedder):
    reranker, feedback = ReversingReranker(), RecordingFeedback()

    async def scenario():
        rr_server, rr_target = await start_stub_server(
            lambda s: reranker_pb2_grpc.add_RerankerServicer_to_server(reranker, s)
        )
        fb_server, fb_target = await start_stub_server(
            lambda s: feedback_pb2_grpc.add_FeedbackServicer_to_server(feedback, s)
        )

        async def body(stub, core):
            request = retriever_pb2.SearchRequest(
                corpus_id="tiny", query="volcano lava eruption", top_k=8, session_id="s-1"
            )
            response = await stub.Search(request)
            await asyncio.wait_for(feedback.arrived.wait(), 5)
            return response

        try:
            return await _with_server(
                _settings(data, reranker=rr_target, feedback=fb_target, rerank_input_snippet_chars=40), embedder, body
            )
        finally:
            await rr_server.stop(0)
            await fb_server.stop(0)

    response = asyncio.run(scenario())
    # The query_id is signed over the corpus, the query and exactly the results shown, in order.
    signer = QueryIdSigner(signing_key("", data))
    signed = signer.open(response.query_id, time.time(), ttl_s=60, skew_s=60)
    assert signed.query_tag == signer.query_tag("tiny", "volcano lava eruption")
    assert signed.doc_tags == tuple(signer.doc_tag(r.doc_id) for r in response.results)
    assert (data / "feedback-signing.key").stat().st_mode & 0o777 == 0o600
    assert response.reranked and response.model_version == "v-test" and not response.degraded_reason
    assert [r.rank for r in response.results] == list(range(1, 9))
    # The stub reverses the fused top 5; the rest keep the fused order after them.
    fused_ranks = [r.legs.fused_rank for r in response.results]
    assert fused_ranks[:5] == [5, 4, 3, 2, 1] and fused_ranks[5:] == [6, 7, 8]
    sent = reranker.requests[0]
    assert len(sent.documents) == 5 and sent.query == "volcano lava eruption"
    assert all(len(d.text) <= 40 for d in sent.documents)
    assert all(d.legs.fused_rank == i + 1 for i, d in enumerate(sent.documents))
    top_fused = next(r for r in response.results if r.legs.fused_rank == 1)
    assert top_fused.doc_id.startswith("vol-") and top_fused.legs.lexical_rank >= 1 and top_fused.legs.vector_rank >= 1
    assert top_fused.title and top_fused.snippet
    (event,) = feedback.events
    assert event.query_id == response.query_id and uuid.UUID(event.event_id) and event.session_id == "s-1"
    shown = event.impression
    assert shown.corpus_id == "tiny" and shown.query == "volcano lava eruption" and shown.model_version == "v-test"
    assert [(r.doc_id, r.rank) for r in shown.results] == [(r.doc_id, r.rank) for r in response.results]


def test_unreachable_reranker_degrades_to_fused_order(data, embedder):
    async def body(stub, core):
        return await stub.Search(retriever_pb2.SearchRequest(corpus_id="tiny", query="interest rates", top_k=5))

    response = _run(data, embedder, body)
    assert not response.reranked
    assert "UNAVAILABLE" in response.degraded_reason
    assert [r.legs.fused_rank for r in response.results] == [1, 2, 3, 4, 5]
    assert response.results[0].doc_id.startswith("bank-")


def test_slow_reranker_degrades_on_its_deadline(data, embedder):
    slow = ReversingReranker(delay=3.0)

    async def scenario():
        server, target = await start_stub_server(lambda s: reranker_pb2_grpc.add_RerankerServicer_to_server(slow, s))

        async def body(stub, core):
            return await stub.Search(retriever_pb2.SearchRequest(corpus_id="tiny", query="cats", top_k=3))

        try:
            return await _with_server(_settings(data, reranker=target, reranker_timeout=0.3), embedder, body)
        finally:
            await server.stop(0)

    response = asyncio.run(scenario())
    assert not response.reranked and "deadline" in response.degraded_reason
    assert len(response.results) == 3


def test_rerank_mode_none_skips_the_reranker(data, embedder):
    async def body(stub, core):
        return await stub.Search(
            retriever_pb2.SearchRequest(corpus_id="tiny", query="hash table lookups", top_k=3, rerank_mode="none")
        )

    response = _run(data, embedder, body)
    assert not response.reranked and response.degraded_reason == "" and response.model_version == "none"
    assert response.results[0].doc_id == "code-2"


@pytest.mark.parametrize(
    "request_kwargs,field",
    [
        ({"corpus_id": "tiny", "query": "   "}, "query"),
        ({"corpus_id": "nope", "query": "cats"}, "corpus_id"),
        ({"corpus_id": "../etc", "query": "cats"}, "corpus_id"),
        ({"corpus_id": "tiny", "query": "cats", "top_k": 5000}, "top_k"),
        ({"corpus_id": "tiny", "query": "cats", "top_k": -1}, "top_k"),
        ({"corpus_id": "tiny", "query": "cats", "candidate_k": 100000}, "candidate_k"),
        ({"corpus_id": "tiny", "query": "cats", "rerank_mode": "magic"}, "rerank_mode"),
        ({"corpus_id": "tiny", "query": "cats", "fusion": {"rrf_k": -2}}, "fusion.rrf_k"),
        ({"corpus_id": "tiny\n", "query": "cats"}, "corpus_id"),  # "$" matched before a trailing newline
        ({"corpus_id": "tiny", "query": "cats " * 5000}, "query"),  # 25,000 bytes: over retrieval.max_query_bytes
        ({"corpus_id": "tiny", "query": "a " * 2000}, "query"),  # 2,000 terms: over retrieval.max_query_terms
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(data, embedder, request_kwargs, field):
    async def body(stub, core):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Search(retriever_pb2.SearchRequest(**request_kwargs))
        return caught.value

    err = _run(data, embedder, body)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith(f"{field}:"), err.details()


def test_update_config_is_validated_persisted_and_used_by_the_next_search(data, embedder):
    async def body(stub, core):
        admin = admin_metadata(data)
        before = await stub.Search(retriever_pb2.SearchRequest(corpus_id="tiny", query="cats", rerank_mode="none"))
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await stub.UpdateConfig(retriever_pb2.UpdateConfigRequest(
                fusion=retriever_pb2.FusionConfig(rrf_k=1.0), update_mask=["fusion.rrf_k"]))
        updated = await stub.UpdateConfig(
            retriever_pb2.UpdateConfigRequest(
                fusion=retriever_pb2.FusionConfig(method=retriever_pb2.FUSION_METHOD_WEIGHTED, vector_weight=0.8),
                reranking=retriever_pb2.RerankingConfig(tribrid_reranker_topn=7),
                update_mask=["fusion.method", "fusion.vector_weight", "reranking.tribrid_reranker_topn"],
            ), metadata=admin,
        )
        after = await stub.Search(retriever_pb2.SearchRequest(corpus_id="tiny", query="cats", rerank_mode="none"))
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.UpdateConfig(
                retriever_pb2.UpdateConfigRequest(
                    fusion=retriever_pb2.FusionConfig(rrf_k=-1), update_mask=["fusion.rrf_k"]
                ), metadata=admin,
            )
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.UpdateConfig(retriever_pb2.UpdateConfigRequest(update_mask=["fusion.colour"]), metadata=admin)
        # No endpoints.admin_token on loopback: the data dir's admin.token guards config changes.
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        current = await stub.GetConfig(retriever_pb2.GetConfigRequest())
        return before, updated, after, bad.value, unknown.value, current

    before, updated, after, bad, unknown, current = _run(data, embedder, body)
    assert updated.fusion.method == retriever_pb2.FUSION_METHOD_WEIGHTED
    assert updated.fusion.vector_weight == pytest.approx(0.8)
    assert updated.fusion.sparse_weight == pytest.approx(0.5)  # untouched
    assert updated.reranking.tribrid_reranker_topn == 7
    # RRF scores are below 2/61; weighted min-max puts the best document near vector_weight + sparse_weight.
    assert before.results[0].legs.fused_score < 0.05 < after.results[0].legs.fused_score
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and bad.details().startswith("fusion.rrf_k:")
    assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT and unknown.details().startswith("update_mask:")
    assert current == updated  # the refused updates changed nothing

    # A restarted retriever on the same data dir keeps the change.
    restarted = RetrieverCore(_settings(data), embedder=embedder)
    assert restarted.get_config()[0].method == "weighted"
    assert restarted.get_config()[1].tribrid_reranker_topn == 7
    restarted.close()


def test_list_corpora_and_side_by_side_corpora(data, embedder):
    core = RetrieverCore(_settings(data), embedder=embedder)
    core.ingest("second", DOCS[:3])
    core.close()

    async def body(stub, core):
        listed = await stub.ListCorpora(retriever_pb2.ListCorporaRequest())
        second = await stub.Search(
            retriever_pb2.SearchRequest(corpus_id="second", query="volcano", top_k=10, rerank_mode="none")
        )
        return listed, second

    listed, second = _run(data, embedder, body)
    assert {(c.corpus_id, c.documents) for c in listed.corpora} == {("tiny", len(DOCS)), ("second", 3)}
    assert {r.doc_id for r in second.results} <= {"cat-1", "cat-2", "cat-3"}


def test_reingest_updates_and_deletes_are_seen_by_search(data, embedder):
    from services.common.documents import Doc

    from services.retriever.corpus import read_manifest

    core = RetrieverCore(_settings(data), embedder=embedder)
    before = read_manifest(core.corpora.get("tiny").root)
    again = core.ingest("tiny", DOCS)
    assert (again.added, again.updated, again.unchanged) == (0, 0, len(DOCS))
    assert read_manifest(core.corpora.get("tiny").root) == before  # nothing changed: same corpus version
    changed = [Doc("code-3", "Glaciers", "Glaciers carve valleys as the ice slowly moves downhill.")]
    report = core.ingest("tiny", DOCS[:9] + changed, prune=True)
    assert (report.updated, report.deleted, report.documents) == (1, 2, 10)

    async def search(query):
        from services.retriever.domain import SearchQuery

        outcome = await core.search(SearchQuery("tiny", query, top_k=3, rerank_mode="none"))
        await core.aclose()
        return [h.doc_id for h in outcome.hits]

    assert asyncio.run(search("glaciers carving valleys"))[0] == "code-3"
    remaining = asyncio.run(search("quicksort hash table pivot buckets"))
    assert "code-1" not in remaining and "code-2" not in remaining
    core.close()


def _publish_adapter(data, W, corpus_id: str) -> str:
    """A query-adapter version as the trainer publishes one (only what the retriever reads of it)."""
    import numpy as np

    from services.registry.store import open_registry

    folder = data / "staging-adapter"
    folder.mkdir(exist_ok=True)
    np.save(folder / "adapter.npy", W.astype(np.float32))
    registry = open_registry(data / "registry")
    manifest = registry.publish(folder, {
        "kind": "bi-encoder", "base_model": "test", "max_length": 256, "activation": "identity",
        "corpus_id": corpus_id, "vector_leg_adapter": True, "doc_tower_is_dense_leg": True,
    })
    return manifest.version_id


def test_vector_leg_follows_the_served_versions_query_adapter(data, embedder):
    """W sends the query's vector onto `bank-2`: through the corpus champion's adapter the vector leg ranks it
    first; rerank mode none, or another corpus's champion (its adapter included), leave the base tower."""
    import numpy as np

    from services.registry.store import open_registry

    query = "volcano lava eruption"
    q, target = embedder.encode_query(query), embedder.encode(["Mortgages\nA mortgage is a loan"])[0]
    mine = _publish_adapter(data, 10.0 * np.outer(q, target), "tiny")
    other = _publish_adapter(data, 10.0 * np.outer(q, target), "another-corpus")
    registry = open_registry(data / "registry")

    def vector_top(response):
        return next(r.doc_id for r in response.results if r.legs.vector_rank == 1)

    async def body(stub, core):
        search = lambda **kw: stub.Search(retriever_pb2.SearchRequest(corpus_id="tiny", query=query, top_k=12, **kw))
        out = {"no champion": await search(rerank_mode="learning")}
        registry.set_alias("champion", mine, "test", corpus_id="tiny")
        await asyncio.sleep(0.1)  # adapter_refresh_s below
        out["champion"] = await search(rerank_mode="learning")
        out["mode none"] = await search(rerank_mode="none")
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:  # naming a version id needs the admin token
            await search(rerank_mode="learning", model=mine)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED and "model" in anonymous.value.details()
        out["explicit"] = await stub.Search(retriever_pb2.SearchRequest(
            corpus_id="tiny", query=query, top_k=12, rerank_mode="learning", model=mine), metadata=admin_metadata(data))
        registry.set_alias("champion", None, "test", corpus_id="tiny")
        registry.set_alias("champion", other, "test", corpus_id="another-corpus")
        await asyncio.sleep(0.1)
        out["other corpus"] = await search(rerank_mode="learning")
        return out

    base = Settings(data_dir=str(data))
    out = _run(data, embedder, body, retrieval=base.retrieval.model_copy(update={"adapter_refresh_s": 0.05}))
    assert vector_top(out["no champion"]).startswith("vol-") and out["no champion"].query_adapter_version == ""
    assert vector_top(out["champion"]) == "bank-2" and out["champion"].query_adapter_version == mine
    assert out["champion"].degraded_reason  # the reranker is unreachable: fused order, adapted leg still served
    assert vector_top(out["mode none"]).startswith("vol-") and out["mode none"].query_adapter_version == ""
    assert vector_top(out["explicit"]) == "bank-2" and out["explicit"].query_adapter_version == mine
    assert vector_top(out["other corpus"]).startswith("vol-") and out["other corpus"].query_adapter_version == ""


def test_a_damaged_adapter_falls_back_to_the_base_tower(data, embedder, caplog):
    """A version whose adapter.npy is garbage never fails a search; the warning comes once."""
    import logging

    import numpy as np

    from services.registry.store import open_registry

    version = _publish_adapter(data, np.zeros((384, 384)), "tiny")
    registry = open_registry(data / "registry")
    (registry.local_path(version) / "adapter.npy").write_bytes(b"not a numpy file")
    registry.set_alias("champion", version, "test", corpus_id="tiny")

    async def body(stub, core):
        return [await stub.Search(retriever_pb2.SearchRequest(corpus_id="tiny", query="lava", rerank_mode="learning"))
                for _ in range(3)]

    with caplog.at_level(logging.WARNING, logger="services.retriever.query_adapter"):
        responses = _run(data, embedder, body)
    assert all(r.results and r.query_adapter_version == "" for r in responses)
    assert sum("base query tower" in m for m in caplog.messages) == 1


class _TokenRecordingReranker(ReversingReranker):
    def __init__(self):
        super().__init__()
        self.authorization: list[str | None] = []

    async def Rerank(self, request, context):
        self.authorization.append(dict(context.invocation_metadata()).get("authorization"))
        return await super().Rerank(request, context)


class _TokenRecordingFeedback(RecordingFeedback):
    def __init__(self):
        super().__init__()
        self.authorization: list[str | None] = []

    async def Record(self, request, context):
        self.authorization.append(dict(context.invocation_metadata()).get("authorization"))
        return await super().Record(request, context)


def test_with_a_read_token_searches_need_it_and_the_retrievers_own_calls_carry_the_callers(data, embedder):
    reranker, feedback = _TokenRecordingReranker(), _TokenRecordingFeedback()

    async def scenario():
        rr_server, rr_target = await start_stub_server(
            lambda s: reranker_pb2_grpc.add_RerankerServicer_to_server(reranker, s))
        fb_server, fb_target = await start_stub_server(
            lambda s: feedback_pb2_grpc.add_FeedbackServicer_to_server(feedback, s))
        base = _settings(data, reranker=rr_target, feedback=fb_target)
        settings = base.replace(endpoints=base.endpoints.model_copy(update={"read_token": "rd", "admin_token": "adm"}))
        request = retriever_pb2.SearchRequest(corpus_id="tiny", query="volcano", top_k=3, session_id="s-1")

        async def body(stub, core):
            with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                await stub.Search(request)
            response = await stub.Search(request, metadata=(("authorization", "Bearer rd"),))
            await asyncio.wait_for(feedback.arrived.wait(), 5)
            return anonymous.value, response

        try:
            return await _with_server(settings, embedder, body)
        finally:
            await rr_server.stop(0)
            await fb_server.stop(0)

    anonymous, response = asyncio.run(scenario())
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED
    assert response.reranked
    # The reranker and the feedback service see the caller's own token: the retriever lends no more rights.
    assert reranker.authorization == ["Bearer rd"] and feedback.authorization == ["Bearer rd"]
