"""Jina, Voyage and Mixedbread rerank requests, plain HTTP, against the gateway.

Each golden file under golden/ holds a request and its response as the provider's documentation
shows them: the gateway answers the documented request with a response of the documented shape
(every documented key, with the documented JSON type), and its ranking is the reranker's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from services.gateway.routes.compat import dialect
from services.gateway.schemas import V1RerankBody
from services.proto.feedrank.v1 import reranker_pb2, reranker_pb2_grpc

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def shape_of(value):
    """A JSON value's shape: objects by key, lists by their first item, scalars by type (ints are numbers)."""
    if isinstance(value, dict):
        return {k: shape_of(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape_of(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    return "number" if isinstance(value, int | float) else type(value).__name__


def missing(documented, served, where: str = "") -> list[str]:
    """Documented keys the served shape lacks or types it differs in (extra served keys are allowed)."""
    if isinstance(documented, dict):
        if not isinstance(served, dict):
            return [f"{where or '.'}: not an object"]
        return [m for k, v in documented.items()
                for m in ([f"{where}.{k}: missing"] if k not in served else missing(v, served[k], f"{where}.{k}"))]
    if isinstance(documented, list):
        if not isinstance(served, list) or not served:
            return [f"{where}: not a non-empty list"]
        return missing(documented[0], served[0], f"{where}[0]")
    return [] if documented == served else [f"{where}: {served}, documented {documented}"]


def reranker_order(stack, query: str, texts: list[str]) -> list[int]:
    with grpc.insecure_channel(f"127.0.0.1:{stack.services['reranker'].port}") as channel:
        reply = reranker_pb2_grpc.RerankerStub(channel).Rerank(reranker_pb2.RerankRequest(
            query=query, truncate=True,
            documents=[reranker_pb2.RerankDocument(id=str(i), text=t) for i, t in enumerate(texts)]), timeout=30)
    return [r.index for r in reply.results]


@pytest.mark.parametrize("name", ["cohere_v2.json", "jina.json", "voyage.json", "mixedbread.json"])
def test_documented_request_gets_a_documented_response(stack, client, name):
    case = golden(name)
    response = client.post(case["path"], json=case["request"])
    assert response.status_code == 200, response.text
    served = response.json()
    assert missing(shape_of(case["response"]), shape_of(served)) == []

    request = case["request"]
    texts = request.get("documents") or request["input"]
    rows = served.get("results") or served["data"]
    want = reranker_order(stack, request["query"], texts)[: len(case["response"].get("results")
                                                                 or case["response"]["data"])]
    assert [r["index"] for r in rows] == want


def test_jina_returns_documents_unless_told_not_to(client):
    body = {"model": "jina-reranker-v2-base-multilingual", "query": "volcano", "documents": ["lava flows", "tax law"]}
    rows = client.post("/v1/rerank", json=body).json()["results"]
    assert {r["document"]["text"] for r in rows} == {"lava flows", "tax law"}
    bare = client.post("/v1/rerank", json={**body, "return_documents": False}).json()["results"]
    assert all(set(r) == {"index", "relevance_score"} for r in bare)
    objects = client.post("/v1/rerank", json={**body, "documents": [{"text": "lava flows"}, {"text": "tax law"}]})
    assert [r["index"] for r in objects.json()["results"]] == [r["index"] for r in rows]


def test_voyage_returns_documents_only_when_asked(client):
    body = {"model": "rerank-2.5", "query": "volcano", "documents": ["lava flows", "tax law"], "top_k": 1}
    data = client.post("/v1/rerank", json=body).json()["data"]
    assert len(data) == 1 and set(data[0]) == {"index", "relevance_score"}
    asked = client.post("/v1/rerank", json={**body, "return_documents": True}).json()["data"]
    assert asked[0]["document"] == body["documents"][asked[0]["index"]]


def test_mixedbread_objects_ranked_by_rank_fields(client):
    docs = [{"title": "tax law", "body": "income brackets", "id": 1},
            {"title": "volcanoes", "body": "how magma erupts through the crust", "id": 2}]
    body = {"model": "mixedbread-ai/mxbai-rerank-large-v2", "query": "how do volcanoes erupt", "input": docs,
            "rank_fields": ["title", "body"], "return_input": True}
    for path in ("/v1/rerank", "/v1/reranking"):
        reply = client.post(path, json=body).json()
        assert reply["top_k"] == 2 and reply["data"][0]["input"] == docs[1]


def test_bad_dialect_input_names_the_field(client):
    empty = client.post("/v1/rerank", json={"model": "m", "query": "q", "documents": []})
    assert empty.status_code == 400 and empty.json()["detail"].startswith("documents")
    no_docs = client.post("/v1/rerank", json={"model": "m", "query": "q"})
    assert no_docs.status_code == 400 and no_docs.json()["detail"].startswith("documents")
    bad_k = client.post("/v1/reranking", json={"query": "q", "input": ["a"], "top_k": 0})
    assert bad_k.status_code == 400 and bad_k.json()["detail"].startswith("top_k")
    not_a_list = client.post("/v1/rerank", json={"query": "q", "documents": "a"})
    assert not_a_list.status_code == 422 and "documents" in not_a_list.json()["detail"]
    too_long = client.post("/v1/rerank", json={"query": "q", "documents": ["word " * 20000], "truncation": False})
    assert too_long.status_code == 400 and too_long.json()["detail"].startswith("documents[0]")


@pytest.mark.parametrize(("body", "kind"), [
    ({"query": "q", "documents": ["a"], "top_n": 1}, "jina"),
    ({"query": "q", "documents": ["a"]}, "jina"),
    ({"query": "q", "documents": ["a"], "top_k": 1}, "voyage"),
    ({"query": "q", "documents": ["a"], "truncation": True}, "voyage"),
    ({"query": "q", "input": ["a"], "top_k": 1}, "mixedbread"),
])
def test_dialect_is_told_by_field_names(body, kind):
    assert dialect(V1RerankBody(**body)) == kind
