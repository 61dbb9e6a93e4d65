"""The reranker as a real process over gRPC: API, validation, deadlines, health and reflection."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.proto.feedrank.v1 import reranker_pb2, reranker_pb2_grpc
from tests.reranker.conftest import scifact_pairs


def _request(n: int = 8, **kw) -> reranker_pb2.RerankRequest:
    pairs = scifact_pairs(n)
    docs = [reranker_pb2.RerankDocument(id=f"d{i}", text=d) for i, (_, d) in enumerate(pairs)]
    return reranker_pb2.RerankRequest(query=pairs[0][0], documents=docs, truncate=True, **kw)


@pytest.fixture
def stub(reranker_process):
    server = reranker_process(FEEDRANK_RERANKING__MAX_DOCUMENTS="50", FEEDRANK_RERANKING__MAX_TEXT_BYTES="4000")
    channel = grpc.insecure_channel(server.target)
    yield reranker_pb2_grpc.RerankerStub(channel)
    channel.close()


def test_rerank_sorts_by_score_and_names_the_version(stub, registry):
    response = stub.Rerank(_request(8, return_text=True), timeout=30)
    scores = [r.score for r in response.results]
    assert scores == sorted(scores, reverse=True)
    assert sorted(r.index for r in response.results) == list(range(8))
    assert all(r.id == f"d{r.index}" and r.text for r in response.results)
    assert response.model_version == registry.aliases()["champion"]
    assert response.timings.total_ms > 0 and response.timings.inference_ms > 0

    top = stub.Rerank(_request(8, top_n=3), timeout=30)
    assert [r.index for r in top.results] == [r.index for r in response.results[:3]]
    assert not top.results[0].text
    again = stub.Rerank(_request(8), timeout=30)
    assert again.cached and [r.index for r in again.results] == [r.index for r in response.results]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"query": ""}, "query"),
        ({"documents": []}, "documents"),
        ({"top_n": -1}, "top_n"),
        ({"model": "nightly"}, "model"),
        ({"model": "../../etc"}, "model"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(stub, change, field):
    request = _request(3)
    for key, value in change.items():
        if key == "documents":
            del request.documents[:]
        else:
            setattr(request, key, value)
    with pytest.raises(grpc.RpcError) as err:
        stub.Rerank(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details()


def test_limits_on_documents_and_text(stub):
    many = reranker_pb2.RerankRequest(query="q", documents=[reranker_pb2.RerankDocument(id=str(i), text="x") for i in range(51)])
    with pytest.raises(grpc.RpcError) as err:
        stub.Rerank(many, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "documents" in err.value.details()
    huge = reranker_pb2.RerankRequest(query="q", documents=[reranker_pb2.RerankDocument(id="a", text="y" * 5000)])
    with pytest.raises(grpc.RpcError) as err:
        stub.Rerank(huge, timeout=30)
    assert "documents[0].text" in err.value.details()
    long_pair = _request(2)
    long_pair.truncate = False
    with pytest.raises(grpc.RpcError) as err:
        stub.Rerank(long_pair, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "truncate" in err.value.details()


def test_deadline_is_honoured_and_the_server_survives(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.Rerank(_request(40), timeout=0.001)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert stub.Rerank(_request(2), timeout=30).results


def test_info_reports_versions_aliases_and_limits(stub, registry):
    info = stub.GetInfo(reranker_pb2.GetRerankerInfoRequest(), timeout=10)
    assert info.mode == "learning" and "CPUExecutionProvider" in info.providers
    assert info.aliases["champion"] == registry.aliases()["champion"]
    assert info.limits.max_documents == 50 and info.limits.enabled
    assert any(v.version_id == info.aliases["champion"] for v in info.loaded)


def test_health_and_grpcurl_reflection(reranker_process):
    server = reranker_process()
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service="feedrank.v1.Reranker"), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    grpcurl = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")  # the dev extra installs it
    listed = subprocess.run([grpcurl, "-plaintext", server.target, "list"], capture_output=True, text=True, timeout=30)
    assert "feedrank.v1.Reranker" in listed.stdout and "grpc.health.v1.Health" in listed.stdout


def test_mode_none_returns_input_order(reranker_process):
    server = reranker_process(FEEDRANK_RERANKING__RERANKER_MODE="none")
    with grpc.insecure_channel(server.target) as channel:
        response = reranker_pb2_grpc.RerankerStub(channel).Rerank(_request(5), timeout=10)
    assert [r.index for r in response.results] == list(range(5))
    assert response.model_version == "none"


def test_full_queue_gives_resource_exhausted(reranker_process):
    # FirstP: one pair per document, so a request of 6 fits the 8-pair queue (SciFact abstracts pass 128 tokens).
    server = reranker_process(FEEDRANK_ENGINE__MAX_QUEUE_PAIRS="8", FEEDRANK_ENGINE__CACHE_ENTRIES="0",
                              FEEDRANK_RERANKING__PASSAGE_AGGREGATE="first")
    with grpc.insecure_channel(server.target) as channel:
        stub = reranker_pb2_grpc.RerankerStub(channel)
        futures = [stub.Rerank.future(_request(6), timeout=60) for _ in range(12)]
        codes = []
        for f in futures:
            try:
                f.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as err:
                codes.append(err.code())
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}


def test_cloud_mode_through_grpc_reports_billed_units(reranker_process):
    from tests.reranker.cloud_fakes import FakeRerankServer

    with FakeRerankServer("cohere", "test-key-123") as fake:
        server = reranker_process(
            FEEDRANK_RERANKING__RERANKER_MODE="cloud", FEEDRANK_RERANKING__RERANKER_CLOUD_BASE_URL=fake.url,
            FEEDRANK_RERANKING__RERANKER_CLOUD_TOP_N="3", COHERE_API_KEY="test-key-123",
        )
        docs = ["pasta recipes", "the capital of france is paris", "paris france capital city", "rust borrow checker"]
        request = reranker_pb2.RerankRequest(
            query="capital of france", documents=[reranker_pb2.RerankDocument(id=str(i), text=t) for i, t in enumerate(docs)]
        )
        with grpc.insecure_channel(server.target) as channel:
            stub = reranker_pb2_grpc.RerankerStub(channel)
            response = stub.Rerank(request, timeout=30)
            info = stub.GetInfo(reranker_pb2.GetRerankerInfoRequest(), timeout=10)
    assert response.model_version == "cohere:rerank-v3.5"
    assert {r.index for r in response.results[:2]} == {1, 2}
    assert response.results[-1].index == 3  # past reranker_cloud_top_n: kept last, in order
    assert len(fake.requests[0].body["documents"]) == 3
    assert info.cloud_usage[0].billed_units >= 1
    assert "test-key-123" not in server.log.read_text()
