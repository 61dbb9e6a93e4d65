"""Builders of valid feedback events and handles on the real processes the tests start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.query_token import QueryIdSigner
from services.proto.feedrank.v1 import common_pb2, feedback_pb2, feedback_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
# The key the feedback services these tests start verify with (conftest.service_env sets it).
SIGNING_KEY = "test-signing-key"
SIGNER = QueryIdSigner(SIGNING_KEY.encode())
QUERY = "does aspirin help"
_signed: dict[str, str] = {}


def shown(doc_id: str = "d-1") -> list[str]:
    """The results make_event's impressions show, rank 1 first."""
    return [doc_id, f"{doc_id}-2", f"{doc_id}-3"]


def signed_query_id(label: str, corpus_id: str = "scifact", doc_id: str = "d-1") -> str:
    """A query_id as the retriever would issue for a search showing shown(doc_id); one per label."""
    key = f"{label}|{corpus_id}|{doc_id}"
    if key not in _signed:
        _signed[key] = SIGNER.sign(corpus_id, QUERY, shown(doc_id), time.time())
    return _signed[key]


def now_ms() -> int:
    return int(time.time() * 1000)


def make_event(event_id: str, kind: str = "click", query_id: str = "q-1", corpus_id: str = "scifact",
               doc_id: str = "d-1", rank: int = 1, rating: int = 5, session_id: str = "s-1") -> feedback_pb2.FeedbackEvent:
    event = feedback_pb2.FeedbackEvent(event_id=event_id, query_id=query_id, session_id=session_id,
                                       timestamp_ms=now_ms(), source="test")
    if kind == "impression":
        event.impression.CopyFrom(feedback_pb2.Impression(
            corpus_id=corpus_id, query=QUERY, model_version="v1",
            results=[feedback_pb2.ShownResult(doc_id=d, rank=r, rerank_score=1.0 / r,
                                              legs=common_pb2.LegScores(fused_rank=r))
                     for r, d in enumerate(shown(doc_id), 1)]))
    elif kind == "click":
        event.click.CopyFrom(feedback_pb2.Click(doc_id=doc_id, rank=rank, dwell_ms=1200))
    else:
        event.rating.CopyFrom(feedback_pb2.Rating(doc_id=doc_id, rating=rating, rank=rank))
    return event


def session_events(prefix: str, n: int) -> list[feedback_pb2.FeedbackEvent]:
    """n events: an impression per query followed by a click and a rating on it (signed query_ids), one
    session per query, as users searching once each (the feedback service caps events per session)."""
    out = []
    for i in range(n):
        label = f"{prefix}-q{i // 3}"
        kind = ("impression", "click", "rating")[i % 3]
        out.append(make_event(f"{prefix}-{i}", kind, query_id=signed_query_id(label), session_id=f"{label}-s"))
    return out


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class ServiceProcess:
    """`python -m <module>` as a child process with its own environment and log file."""

    def __init__(self, module: str, args: list[str], env: dict[str, str], log_path: Path):
        self.module, self.args, self.env, self.log_path = module, args, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **self.env},
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class FeedbackProcess(ServiceProcess):
    def __init__(self, port: int, env: dict[str, str], log_path: Path):
        super().__init__("services.feedback", ["--port", str(port)], env, log_path)
        self.port = port
        self.channel: grpc.Channel | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        super().start()
        self.close_channel()  # a restart gets a fresh channel
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        health = health_pb2_grpc.HealthStub(self.channel)

        def serving() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"feedback exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                    health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                return False

        wait_until(serving, timeout_s, "the feedback service to serve")

    @property
    def stub(self) -> feedback_pb2_grpc.FeedbackStub:
        assert self.channel is not None
        return feedback_pb2_grpc.FeedbackStub(self.channel)

    def info(self) -> feedback_pb2.FeedbackInfo:
        return self.stub.GetInfo(feedback_pb2.GetFeedbackInfoRequest(), timeout=5)

    def close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
