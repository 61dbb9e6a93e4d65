"""Fixtures for the feedback tests: a real Tansu broker and the feedback service as a subprocess."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.devstack.broker import DevKafka
from tests.conftest import free_port
from tests.feedback.helpers import SIGNING_KEY, FeedbackProcess, ServiceProcess


@pytest.fixture(scope="module")
def memory_kafka(tmp_path_factory) -> Iterator[DevKafka]:
    """A Tansu broker with memory storage, shared by a test module (each test uses its own group/topic)."""
    with DevKafka(tmp_path_factory.mktemp("kafka")) as dev:
        yield dev


def service_env(data_dir: Path, bootstrap: str, topic: str, **extra: str) -> dict[str, str]:
    return {
        "FEEDRANK_DATA_DIR": str(data_dir),
        "FEEDRANK_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "FEEDRANK_KAFKA__TOPICS__FEEDBACK": topic,
        "FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET": "0",
        "FEEDRANK_FEEDBACK__RETRY_INTERVAL_S": "0.5",
        "FEEDRANK_FEEDBACK__SIGNING_KEY": SIGNING_KEY,
        **extra,
    }


@pytest.fixture
def start_feedback(tmp_path) -> Iterator[Callable[..., FeedbackProcess]]:
    """Start the feedback service as a subprocess; every one started is stopped after the test."""
    started: list[FeedbackProcess] = []

    def start(env: dict[str, str], port: int | None = None) -> FeedbackProcess:
        proc = FeedbackProcess(port or free_port(), env, tmp_path / f"feedback-{len(started)}.log")
        started.append(proc)
        proc.start()
        return proc

    yield start
    for proc in started:
        proc.close_channel()
        proc.stop()


@pytest.fixture
def start_consumer(tmp_path) -> Iterator[Callable[[dict[str, str]], ServiceProcess]]:
    """Start `python -m services.events` as a subprocess; every one started is stopped after the test."""
    started: list[ServiceProcess] = []

    def start(env: dict[str, str]) -> ServiceProcess:
        proc = ServiceProcess("services.events", [], env, tmp_path / f"consumer-{len(started)}.log")
        started.append(proc)
        proc.start()
        return proc

    yield start
    for proc in started:
        proc.stop()
