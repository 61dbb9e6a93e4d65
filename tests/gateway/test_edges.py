"""The gateway app in-process (its factory), for what a healthy stack does not show: upstreams down,
deadlines, the telemetry rate limit, and the error map itself."""

from __future__ import annotations

import time
import uuid
from concurrent import futures

import grpc
import pytest
from fastapi.testclient import TestClient

from services.common.config import EndpointSettings, GatewaySettings, Settings
from services.common.errors import ErrorKind, FeedrankError, TooLarge
from services.common.query_token import QueryIdSigner, signing_key
from services.common.rpc_errors import from_rpc_error
from services.gateway.app import create_app
from services.gateway.ratelimit import RateLimiter
from services.proto.feedrank.v1 import retriever_pb2, retriever_pb2_grpc
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
    # A query_id the stack's retriever could have issued (its key is in the stack's data dir), showing "d" first.
    query_id = QueryIdSigner(signing_key("", stack.data_dir)).sign(CORPUS, "rate", ["d"], time.time())
    event = {"query_id": query_id, "doc_id": "d", "rank": 1, "session_id": "s"}
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


class _RecordingRetriever(retriever_pb2_grpc.RetrieverServicer):
    """A retriever that answers every search with nothing and remembers the metadata it was sent."""

    def __init__(self):
        self.authorization: list[str | None] = []

    def Search(self, request, context):
        self.authorization.append(dict(context.invocation_metadata()).get("authorization"))
        return retriever_pb2.SearchResponse(query_id="q-1")


@pytest.fixture
def small_retriever():
    """A retriever stub that receives at most 2 KiB per message."""
    servicer = _RecordingRetriever()
    server = grpc.server(futures.ThreadPoolExecutor(2), options=[("grpc.max_receive_message_length", 2048)])
    retriever_pb2_grpc.add_RetrieverServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0)


def test_a_body_over_the_limit_is_413_on_every_route_before_it_is_read(tmp_path):
    with app_client(tmp_path, GatewaySettings(max_body_bytes=4096)) as client:
        big = {"corpus_id": CORPUS, "query": "x" * 5000}
        declared = client.post("/search", json=big)
        assert declared.status_code == 413 and declared.json()["error"]["field"] == "body", declared.text
        assert "gateway.max_body_bytes" in declared.json()["error"]["message"]
        assert "retry-after" not in declared.headers
        chunked = client.post("/search", content=(b"x" * 1024 for _ in range(5)),  # no Content-Length
                              headers={"content-type": "application/json"})
        assert chunked.status_code == 413, chunked.text
        tei = client.post("/rerank", json={"query": "q", "texts": ["x" * 5000]})
        assert tei.status_code == 413 and tei.json()["error_type"] == "validation"
        cohere = client.post("/v2/rerank", json={"model": "champion", "query": "q", "documents": ["x" * 5000]})
        assert cohere.status_code == 413 and "message" in cohere.json()
        # Under the limit the request goes on as before (here: to an upstream that is down).
        assert client.post("/search", json={"corpus_id": CORPUS, "query": "cats"}).status_code == 503


def test_an_oversized_grpc_message_is_413_never_429(tmp_path, small_retriever):
    target, _ = small_retriever
    with app_client(tmp_path, retriever=target) as client:
        response = client.post("/search", json={"corpus_id": CORPUS, "query": "x" * 4000})
    # gRPC says RESOURCE_EXHAUSTED ("Received message larger than max"): no overload, so no Retry-After.
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "invalid_argument" and "retry-after" not in response.headers


def test_only_message_size_resource_exhausted_becomes_too_large():
    too_large = from_rpc_error(_Err(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    "Received message larger than max (5000 vs. 2048)"), "reranker")
    assert isinstance(too_large, TooLarge) and too_large.kind == ErrorKind.INVALID_ARGUMENT
    overloaded = from_rpc_error(_Err(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full"), "reranker")
    assert overloaded.kind == ErrorKind.RESOURCE_EXHAUSTED and not isinstance(overloaded, TooLarge)


def test_the_callers_authorization_reaches_the_services_and_nothing_else_does(tmp_path, small_retriever):
    target, servicer = small_retriever
    with app_client(tmp_path, retriever=target) as client:
        assert client.post("/search", json={"corpus_id": CORPUS, "query": "cats"},
                           headers={"Authorization": "Bearer reader"}).status_code == 200
        assert client.post("/search", json={"corpus_id": CORPUS, "query": "cats"}).status_code == 200
    assert servicer.authorization == ["Bearer reader", None]  # the gateway lends no token of its own


def test_admin_routes_need_the_data_dirs_admin_token_when_none_is_configured(tmp_path):
    fusion = {"rrf_k": 30}
    with app_client(tmp_path) as client:
        token = (tmp_path / "admin.token").read_text().strip()
        assert client.patch("/config/fusion", json=fusion).status_code == 401
        assert client.post("/reranker/evaluate", json={"corpus_id": CORPUS}).status_code == 401  # minutes of CPU
        assert client.patch("/config/fusion", json=fusion, headers={"Authorization": "Bearer nope"}).status_code == 401
        # Past the gateway's check with the token: the (down) retriever is reached.
        allowed = client.patch("/config/fusion", json=fusion, headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 503, allowed.text


def test_a_gateway_bound_beyond_loopback_needs_an_admin_token(tmp_path):
    settings = Settings(data_dir=str(tmp_path))
    with pytest.raises(FeedrankError) as err:
        create_app(settings, bind_host="0.0.0.0")
    assert err.value.field == "endpoints.admin_token"
    configured = settings.replace(endpoints=EndpointSettings(admin_token="set"))
    assert create_app(configured, bind_host="0.0.0.0").state.admin_token == "set"
