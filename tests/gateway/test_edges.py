"""The gateway app in-process (its factory), for what a healthy stack does not show: upstreams down,
deadlines, the telemetry rate limit, and the error map itself."""

from __future__ import annotations

import uuid

import grpc
import pytest
from fastapi.testclient import TestClient

from services.common.config import EndpointSettings, GatewaySettings, Settings
from services.common.errors import ErrorKind
from services.gateway.app import create_app
from services.common.rpc_errors import from_rpc_error
from services.gateway.ratelimit import RateLimiter
from tests.gateway.conftest import CORPUS

DOWN = "127.0.0.1:1"  # nothing listens on port 1


def app_client(data_dir, gateway: GatewaySettings | None = None, **endpoints: str) -> TestClient:
    """The app with every upstream down unless named."""
    base = {name: DOWN for name in ("retriever", "reranker", "feedback", "trainer")}
    settings = Settings(data_dir=str(data_dir)).replace(
        endpoints=EndpointSettings(**{**base, **endpoints}), gateway=gateway or GatewaySettings()
    )
    return TestClient(create_app(settings))


def test_upstream_down_is_503_naming_the_service(tmp_path):
    with app_client(tmp_path) as client:
        response = client.post("/search", json={"corpus_id": CORPUS, "query": "cats"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "unavailable"
        assert response.json()["error"]["message"].startswith("retriever: ")
        assert client.get("/reranker/info").status_code == 503
        tei = client.post("/rerank", json={"query": "q", "texts": ["a"]})
        assert tei.status_code == 503 and tei.json()["error_type"] == "unhealthy"
        cohere = client.post("/v2/rerank", json={"model": "champion", "query": "q", "documents": ["a"]})
        assert cohere.status_code == 503 and "message" in cohere.json()
        assert client.get("/healthz").json() == {"status": "ok"}


def test_deadline_is_504(stack, tmp_path):
    retriever = f"127.0.0.1:{stack.services['retriever'].port}"
    with app_client(tmp_path, GatewaySettings(search_timeout_s=0.0005), retriever=retriever) as client:
        response = client.post("/search", json={"corpus_id": CORPUS, "query": "volcano eruption"})
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "deadline_exceeded"


def test_telemetry_is_rate_limited_per_client(stack, tmp_path):
    limits = GatewaySettings(telemetry_burst=3, telemetry_rate_per_s=0.001)
    event = {"query_id": "q-rate", "doc_id": "d", "rank": 1, "session_id": "s"}
    with app_client(tmp_path, limits, feedback=f"127.0.0.1:{stack.services['feedback'].port}") as client:
        codes = [client.post("/api/telemetry/event", json={**event, "event_id": uuid.uuid4().hex}).status_code
                 for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        refused = client.post("/api/telemetry/event", json={**event, "event_id": "x"})
        assert refused.headers["retry-after"] == "1" and refused.json()["error"]["code"] == "resource_exhausted"


def test_rate_limiter_refills_and_forgets_old_clients():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, max_clients=2, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    now[0] = 0.5  # one token back
    assert [limiter.allow("a") for _ in range(2)] == [True, False]
    limiter.allow("b")
    limiter.allow("c")  # "a" is the least recently seen: forgotten, so it starts with a full bucket
    assert limiter.allow("a") and limiter.allow("a")


class _Err(grpc.RpcError):
    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


@pytest.mark.parametrize("code, kind, field, message", [
    (grpc.StatusCode.INVALID_ARGUMENT, ErrorKind.INVALID_ARGUMENT, "documents[3].text", "too long"),
    (grpc.StatusCode.NOT_FOUND, ErrorKind.NOT_FOUND, None, "run r1 not found"),
    (grpc.StatusCode.UNAVAILABLE, ErrorKind.UNAVAILABLE, None, "trainer: connection refused"),
    (grpc.StatusCode.UNKNOWN, ErrorKind.INTERNAL, None, "trainer: boom"),
    (grpc.StatusCode.FAILED_PRECONDITION, ErrorKind.FAILED_PRECONDITION, None, "run is still running"),
])
def test_grpc_status_to_domain_error(code, kind, field, message):
    details = {"documents[3].text": "documents[3].text: too long", None: message.removeprefix("trainer: ")}[field]
    err = from_rpc_error(_Err(code, details), "trainer")
    assert (err.kind, err.field, err.message) == (kind, field, message)


def test_eval_latest_and_logs_read_the_data_dir(tmp_path):
    with app_client(tmp_path) as client:
        assert client.get("/api/reranker/eval/latest").status_code == 404
        assert client.get("/api/reranker/logs").json() == {"run_id": "", "lines": []}
        (tmp_path / "evals").mkdir()
        (tmp_path / "evals" / "latest.json").write_text('{"eval_id": "e1", "ndcg_gain": 0.01}')
        assert client.get("/api/reranker/eval/latest").json()["eval_id"] == "e1"
        for run_id in ("r20260101-000000-aaaaaa", "r20260102-000000-bbbbbb"):
            (tmp_path / "runs" / run_id).mkdir(parents=True)
        log = tmp_path / "runs" / "r20260102-000000-bbbbbb" / "train.log"
        log.write_text("".join(f"line {i}\n" for i in range(250)))
        logs = client.get("/api/reranker/logs", params={"run_id": "r20260102-000000-bbbbbb"}).json()
        assert logs["run_id"] == "r20260102-000000-bbbbbb"
        assert logs["lines"] == [f"line {i}" for i in range(150, 250)]
        assert client.get("/api/reranker/logs", params={"run_id": "r20260101-000000-aaaaaa"}).json()["lines"] == []
        # Without a run id: the trainer's job output (mine, train, evaluate, gate), last 100 lines.
        (tmp_path / "trainer").mkdir()
        (tmp_path / "trainer" / "jobs.log").write_text("".join(f"job {i}\n" for i in range(120)))
        assert client.get("/api/reranker/logs").json()["lines"] == [f"job {i}" for i in range(20, 120)]
        assert client.get("/api/reranker/logs", params={"run_id": "r-missing"}).status_code == 404


def test_metrics_by_version_come_from_the_evaluations(tmp_path):
    evals = tmp_path / "evals"
    evals.mkdir()

    def record(eval_id, corpus, champion, challenger, ndcg):
        return {"eval_id": eval_id, "corpus_id": corpus,
                "champion": {"version_id": champion}, "challenger": {"version_id": challenger},
                "metrics": {"champion": {"ndcg@10": ndcg[0], "mrr@10": ndcg[0] / 2},
                            "challenger": {"ndcg@10": ndcg[1], "mrr@10": ndcg[1] / 2}}}

    import json

    for rec in (record("e20260101-000000-a", "c1", "v1", "v2", (0.5, 0.6)),
                record("e20260102-000000-b", "c1", "v2", "v3", (0.62, 0.7)),
                record("e20260103-000000-c", "other", "v9", "v9", (0.1, 0.1))):
        (evals / f"{rec['eval_id']}.json").write_text(json.dumps(rec))
    with app_client(tmp_path) as client:
        versions = client.get("/api/reranker/evals/versions", params={"corpus_id": "c1"}).json()["versions"]
    assert [v["version_id"] for v in versions] == ["v1", "v2", "v3"]
    assert versions[1] == {"version_id": "v2", "eval_id": "e20260102-000000-b", "corpus_id": "c1",
                           "ndcg@10": 0.62, "mrr@10": 0.31}  # the newest evaluation of v2 wins
