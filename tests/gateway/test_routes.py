"""The REST routes against the real services: search, feedback, config, the reranker's lifecycle."""

from __future__ import annotations

import uuid

from tests.feedback.helpers import wait_until
from tests.gateway.conftest import ADMIN_TOKEN, CORPUS

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def search(client, query: str, **extra) -> dict:
    response = client.post("/search", json={"corpus_id": CORPUS, "query": query, "top_k": 5, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_search_returns_legs_and_rerank_scores(client):
    corpora = client.get("/corpora").json()["corpora"]
    assert {"corpus_id": CORPUS, "documents": 12} in corpora
    reply = search(client, "volcano lava eruption")
    assert reply["query_id"] and reply["reranked"] and reply["model_version"]
    assert len(reply["results"]) == 5
    assert [r["rank"] for r in reply["results"]] == [1, 2, 3, 4, 5]
    legs = reply["results"][0]["legs"]
    assert set(legs) == {"lexical_score", "lexical_rank", "vector_score", "vector_rank", "fused_score", "fused_rank"}
    scores = [r["rerank_score"] for r in reply["results"]]
    assert scores == sorted(scores, reverse=True)
    # The test registry's cross-encoders have untrained heads, so the fused order is the one to check.
    fused = search(client, "volcano lava eruption", rerank_mode="none")
    assert not fused["reranked"]
    assert {r["doc_id"] for r in fused["results"][:3]} == {"vol-1", "vol-2", "vol-3"}


def test_search_errors_name_the_field(client):
    response = client.post("/search", json={"corpus_id": CORPUS, "query": ""})
    assert response.status_code == 422
    assert response.json()["error"] == {"code": "invalid_argument", "message": "must not be empty", "field": "query"}
    response = client.post("/search", json={"corpus_id": CORPUS, "query": "x", "top_k": 5000})
    assert (response.status_code, response.json()["error"]["field"]) == (422, "top_k")
    # The body's own schema: missing and mistyped fields, named the same way.
    response = client.post("/search", json={"query": "cats"})
    assert (response.status_code, response.json()["error"]["field"]) == (422, "corpus_id")
    response = client.post("/search", json={"corpus_id": CORPUS, "query": "cats", "fusion": {"method": "max"}})
    assert (response.status_code, response.json()["error"]["field"]) == (422, "fusion.method")
    response = client.post("/search", json={"corpus_id": "nope", "query": "cats"})
    assert (response.status_code, response.json()["error"]["field"]) == (422, "corpus_id")


def test_telemetry_events_reach_the_event_store(client, stack):
    reply = search(client, "interest rates of banks")
    first, second = reply["results"][0], reply["results"][1]
    click_id, rating_id = f"click-{uuid.uuid4().hex}", f"rating-{uuid.uuid4().hex}"
    click = {"event_id": click_id, "query_id": reply["query_id"], "query": "interest rates of banks",
             "doc_id": first["doc_id"], "rank": 1, "dwell_ms": 15000, "source": "test",
             "timestamp": "2026-01-01T12:00:00Z"}
    rating = {"event_id": rating_id, "query_id": reply["query_id"], "doc_id": second["doc_id"], "rank": 2,
              "rating": 1, "source": "test"}
    for event in (click, rating):
        response = client.post("/api/telemetry/event", json=event)
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1

    store = stack.wait_for_events({click_id, rating_id})
    try:
        stored_click, stored_rating = store.get(click_id), store.get(rating_id)
        assert stored_click.kind == "click" and stored_click.event.click.dwell_ms == 15000
        assert stored_click.event.timestamp_ms == 1767268800000
        assert (stored_rating.kind, stored_rating.event.rating.rating, stored_rating.event.rating.rank) == ("rating", 1, 2)
    finally:
        store.close()

    # The retriever's impression of the same search arrives too, which gives the click its corpus.
    def joined() -> bool:
        store = stack.events()
        try:
            return store.get(click_id).corpus_id == CORPUS
        finally:
            store.close()

    wait_until(joined, 30, "the search's impression in the event store")


def test_telemetry_refusals_name_the_field(client):
    base = {"event_id": f"bad-{uuid.uuid4().hex}", "query_id": "q", "doc_id": "d"}
    cases = [
        ({**base, "rating": 9, "rank": 1}, "rating"),
        ({**base, "type": "click", "rank": 0}, "rank"),
        ({**base, "type": "rating", "rank": 1}, "rating"),
        ({**base, "rank": 1, "timestamp": "yesterday"}, "timestamp"),
        ({**base, "event_id": ""}, "event_id"),
        ({"query_id": "q", "doc_id": "d"}, "event_id"),
    ]
    for event, field in cases:
        response = client.post("/api/telemetry/event", json=event)
        assert response.status_code == 422, (event, response.text)
        assert response.json()["error"]["field"] == field, (event, response.text)


def test_config_reads_and_patches_through_the_retriever(client):
    assert client.get("/config/fusion").json()["method"] == "rrf"
    reranking = client.get("/config/reranking").json()
    assert reranking["reranker_mode"] == "learning"

    refused = client.patch("/config/fusion", json={"rrf_k": 30})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthenticated"
    assert client.patch("/config/fusion", json={"rrf_k": 30}, headers={"Authorization": "Bearer wrong"}).status_code == 401

    patched = client.patch("/config/fusion", json={"method": "weighted", "vector_weight": 0.7}, headers=ADMIN)
    assert patched.status_code == 200, patched.text
    assert patched.json()["method"] == "weighted" and patched.json()["vector_weight"] == 0.7
    assert client.get("/config/fusion").json()["method"] == "weighted"
    bad = client.patch("/config/fusion", json={"rrf_k": -1}, headers=ADMIN)
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "rrf_k")
    negative = client.patch("/config/fusion", json={"vector_weight": -0.5}, headers=ADMIN)
    assert (negative.status_code, negative.json()["error"]["field"]) == (422, "vector_weight")
    empty = client.patch("/config/reranking", json={}, headers=ADMIN)
    assert (empty.status_code, empty.json()["error"]["field"]) == (422, "body")
    topn = client.patch("/config/reranking", json={"tribrid_reranker_topn": 8}, headers=ADMIN)
    assert topn.status_code == 200 and topn.json()["tribrid_reranker_topn"] == 8
    restored = client.patch("/config/fusion", json={"method": "rrf"}, headers=ADMIN)
    assert restored.json()["method"] == "rrf"


def test_reranker_info_and_status(client):
    info = client.get("/reranker/info").json()
    assert info["mode"] == "learning" and "champion" in info["aliases"]
    status = client.get("/reranker/status").json()
    assert status["champion"]["version_id"] == info["aliases"]["champion"]
    assert status["trainer_error"] == ""


def test_admin_routes_need_the_token(client):
    for path, body in [("/reranker/mine", {"corpus_id": CORPUS}), ("/reranker/train", {"corpus_id": CORPUS}),
                       ("/reranker/train/start", {"corpus_id": CORPUS}),
                       ("/api/reranker/promote", {"corpus_id": CORPUS}),
                       ("/api/reranker/rollback", {"corpus_id": CORPUS})]:
        response = client.post(path, json=body)
        assert response.status_code == 401, (path, response.text)


def test_unknown_run_is_404_and_bad_run_id_is_422(client):
    assert client.get("/reranker/train/run/r-unknown").status_code == 404
    assert client.get("/reranker/train/run/r-unknown/metrics").status_code == 404
    bad = client.get("/api/reranker/logs", params={"run_id": "../registry"})
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "run_id")
