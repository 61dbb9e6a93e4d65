"""Shared by the fault and fuzz suites: a tiny BEIR corpus ingested for real, and the local stack on it.

The stack is the one `feedrank up` runs (services.devstack.stack.LocalStack): the Tansu broker and every
gRPC service as real processes on free loopback ports. The corpus is 30 short documents so ingest and
search stay cheap on a busy 2-core machine. `RetrieverReplicas` runs the retriever as a Deployment with
several replicas would: processes on the same data dir, reached through one client-side balanced channel.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.common.config import Settings
from services.devstack.stack import SERVICES, LocalStack
from tests.conftest import ServiceProcess, free_port

CORPUS = "tiny"

_TOPICS = [
    ("aspirin", "Aspirin lowers the risk of heart attack in adults over fifty."),
    ("vitamin", "Vitamin D supplements improve bone density in older women."),
    ("sleep", "Short sleep duration is linked to weight gain in teenagers."),
    ("coffee", "Coffee consumption is associated with lower liver disease rates."),
    ("exercise", "Regular aerobic exercise reduces resting blood pressure."),
    ("smoking", "Smoking cessation halves the risk of lung cancer within ten years."),
]


def write_tiny_beir(folder: Path) -> Path:
    """A BEIR folder: 30 documents (5 per topic), one query per topic, train qrels to the topic's documents."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as out:
        for t, (topic, sentence) in enumerate(_TOPICS):
            for i in range(5):
                out.write(json.dumps({"_id": f"d{t}-{i}", "title": f"{topic} study {i}",
                                      "text": f"{sentence} Cohort {i} of {topic} research."}) + "\n")
    with (folder / "queries.jsonl").open("w") as out:
        for t, (topic, _) in enumerate(_TOPICS):
            out.write(json.dumps({"_id": f"q{t}", "text": f"does {topic} affect health"}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    rows = ["query-id\tcorpus-id\tscore"] + [f"q{t}\td{t}-{i}\t1" for t in range(len(_TOPICS)) for i in range(5)]
    (folder / "qrels" / "train.tsv").write_text("\n".join(rows) + "\n")
    return folder


def queries() -> list[str]:
    return [f"does {topic} affect health" for topic, _ in _TOPICS]


def ingest(data_dir: Path, dataset: Path, corpus_id: str = CORPUS) -> None:
    """The retriever's offline ingest (as `feedrank demo` runs it) into the data dir the stack will serve."""
    from services.retriever.core import open_offline

    with open_offline(Settings(data_dir=str(data_dir))) as core:
        report = core.ingest_beir(corpus_id, dataset)
    assert report.documents == 30, report


def start_stack(
    root: Path, env: dict[str, str], *, durable_kafka: bool = False, services: tuple[str, ...] = SERVICES,
) -> LocalStack:
    """Ingest the tiny corpus, then start broker + services on it; the caller stops the stack."""
    data = root / "data"
    ingest(data, write_tiny_beir(root / "dataset"))
    base = {"FEEDRANK_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
    return LocalStack(data, env={**base, **env}, durable_kafka=durable_kafka, services=services).start()


class RetrieverReplicas:
    """Retriever processes on one data dir, as the replicas of a Kubernetes Deployment.

    Clients reach them as a gRPC client behind a headless Service does: one channel over every replica's
    address with the round_robin policy, which sends each call to the next READY replica and skips one whose
    connection broke. A call already sent to a replica that dies fails UNAVAILABLE; the retry policy
    re-sends it, and the balancer picks the replica that is still up. Search only reads, so a retry is safe.
    Each replica serves Prometheus metrics on a free port of its own, to tell which replica served.
    """

    SERVICE_CONFIG = json.dumps({"methodConfig": [{
        "name": [{"service": "feedrank.v1.Retriever", "method": "Search"}],
        "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.2s", "maxBackoff": "1s", "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"]},
    }]})
    CHANNEL_OPTIONS = (("grpc.lb_policy_name", "round_robin"), ("grpc.service_config", SERVICE_CONFIG),
                       ("grpc.enable_retries", 1))

    def __init__(self, count: int = 2):
        self.ports = [free_port() for _ in range(count)]
        self.metrics_ports = [free_port() for _ in range(count)]
        self.processes: list[ServiceProcess] = []

    @property
    def endpoint(self) -> str:
        """One replica's host:port, for services that take a single retriever endpoint."""
        return f"127.0.0.1:{self.ports[0]}"

    @property
    def target(self) -> str:
        """The gRPC target naming every replica (what a headless Service's DNS name resolves to)."""
        return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self, stack: LocalStack) -> RetrieverReplicas:
        for port, metrics in zip(self.ports, self.metrics_ports):
            env = {**stack.service_env(), "FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET": str(metrics - port)}
            self.processes.append(ServiceProcess("retriever", stack.data_dir, env, port=port))
        try:
            for process in self.processes:
                process.start(180)
        except BaseException:
            self.stop()
            raise
        return self

    def searches_served(self, i: int) -> float:
        """Search calls replica i answered OK since it started (its feedrank_grpc_requests_total)."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_ports[i]}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (sample.name == "feedrank_grpc_requests_total" and sample.labels.get("code") == "OK"
                        and sample.labels.get("method") == "/feedrank.v1.Retriever/Search"):
                    return sample.value
        return 0.0

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.25) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
