"""`feedrank up`'s stack: broker, four services and the gateway start healthy and stop cleanly."""

from __future__ import annotations

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.devstack.stack import WITH_GATEWAY, LocalStack


def test_stack_starts_every_service_and_stops_them(tmp_path):
    stack = LocalStack(tmp_path / "data", services=WITH_GATEWAY)
    with stack:
        for name in ("retriever", "reranker", "feedback", "trainer"):
            with grpc.insecure_channel(stack.target(name)) as channel:
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING, name
        gateway = f"http://{stack.target('gateway')}"
        assert httpx.get(f"{gateway}/healthz", timeout=5).status_code == 200
        # The gateway reaches the retriever the stack started (an empty data dir: no corpus yet).
        assert httpx.get(f"{gateway}/corpora", timeout=10).json() is not None
        processes = list(stack.processes.values())
    assert all(not p.alive() for p in processes)
    assert stack.kafka is None
