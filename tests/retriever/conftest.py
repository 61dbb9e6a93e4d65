"""Fixtures of the retriever tests (the ONNX embedder is tests/session_fixtures.py's): a tiny
made-up corpus, noida-db (an Elasticsearch-compatible emulator, not OpenSearch itself) and
stand-in Reranker/Feedback servers for the calls the retriever makes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import grpc
import httpx
import pytest

from services.common.documents import Doc
from services.proto.feedrank.v1 import feedback_pb2, feedback_pb2_grpc, reranker_pb2, reranker_pb2_grpc
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO / ".." / "shared" / "data"

# Twelve short documents on four topics; queries in the tests have one clear answer each.
DOCS = [
    Doc("cat-1", "Domestic cats", "Cats are small carnivorous mammals kept as pets; they purr and hunt mice."),
    Doc("cat-2", "Cat behaviour", "A cat sleeps most of the day and grooms its fur with a rough tongue."),
    Doc("cat-3", "Big cats", "Lions and tigers are large wild cats living in savannas and jungles."),
    Doc("vol-1", "Volcano eruptions", "Magma rises through the crust and erupts as lava and ash from a volcano."),
    Doc("vol-2", "Volcanic islands", "Hawaii formed from volcanic hotspots in the Pacific Ocean."),
    Doc("vol-3", "Lava flows", "Basaltic lava flows cool into black rock after an eruption."),
    Doc("bank-1", "Interest rates", "Central banks raise interest rates to slow inflation in the economy."),
    Doc("bank-2", "Mortgages", "A mortgage is a loan secured by a house, repaid with interest over decades."),
    Doc("bank-3", "Savings accounts", "Savings accounts pay a small interest rate on deposited money."),
    Doc("code-1", "Sorting algorithms", "Quicksort partitions an array around a pivot and sorts recursively."),
    Doc("code-2", "Hash tables", "A hash table maps keys to buckets for constant-time lookups."),
    Doc("code-3", "Binary search", "Binary search halves a sorted array at each step to find a value."),
]


@pytest.fixture
def seeded_data_dir(data_dir, embedder_dir) -> Path:
    """A data dir whose embedder cache is already exported (no torch in the code under test)."""
    shutil.copytree(embedder_dir, data_dir / "models" / "embedder")
    return data_dir


@pytest.fixture(scope="session")
def noida_es_url(tmp_path_factory):
    """noida-db's Elasticsearch-compatible API on a free loopback port, for the opensearch-py adapter."""
    noida_db = pytest.importorskip("noida_db", reason="noida-db is not installed (dev extra)")
    # The package's own binary, not the console-script wrapper: terminating the wrapper would
    # leave the server running. A new session lets teardown stop the whole group.
    binary = Path(noida_db.__file__).parent / "noida-db"
    port = free_port()
    folder = tmp_path_factory.mktemp("noida")
    log = open(folder / "noida.log", "w")
    proc = subprocess.Popen(
        [str(binary), "start", "--only", "elasticsearch", "--elasticsearch-port", str(port), "--host", "127.0.0.1",
         "--data-dir", str(folder / "data")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"noida-db exited: {(folder / 'noida.log').read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        _stop(proc)
        pytest.fail("noida-db did not answer within 30 s")
    yield url
    _stop(proc)
    log.close()


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class ReversingReranker(reranker_pb2_grpc.RerankerServicer):
    """Stands in for the reranker service: scores documents so their order is reversed, and
    records each request. `delay` makes it slower than the retriever's deadline."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.requests: list[reranker_pb2.RerankRequest] = []

    async def Rerank(self, request, context):
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        n = len(request.documents)
        results = [
            reranker_pb2.RerankResult(index=i, id=d.id, score=float(i) / n) for i, d in enumerate(request.documents)
        ]
        results.sort(key=lambda r: -r.score)
        return reranker_pb2.RerankResponse(results=results, model_version="v-test", mode="local")


class RecordingFeedback(feedback_pb2_grpc.FeedbackServicer):
    def __init__(self):
        self.events: list[feedback_pb2.FeedbackEvent] = []
        self.arrived = asyncio.Event()

    async def Record(self, request, context):
        self.events.extend(request.events)
        self.arrived.set()
        return feedback_pb2.RecordResponse(accepted=len(request.events))


async def start_stub_server(register) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"
