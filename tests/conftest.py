"""Fixtures every test package shares."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from services.common.credentials import ADMIN_TOKEN_FILE

pytest_plugins = ["tests.session_fixtures"]

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin_metadata(data_dir: Path) -> tuple[tuple[str, str], ...]:
    """The bearer metadata of the data dir's admin token: what a service started on loopback with no
    endpoints.admin_token checks (it creates the file), for tests that call admin RPCs."""
    token = (Path(data_dir) / ADMIN_TOKEN_FILE).read_text().strip()
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An isolated FEEDRANK_DATA_DIR for the test."""
    path = tmp_path / "data"
    path.mkdir()
    monkeypatch.setenv("FEEDRANK_DATA_DIR", str(path))
    return path


class ServiceProcess:
    """`python -m services.<name>` as a child process on a free port, configured through the environment."""

    def __init__(self, name: str, data_dir: Path, env: dict[str, str], port: int | None = None):
        self.name = name
        self.port = port or free_port()
        self.env = {**os.environ, "FEEDRANK_DATA_DIR": str(data_dir), "FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET": "0",
                    "HF_HUB_OFFLINE": "1", **env}
        self.proc: subprocess.Popen | None = None
        self.log = data_dir / f"{name}-{self.port}.log"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90) -> ServiceProcess:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        self.proc = subprocess.Popen([sys.executable, "-m", f"services.{self.name}", "--port", str(self.port)],
                                     cwd=REPO, env=self.env, stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                        return self
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        raise TimeoutError(f"{self.name} not healthy: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
