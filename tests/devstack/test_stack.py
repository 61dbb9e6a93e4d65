"""`feedrank up`'s stack: broker, four services and the gateway start healthy, on loopback only, with
an admin token no one else can read, and stop cleanly."""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
import sys

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.devstack.stack import WITH_GATEWAY, LocalStack
from services.proto.feedrank.v1 import trainer_pb2, trainer_pb2_grpc
from tests.conftest import REPO


def listening_addresses(port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Local addresses with a listening TCP socket on `port` (from /proc/net; v4-mapped IPv6 as IPv4)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                hex_address, hex_port = local.split(":")
                if state != "0A" or int(hex_port, 16) != port:  # 0A = LISTEN
                    continue
                # The kernel writes each 32-bit word of the address in host (little-endian) order.
                raw = b"".join(bytes.fromhex(hex_address[i:i + 8])[::-1] for i in range(0, len(hex_address), 8))
                address = ipaddress.ip_address(raw)
                found.add(getattr(address, "ipv4_mapped", None) or address)
    return found


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
        # Every service listens on loopback only (endpoints.bind_host's default).
        for p in stack.processes.values():
            addresses = listening_addresses(p.port)
            assert addresses and all(a.is_loopback for a in addresses), (p.name, addresses)
        processes = list(stack.processes.values())
    assert all(not p.alive() for p in processes)
    assert stack.kafka is None


def test_admin_calls_need_the_stacks_token_which_the_cli_finds_in_the_data_dir(tmp_path):
    stack = LocalStack(tmp_path / "data", services=("trainer",))
    with stack:
        token_file = stack.data_dir / "admin.token"
        assert stack.admin_token_created and token_file.read_text().strip() == stack.admin_token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        promote = trainer_pb2.PromoteRequest(corpus_id="tiny", version_id="v-none", force=True)
        with grpc.insecure_channel(stack.target("trainer")) as channel:
            stub = trainer_pb2_grpc.TrainerStub(channel)
            try:
                stub.Promote(promote, timeout=30)
            except grpc.RpcError as err:
                anonymous = err.code()
            try:
                stub.Promote(promote, timeout=30, metadata=[("authorization", f"Bearer {stack.admin_token}")])
                with_token = grpc.StatusCode.OK
            except grpc.RpcError as err:
                with_token = err.code()
        env = {k: v for k, v in os.environ.items() if k != "FEEDRANK_ENDPOINTS__ADMIN_TOKEN"}
        cli = subprocess.run(
            [sys.executable, "-m", "services.cli", "promote", "--corpus-id", "tiny", "--version", "v-none", "--force",
             "--target", stack.target("trainer")],
            cwd=REPO, env={**env, "FEEDRANK_DATA_DIR": str(stack.data_dir), "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, timeout=120,
        )
    assert anonymous == grpc.StatusCode.UNAUTHENTICATED
    # Past the door: the trainer itself answers (there is no such version in an empty registry).
    assert with_token not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    assert "Promote failed" in cli.stdout and "UNAUTHENTICATED" not in cli.stdout, cli.stdout + cli.stderr
