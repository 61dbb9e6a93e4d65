"""The embedded deployment on one machine: the Tansu broker and every service as local processes.

Used by `feedrank up`, `make demo` and the end-to-end tests. Each service is a real
`python -m services.<name>` process on a loopback port; health is polled over grpc.health.v1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.channels import open_channel
from services.common.config import EndpointSettings, Settings
from services.common.credentials import ADMIN_TOKEN_FILE, ensure_token_file
from services.common.errors import ErrorKind, FeedrankError
from services.devstack.broker import DevKafka, free_ports
from services.kafka.connection import ensure_topics

SERVICES = ("reranker", "feedback", "trainer", "retriever")  # start order: dependencies first
WITH_GATEWAY = (*SERVICES, "gateway")  # the HTTP face comes last: it only calls the others
REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServiceProcess:
    name: str
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text()[-chars:]
        except FileNotFoundError:
            return ""


@dataclass
class LocalStack:
    data_dir: Path
    default_ports: bool = False
    env: dict[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = SERVICES
    durable_kafka: bool = False

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self.logs = self.data_dir / "logs"
        self.kafka: DevKafka | None = None
        self.processes: dict[str, ServiceProcess] = {}
        self.endpoints = Settings().endpoints
        self.admin_token = ""
        self.admin_token_created = False

    def start(self, timeout_s: float = 180.0) -> LocalStack:
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            self.kafka = DevKafka(self.data_dir / "kafka", durable=self.durable_kafka,
                                  port=9092 if self.default_ports else None).start()
            settings = Settings()
            ensure_topics(self.kafka.kafka_settings(settings.kafka))
            self.admin_token = self._admin_token(settings)
            ports = [50051, 50052, 50053, 50054, 8000] if self.default_ports else free_ports(5)
            by_name = dict(zip(("retriever", "reranker", "feedback", "trainer", "gateway"), ports))
            for name in self.services:
                self.processes[name] = ServiceProcess(name, by_name[name], self.logs / f"{name}.log")
            for name in self.services:
                self.start_service(name)
            for name in self.services:
                self.wait_healthy(name, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _admin_token(self, settings: Settings) -> str:
        """The token every service of the stack checks: configured, else the data dir's admin.token (made now
        if absent, so the stack never serves an open admin surface)."""
        configured = self.env.get("FEEDRANK_ENDPOINTS__ADMIN_TOKEN") or settings.endpoints.admin_token
        if configured:
            return configured
        self.admin_token_created = not self.admin_token_path.exists()
        return ensure_token_file(self.admin_token_path)

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / ADMIN_TOKEN_FILE

    def service_env(self) -> dict[str, str]:
        assert self.kafka is not None
        env = {
            **os.environ,
            "FEEDRANK_DATA_DIR": str(self.data_dir),
            "FEEDRANK_KAFKA__BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "FEEDRANK_ENDPOINTS__ADMIN_TOKEN": self.admin_token,
            **{f"FEEDRANK_ENDPOINTS__{p.name.upper()}": p.target for p in self.processes.values()},
            **self.env,
        }
        if not self.default_ports:
            env.setdefault("FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET", "0")
        return env

    def start_service(self, name: str) -> ServiceProcess:
        service = self.processes[name]
        argv = [sys.executable, "-m", f"services.{name}", "--port", str(service.port)]
        if name == "gateway":
            argv += ["--host", "127.0.0.1"]
        service.proc = subprocess.Popen(
            argv,
            cwd=REPO, env=self.service_env(), stdout=service.log_path.open("a"), stderr=subprocess.STDOUT,
        )
        return service

    def wait_healthy(self, name: str, timeout_s: float = 180.0) -> None:
        service = self.processes[name]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not service.alive():
                raise FeedrankError(ErrorKind.UNAVAILABLE, f"{name} exited:\n{service.tail()}")
            if _http_healthy(service.target) if name == "gateway" else _grpc_healthy(service.target, self.endpoints):
                return
            time.sleep(0.25)
        raise FeedrankError(ErrorKind.UNAVAILABLE, f"{name} not healthy after {timeout_s:.0f}s:\n{service.tail()}")

    def stop_service(self, name: str, timeout_s: float = 20.0) -> None:
        service = self.processes[name]
        if service.alive():
            service.proc.terminate()  # SIGTERM: the service drains in-flight calls
            try:
                service.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                service.proc.kill()
                service.proc.wait()

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop_service(name)
        if self.kafka is not None:
            self.kafka.stop()
            self.kafka = None

    def target(self, name: str) -> str:
        return self.processes[name].target

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _grpc_healthy(target: str, endpoints: EndpointSettings) -> bool:
    with open_channel(target, endpoints) as channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
        except grpc.RpcError:
            return False
    return status == health_pb2.HealthCheckResponse.SERVING


def _http_healthy(target: str) -> bool:
    try:
        return httpx.get(f"http://{target}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
