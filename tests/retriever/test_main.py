"""`python -m services.retriever --port P` as a real process: health, a search, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.proto.feedrank.v1 import retriever_pb2, retriever_pb2_grpc
from tests.conftest import free_port
from tests.retriever.conftest import REPO


def test_server_process_serves_and_stops_on_sigterm(seeded_data_dir):
    port = free_port()
    env = {
        **os.environ,
        "FEEDRANK_DATA_DIR": str(seeded_data_dir),
        "FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET": "0",
        "FEEDRANK_ENDPOINTS__RERANKER": "127.0.0.1:1",
        "FEEDRANK_ENDPOINTS__FEEDBACK": "127.0.0.1:1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.retriever", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 90
            while True:
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(service="feedrank.v1.Retriever"), timeout=2)
                    if status.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "retriever did not report SERVING"
                time.sleep(0.3)
            stub = retriever_pb2_grpc.RetrieverStub(channel)
            listed = stub.ListCorpora(retriever_pb2.ListCorporaRequest(), timeout=10)
            assert list(listed.corpora) == []
            with pytest.raises(grpc.RpcError) as caught:
                stub.Search(retriever_pb2.SearchRequest(corpus_id="none", query="q"), timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
