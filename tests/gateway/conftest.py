"""The whole stack behind the gateway, real and started once per test session.

A Tansu broker, the feedback service, the reranker (registry from the reranker tests' seeded
MiniLM cross-encoders), the retriever on the retriever tests' twelve-document corpus, the trainer
(whose Kafka consumer fills the event store the tests read), and the gateway itself, each as the
`python -m services.<name>` process an operator runs.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.common.config import Settings
from services.devstack.broker import DevKafka
from services.events.store import EventStore
from tests.conftest import free_port
from tests.feedback.helpers import ServiceProcess, wait_until
from tests.reranker.conftest import RerankerProcess
from tests.retriever.conftest import DOCS

CORPUS = "tiny"
ADMIN_TOKEN = "test-admin-token"


class GrpcProcess(ServiceProcess):
    """A feedrank gRPC service, ready once its health check says SERVING."""

    def __init__(self, module: str, port: int, env: dict[str, str], log_path: Path):
        super().__init__(module, ["--port", str(port)], env, log_path)
        self.port = port

    def start(self, timeout_s: float = 90.0) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        super().start()
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            def serving() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.module} exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    return health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1
                except grpc.RpcError:
                    return False

            wait_until(serving, timeout_s, f"{self.module} to serve")


class GatewayProcess(ServiceProcess):
    def __init__(self, port: int, env: dict[str, str], log_path: Path):
        super().__init__("services.gateway", ["--port", str(port), "--host", "127.0.0.1"], env, log_path)
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout_s: float = 30.0) -> None:
        super().start()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout_s, "the gateway to answer")


@dataclass
class Stack:
    root: Path
    data_dir: Path
    env: dict[str, str]
    gateway: GatewayProcess
    services: dict[str, ServiceProcess]

    @property
    def url(self) -> str:
        return self.gateway.url

    def events(self) -> EventStore:
        """The trainer's event store, opened read-only (the trainer's consumer writes it)."""
        return EventStore(self.data_dir / "events" / "events.sqlite3", read_only=True)

    def wait_for_events(self, event_ids: set[str], timeout_s: float = 60.0) -> EventStore:
        def arrived() -> bool:
            path = self.data_dir / "events" / "events.sqlite3"
            if not path.exists():
                return False
            store = self.events()
            try:
                return event_ids <= store.event_ids()
            finally:
                store.close()

        wait_until(arrived, timeout_s, f"events {sorted(event_ids)} in the trainer's event store", interval_s=0.3)
        return self.events()


def stack_env(data_dir: Path, bootstrap: str, ports: dict[str, int], **extra: str) -> dict[str, str]:
    return {
        "FEEDRANK_DATA_DIR": str(data_dir),
        "FEEDRANK_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "FEEDRANK_KAFKA__TOPICS__FEEDBACK": f"feedback-{uuid.uuid4().hex[:8]}",
        "FEEDRANK_KAFKA__CONSUMER_GROUP": f"trainer-{uuid.uuid4().hex[:8]}",
        "FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET": "0",
        "FEEDRANK_ENDPOINTS__GRACE_SECONDS": "1",
        "FEEDRANK_FEEDBACK__RETRY_INTERVAL_S": "0.5",
        "FEEDRANK_ENGINE__WATCH_INTERVAL_S": "0.5",
        "FEEDRANK_ENGINE__INTRA_OP_THREADS": "1",
        "FEEDRANK_LOG_LEVEL": "WARNING",
        # A training run from the console is a few short steps on one thread.
        "FEEDRANK_TRAINING__MAX_STEPS": "4",
        "FEEDRANK_TRAINING__BATCH_SIZE": "4",
        "FEEDRANK_TRAINING__MAX_LENGTH": "64",
        "FEEDRANK_TRAINING__DEV_SHARE": "0",
        "FEEDRANK_TRAINING__TORCH_THREADS": "1",
        # Online experiments (tests/gateway/test_online_experiment.py): learnt, credited and broken quickly.
        "FEEDRANK_INTERLEAVING__WATCH_TTL_S": "0.3",
        "FEEDRANK_INTERLEAVING__CLICK_WINDOW_S": "1",
        "FEEDRANK_INTERLEAVING__MAX_CONSECUTIVE_FAILURES": "3",
        "FEEDRANK_INTERLEAVING__CHALLENGER_TIMEOUT_S": "10",
        **{f"FEEDRANK_ENDPOINTS__{name.upper()}": f"127.0.0.1:{port}" for name, port in ports.items()},
        **extra,
    }


EVAL_QUERIES = {"e-cat": "pet cats", "e-vol": "volcanic eruptions", "e-bank": "bank interest", "e-code": "algorithms"}


def write_eval_set(corpus_root: Path) -> None:
    """BEIR queries and a `test` qrels split next to the corpus: the trainer's frozen evaluation set."""
    import json

    (corpus_root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": qid, "text": text}) + "\n" for qid, text in EVAL_QUERIES.items()))
    (corpus_root / "qrels").mkdir(exist_ok=True)
    rows = [f"{qid}\t{qid.split('-')[1]}-{i}\t1" for qid in EVAL_QUERIES for i in (1, 2, 3)]
    (corpus_root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")


def run_stack(root: Path, registry_template: Path, embedder_dir: Path, embedder) -> Iterator[Stack]:
    """The session's `stack` fixture (tests/session_fixtures.py): started, yielded, stopped."""
    from services.retriever.core import RetrieverCore

    data = root / "data"
    data.mkdir()
    shutil.copytree(registry_template, data / "registry")
    shutil.copytree(embedder_dir, data / "models" / "embedder")
    core = RetrieverCore(Settings(data_dir=str(data)), embedder=embedder)
    assert core.ingest(CORPUS, DOCS).added == len(DOCS)
    core.close()
    write_eval_set(data / "corpora" / CORPUS)

    kafka = DevKafka(root / "kafka").start()
    ports = {name: free_port() for name in ("retriever", "reranker", "feedback", "trainer")}
    # Every service checks the admin token, so the tests see the gateway pass it on.
    env = stack_env(data, kafka.bootstrap_servers, ports, FEEDRANK_ENDPOINTS__ADMIN_TOKEN=ADMIN_TOKEN)
    services: dict[str, ServiceProcess] = {}
    gateway = GatewayProcess(free_port(), {**env, "FEEDRANK_GATEWAY__TELEMETRY_BURST": "1000"}, root / "gateway.log")
    try:
        for name in ("feedback", "reranker", "retriever", "trainer"):
            services[name] = GrpcProcess(f"services.{name}", ports[name], env, root / f"{name}.log")
            services[name].start()
        gateway.start()
        yield Stack(root, data, env, gateway, services)
    finally:
        gateway.stop()
        for proc in reversed(list(services.values())):
            proc.stop()
        kafka.stop()


@pytest.fixture
def client(stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=60) as http:
        yield http


def chromium_path() -> str:
    path = "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (run tools/install_chromium.sh)")
    return path


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

