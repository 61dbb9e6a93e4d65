"""Drop-in rerank: the official cohere SDK and TEI-style calls against the gateway, checked
against the reranker's own gRPC answer for the same documents."""

from __future__ import annotations

import math

import grpc
import pytest

from services.proto.feedrank.v1 import reranker_pb2, reranker_pb2_grpc
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


def test_cohere_sdk_reranks_through_the_gateway(stack, grpc_ranking):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="any-key", base_url=stack.url)
    reply = client.rerank(model="champion", query=QUERY, documents=TEXTS, top_n=5)
    assert [r.index for r in reply.results] == [i for i, _ in grpc_ranking[:5]]
    for result, (_, score) in zip(reply.results, grpc_ranking):
        assert result.relevance_score == pytest.approx(score, rel=1e-5)
        assert 0.0 <= result.relevance_score <= 1.0
    assert reply.id and reply.meta.api_version.version == "2"

    everything = client.rerank(model="champion", query=QUERY, documents=TEXTS)
    assert sorted(r.index for r in everything.results) == list(range(len(TEXTS)))


def test_cohere_sdk_sees_cohere_errors(stack):
    cohere = pytest.importorskip("cohere")
    from cohere.errors import BadRequestError

    client = cohere.ClientV2(api_key="any-key", base_url=stack.url)
    with pytest.raises(BadRequestError) as refused:
        client.rerank(model="champion", query="", documents=["a"])
    assert refused.value.status_code == 400 and "query" in refused.value.body["message"]
    with pytest.raises(BadRequestError) as unknown:
        client.rerank(model="no-such-version", query="q", documents=["a"])
    assert "model" in unknown.value.body["message"]


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
