"""Drop-in rerank: the official cohere SDK and TEI-style calls against the gateway, checked
against the reranker's own gRPC answer for the same documents."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import grpc
import httpx
import pytest

from services.proto.feedrank.v1 import reranker_pb2, reranker_pb2_grpc
from tests.conftest import free_port
from tests.gateway.conftest import GatewayProcess
from tests.retriever.conftest import DOCS

QUERY = "how do volcanoes erupt"
TEXTS = [d.text for d in DOCS[:8]]


@pytest.fixture(scope="module")
def grpc_ranking(stack) -> list[tuple[int, float]]:
    """(index, score) best first, straight from Reranker.Rerank."""
    port = stack.services["reranker"].port
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = reranker_pb2_grpc.RerankerStub(channel).Rerank(reranker_pb2.RerankRequest(
            query=QUERY, truncate=True,
            documents=[reranker_pb2.RerankDocument(id=str(i), text=t) for i, t in enumerate(TEXTS)]), timeout=30)
    return [(r.index, r.score) for r in reply.results]


@pytest.mark.parametrize("model", ["rerank-v3.5", "champion"])
def test_cohere_sdk_reranks_through_the_gateway(stack, grpc_ranking, model):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="any-key", base_url=stack.url)
    # Cohere's own model name is served by the default map entry: the same version as "champion".
    reply = client.rerank(model=model, query=QUERY, documents=TEXTS, top_n=5)
    assert [r.index for r in reply.results] == [i for i, _ in grpc_ranking[:5]]
    for result, (_, score) in zip(reply.results, grpc_ranking):
        assert result.relevance_score == pytest.approx(score, rel=1e-5)
        assert 0.0 <= result.relevance_score <= 1.0
    assert reply.id and reply.meta.api_version.version == "2"

    everything = client.rerank(model=model, query=QUERY, documents=TEXTS)
    assert sorted(r.index for r in everything.results) == list(range(len(TEXTS)))


# Two documents that share their first 16+ tokens and then differ in what matters to the query.
HEAD = "the committee met on tuesday to review the annual budget report and discuss the parking plan " * 2
SAME_HEAD = [HEAD + "volcanoes erupt when magma and gas pressure rise through the crust",
             HEAD + "the cafeteria menu will change next month"]


def test_cohere_sdk_max_tokens_per_doc_cuts_documents_before_scoring(stack):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="any-key", base_url=stack.url)
    whole = {r.index: r.relevance_score for r in client.rerank(model="rerank-v3.5", query=QUERY,
                                                                documents=SAME_HEAD).results}
    assert whole[0] != pytest.approx(whole[1], abs=1e-6)  # the tails are read without the cut
    cut = {r.index: r.relevance_score for r in client.rerank(model="rerank-v3.5", query=QUERY, documents=SAME_HEAD,
                                                              max_tokens_per_doc=16).results}
    assert cut[0] == pytest.approx(cut[1], abs=1e-6)  # only the shared head was scored
    assert cut[0] != pytest.approx(whole[0], abs=1e-6)


def test_cohere_max_tokens_per_doc_below_16_is_refused_naming_it(stack):
    cohere = pytest.importorskip("cohere")
    from cohere.errors import UnprocessableEntityError

    client = cohere.ClientV2(api_key="any-key", base_url=stack.url)
    with pytest.raises(UnprocessableEntityError) as refused:
        client.rerank(model="rerank-v3.5", query=QUERY, documents=TEXTS, max_tokens_per_doc=15)
    assert refused.value.status_code == 422 and "max_tokens_per_doc" in refused.value.body["message"]


def test_cohere_sdk_sees_cohere_errors(stack):
    cohere = pytest.importorskip("cohere")
    from cohere.errors import BadRequestError

    client = cohere.ClientV2(api_key="any-key", base_url=stack.url)
    with pytest.raises(BadRequestError) as refused:
        client.rerank(model="champion", query="", documents=["a"])
    assert refused.value.status_code == 400 and "query" in refused.value.body["message"]
    with pytest.raises(BadRequestError) as unknown:  # a registry version id is served as named, or refused
        client.rerank(model="v20200101-000000-abcdef", query="q", documents=["a"])
    assert "model" in unknown.value.body["message"]


@pytest.fixture(scope="module")
def gateway_without_default(stack, tmp_path_factory) -> Iterator[str]:
    """A second gateway on the same services whose model map has no "default" entry."""
    model_map = json.dumps({"rerank-v3.5": "champion"})
    proc = GatewayProcess(free_port(), {**stack.env, "FEEDRANK_RERANKING__MODEL_MAP": model_map},
                          tmp_path_factory.mktemp("gw") / "gateway.log")
    proc.start()
    try:
        yield proc.url
    finally:
        proc.stop()


def test_unmapped_model_without_default_is_refused_naming_model(gateway_without_default):
    cohere = pytest.importorskip("cohere")
    from cohere.errors import BadRequestError

    client = cohere.ClientV2(api_key="any-key", base_url=gateway_without_default)
    assert client.rerank(model="rerank-v3.5", query=QUERY, documents=TEXTS).results
    with pytest.raises(BadRequestError) as unknown:
        client.rerank(model="rerank-english-v3.0", query=QUERY, documents=TEXTS)
    assert unknown.value.body["message"].startswith("model:")
    jina = httpx.post(f"{gateway_without_default}/v1/rerank", timeout=60,
                      json={"model": "jina-reranker-v2-base-multilingual", "query": QUERY, "documents": TEXTS})
    assert jina.status_code == 400 and jina.json()["detail"].startswith("model:")


def test_tei_rerank_shape(client, grpc_ranking):
    response = client.post("/rerank", json={"query": QUERY, "texts": TEXTS})
    assert response.status_code == 200, response.text
    ranks = response.json()
    assert isinstance(ranks, list) and len(ranks) == len(TEXTS)
    assert [r["index"] for r in ranks] == [i for i, _ in grpc_ranking]
    assert all(set(r) == {"index", "score"} for r in ranks)  # no text unless asked

    with_text = client.post("/rerank", json={"query": QUERY, "texts": TEXTS, "return_text": True}).json()
    assert all(r["text"] == TEXTS[r["index"]] for r in with_text)

    raw = client.post("/rerank", json={"query": QUERY, "texts": TEXTS, "raw_scores": True}).json()
    assert [r["index"] for r in raw] == [r["index"] for r in ranks]
    for logit, prob in zip(raw, ranks):
        assert 1 / (1 + math.exp(-logit["score"])) == pytest.approx(prob["score"], abs=1e-5)


def test_tei_errors(client):
    empty = client.post("/rerank", json={"query": QUERY, "texts": []})
    assert empty.status_code == 413
    assert empty.json() == {"error": "texts: `texts` cannot be empty", "error_type": "validation"}
    too_long = client.post("/rerank", json={"query": QUERY, "texts": ["word " * 20000], "truncate": False})
    assert too_long.status_code == 413 and too_long.json()["error_type"] == "validation"
    assert too_long.json()["error"].startswith("texts[0]")
    malformed = client.post("/rerank", json={"query": QUERY})
    assert malformed.status_code == 422
    assert malformed.json()["error_type"] == "validation" and "texts" in malformed.json()["error"]


def test_rerank_rpc_refuses_max_tokens_per_doc_below_16_naming_it(stack):
    with grpc.insecure_channel(f"127.0.0.1:{stack.services['reranker'].port}") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            reranker_pb2_grpc.RerankerStub(channel).Rerank(reranker_pb2.RerankRequest(
                query=QUERY, max_tokens_per_doc=8, documents=[reranker_pb2.RerankDocument(id="0", text=TEXTS[0])]),
                timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("max_tokens_per_doc:")
