"""Faults with real processes: every acknowledged event reaches the event store exactly once.

The broker (Tansu on s3:// storage in SeaweedFS), then the object store, then the feedback
service, then the consumer are killed with SIGKILL while a client keeps streaming events, and
each is restarted. The client counts an event as acknowledged only when its call returned OK.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from services.common.config import KafkaSettings, KafkaTopics
from services.devstack.broker import DevKafka
from services.events.store import EventStore
from services.kafka.connection import ensure_topics
from services.proto.feedrank.v1 import feedback_pb2, feedback_pb2_grpc
from tests.conftest import free_port
from tests.feedback.conftest import service_env
from tests.feedback.helpers import session_events, wait_until

_CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000)]


class Sender(threading.Thread):
    """Streams batches of 12 events slowly (so a stream is in flight when a fault hits);
    a failed batch is retried with the same event_ids, as a real client would."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=_CHANNEL_OPTIONS)
        self.stub = feedback_pb2_grpc.FeedbackStub(self.channel)
        self.acked: set[str] = set()
        self.attempted: set[str] = set()
        self.spooled = 0
        self.failures = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _slowly(self, events):
        for event in events:
            time.sleep(0.01)
            yield event

    def run(self) -> None:
        batch = 0
        while not self._halt.is_set():
            events = session_events(f"f{batch}", 12)
            self.attempted.update(e.event_id for e in events)
            while not self._halt.is_set():
                try:
                    if batch % 2:
                        reply = self.stub.Record(feedback_pb2.RecordRequest(events=events), timeout=5)
                    else:
                        reply = self.stub.RecordStream(self._slowly(events), timeout=5)
                except grpc.RpcError:
                    self.failures += 1
                    time.sleep(0.2)
                    continue
                with self._lock:
                    self.acked.update(e.event_id for e in events)
                    self.spooled += reply.spooled
                break
            batch += 1

    def stop(self) -> None:
        """Idempotent: stop sending and close the channel."""
        self._halt.set()
        if self.is_alive():
            self.join(30)
        self.channel.close()


@pytest.fixture
def durable_kafka(tmp_path):
    with DevKafka(tmp_path / "kafka", durable=True) as dev:
        yield dev


def test_every_acknowledged_event_arrives_once_through_kill_9_of_each_part(
    durable_kafka, start_feedback, start_consumer, tmp_path
):
    topic = f"faults-{uuid.uuid4().hex[:8]}"
    bootstrap = durable_kafka.bootstrap_servers
    ensure_topics(KafkaSettings(bootstrap_servers=bootstrap, topics=KafkaTopics(feedback=topic)), [topic])
    data = tmp_path / "data"
    env = service_env(data, bootstrap, topic, FEEDRANK_KAFKA__CONSUMER_GROUP=f"g-{topic}")
    port = free_port()
    service = start_feedback(env, port=port)
    consumer = start_consumer(env)
    store_file = data / "events" / "events.sqlite3"
    wait_until(store_file.exists, 30, "the consumer to create the event store")
    store = EventStore(store_file, read_only=True)
    sender = Sender(port)

    def more_acked(n: int, what: str) -> None:
        target = sender.acked_count() + n
        wait_until(lambda: sender.acked_count() >= target, 60, f"{n} more acknowledged events {what}")

    def spool_drained() -> None:
        wait_until(lambda: service.info().spool_depth == 0, 90, "the spool to drain")

    def consumer_caught_up(n: int, what: str) -> None:
        wait_until(lambda: store.count() >= n, 60, f"the consumer to store {n} events {what}")

    try:
        sender.start()
        wait_until(lambda: service.info().broker_connected, 30, "the service to reach the broker")
        more_acked(48, "at the start")
        consumer_caught_up(48, "at the start")

        # 1. the broker, killed while a stream is half sent: the stream is still acknowledged.
        mid_stream = session_events("mid-stream", 12)
        broker_killed = threading.Event()

        def halves():
            yield from mid_stream[:6]
            broker_killed.wait(10)
            yield from mid_stream[6:]

        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(service.stub.RecordStream, halves(), timeout=20)
            time.sleep(0.3)  # the first half is on the wire
            durable_kafka.broker.kill()
            broker_killed.set()
            assert call.result().accepted == 12
        more_acked(36, "with the broker down")
        assert sender.spooled > 0
        durable_kafka.broker.start()
        spool_drained()
        more_acked(24, "after the broker returned")

        assert durable_kafka.s3 is not None
        durable_kafka.s3.kill()  # 2. the object store under the broker
        # Kafka cannot acknowledge now; a caller with a 1 s deadline still gets an answer in time.
        reply = service.stub.Record(feedback_pb2.RecordRequest(events=session_events("deadline", 3)), timeout=1.0)
        assert reply.accepted == 3
        more_acked(36, "with the object store down")
        durable_kafka.s3.start()
        spool_drained()

        service.kill()  # 3. the feedback service (its spool may hold events)
        service.start()
        more_acked(36, "after the feedback service restarted")

        consumer_caught_up(sender.acked_count() - 12, "before it is killed")
        consumer.kill()  # 4. the consumer, while it is consuming
        more_acked(24, "with the consumer down")
        consumer.start()
        more_acked(24, "at the end")
        sender.stop()

        acked = set(sender.acked) | {f"deadline-{i}" for i in range(3)} | {e.event_id for e in mid_stream}
        spool_drained()
        wait_until(lambda: acked <= store.event_ids(), 120, "every acknowledged event in the store")
        stored = store.event_ids()
        assert stored <= sender.attempted | acked, "the store holds events nobody sent"
        assert store.count() == len(stored)  # one row per event_id: nothing doubled
        assert sender.failures > 0, "the faults never reached the client; the test proved nothing"
    finally:
        sender.stop()
        store.close()
