"""Events in through gRPC, out in the trainer's event store exactly once (real Tansu broker)."""

from __future__ import annotations

import sqlite3
import uuid

import grpc
import httpx
import pytest

from services.common.config import KafkaSettings, KafkaTopics
from services.events.consumer import EventConsumer
from services.events.store import EventStore
from kafka import KafkaProducer
from prometheus_client import REGISTRY

from services.devstack.broker import TansuBroker
from services.kafka.connection import ensure_topics, producer_config
from services.proto.feedrank.v1 import feedback_pb2
from tests.conftest import free_port
from tests.feedback.conftest import service_env
from tests.feedback.helpers import make_event, session_events, signed_query_id, wait_until


def _kafka(bootstrap: str, topic: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap, topics=KafkaTopics(feedback=topic),
                         consumer_group=f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def topic() -> str:
    return f"feedback-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def consume(tmp_path):
    """An in-process EventConsumer thread on its own store; stopped after the test."""
    consumers = []

    def start(kafka: KafkaSettings) -> EventStore:
        store = EventStore(tmp_path / "events" / "events.sqlite3")
        consumer = EventConsumer(kafka, store)
        consumer.start()
        consumers.append((consumer, store))
        return store

    yield start
    for consumer, store in consumers:
        consumer.stop()
        store.close()


def test_round_trip_exactly_once(memory_kafka, start_feedback, consume, topic, tmp_path):
    bootstrap = memory_kafka.bootstrap_servers
    service = start_feedback(service_env(tmp_path / "data", bootstrap, topic))
    first, second, streamed = session_events("a", 30), session_events("b", 30), session_events("s", 40)

    wait_until(lambda: service.info().broker_connected, 30, "the service to reach the broker")
    reply = service.stub.Record(feedback_pb2.RecordRequest(events=first), timeout=10)
    assert (reply.accepted, reply.spooled) == (30, 0)
    service.stub.Record(feedback_pb2.RecordRequest(events=second), timeout=10)
    # A client that did not see its reply retries with the same event_ids: stored once.
    service.stub.Record(feedback_pb2.RecordRequest(events=first[:10]), timeout=10)
    reply = service.stub.RecordStream(iter(streamed), timeout=10)
    assert reply.accepted == 40

    bad = session_events("bad", 6)
    bad[3].rating.CopyFrom(feedback_pb2.Rating(doc_id="d", rating=9))
    with pytest.raises(grpc.RpcError) as refused:
        service.stub.Record(feedback_pb2.RecordRequest(events=bad), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events[3].rating.rating" in refused.value.details()
    with pytest.raises(grpc.RpcError) as refused_stream:
        service.stub.RecordStream(iter([make_event("bad-stream-0", query_id=signed_query_id("bad-stream")),
                                          make_event("bad-stream-1", query_id=signed_query_id("bad-stream"), rank=0)]), timeout=10)
    assert "events[1].click.rank" in refused_stream.value.details()

    store = consume(_kafka(bootstrap, topic))
    expected = {e.event_id for e in first + second + streamed}
    wait_until(lambda: store.count() >= len(expected), 60, "all events in the store")
    # A late marker proves the consumer is past everything sent before it; nothing from the
    # refused batches may have arrived.
    service.stub.Record(feedback_pb2.RecordRequest(events=[make_event("marker", query_id=signed_query_id("marker"))]), timeout=10)
    wait_until(lambda: store.get("marker") is not None, 30, "the marker event")
    assert store.event_ids() == expected | {"marker"}
    assert store.count() == len(expected) + 1
    assert {e.corpus_id for e in store.clicks() if e.event_id != "marker"} == {"scifact"}
    info = service.info()
    assert info.events_accepted == 30 + 30 + 10 + 40 + 1 and info.spool_depth == 0 and info.topic == topic


def test_broker_down_at_start_spools_then_drains(start_feedback, consume, topic, tmp_path):
    broker_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    env = service_env(tmp_path / "data", bootstrap, topic,
                      FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET=str(metrics_port - grpc_port))
    service = start_feedback(env, port=grpc_port)
    events = session_events("down", 45)
    for chunk in (events[:15], events[15:30]):
        reply = service.stub.Record(feedback_pb2.RecordRequest(events=chunk), timeout=5)
        assert (reply.accepted, reply.spooled) == (15, 15)
    assert service.stub.RecordStream(iter(events[30:]), timeout=5).spooled == 15
    info = service.info()
    assert info.spool_depth == 45 and not info.broker_connected
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert "feedrank_feedback_spool_depth 45.0" in metrics
    assert 'feedrank_feedback_events_accepted_total{kind="click",path="spool"} 15.0' in metrics

    broker = TansuBroker(tmp_path / "late-broker", port=broker_port)
    broker.start()
    try:
        wait_until(lambda: service.info().spool_depth == 0, 60, "the spool to drain")
        assert service.info().broker_connected
        assert not (tmp_path / "data" / "spool" / "feedback.spool").read_bytes()
        store = consume(_kafka(bootstrap, topic))
        wait_until(lambda: store.count() >= 45, 60, "the drained events in the store")
        assert store.event_ids() == {e.event_id for e in events}
        # Drained in spool order: within each partition, offsets follow the order of sending.
        order = {e.event_id: i for i, e in enumerate(events)}
        rows = store._db.execute("SELECT event_id, kafka_partition, kafka_offset FROM events").fetchall()
        by_partition: dict[int, list[tuple[int, str]]] = {}
        for event_id, partition, offset in rows:
            by_partition.setdefault(partition, []).append((offset, event_id))
        for pairs in by_partition.values():
            sent_order = [order[event_id] for _, event_id in sorted(pairs)]
            assert sent_order == sorted(sent_order)
    finally:
        broker.stop()


class FlakyStore(EventStore):
    """An event store whose first write fails, as a full or broken disk would."""

    failures = 0

    def add(self, items):
        if FlakyStore.failures == 0:
            FlakyStore.failures += 1
            raise sqlite3.OperationalError("disk I/O error")
        return super().add(items)


def test_consumer_rewinds_after_a_failed_store_write_and_keeps_bad_records_aside(memory_kafka, topic, tmp_path):
    kafka = _kafka(memory_kafka.bootstrap_servers, topic)
    ensure_topics(kafka, [topic])
    events = session_events("direct", 20)
    producer = KafkaProducer(**producer_config(kafka))
    for event in events:
        producer.send(topic, key=event.query_id.encode(), value=event.SerializeToString())
    producer.send(topic, key=b"junk", value=b"\xff\xfe not a FeedbackEvent")
    producer.flush(10)
    producer.close()

    store = FlakyStore(tmp_path / "events.sqlite3")
    consumer = EventConsumer(kafka, store)
    consumer.start()
    try:
        wait_until(lambda: store.count() >= 20 and store.rejected_count() >= 1, 60, "the events after a rewind")
    finally:
        consumer.stop()
    assert FlakyStore.failures == 1
    lags = [REGISTRY.get_sample_value("feedrank_events_consumer_lag", {"partition": str(i)}) for i in range(3)]
    assert 0.0 in lags  # lag is exported per partition, from the fetch high watermark
    assert store.event_ids() == {e.event_id for e in events}
    assert store.rejected_count() == 1
    store.close()


def test_a_full_spool_refuses_with_resource_exhausted_and_keeps_what_it_took(start_feedback, topic, tmp_path):
    bootstrap = f"127.0.0.1:{free_port()}"  # no broker: everything goes to the spool
    service = start_feedback(service_env(tmp_path / "data", bootstrap, topic, FEEDRANK_FEEDBACK__SPOOL_MAX_BYTES="3000"))
    events = session_events("full", 60)
    taken = 0
    with pytest.raises(grpc.RpcError) as refused:
        for start in range(0, len(events), 3):
            service.stub.Record(feedback_pb2.RecordRequest(events=events[start:start + 3]), timeout=5)
            taken += 3
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "spool is full" in refused.value.details() and "spool_max_bytes" in refused.value.details()
    assert 0 < taken < len(events)
    assert service.info().spool_depth == taken  # every acknowledged event is still there
    assert (tmp_path / "data" / "spool" / "feedback.spool").stat().st_size <= 3000


def test_a_flipped_byte_in_the_first_of_five_acknowledged_events_loses_only_that_event(start_feedback, topic, tmp_path):
    grpc_port, metrics_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{free_port()}"  # no broker: the five events are acknowledged from the spool
    env = service_env(tmp_path / "data", bootstrap, topic,
                      FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET=str(metrics_port - grpc_port))
    service = start_feedback(env, port=grpc_port)
    events = session_events("flip", 5)
    for event in events:
        assert service.stub.Record(feedback_pb2.RecordRequest(events=[event]), timeout=5).spooled == 1
    service.close_channel()
    service.stop()
    log = tmp_path / "data" / "spool" / "feedback.spool"
    data = bytearray(log.read_bytes())
    data[20] ^= 0x01  # inside record 0's payload
    log.write_bytes(bytes(data))

    service.start()
    assert service.info().spool_depth == 4
    (quarantined,) = (tmp_path / "data" / "spool" / "quarantine").iterdir()
    assert quarantined.name.endswith(".at-0.bad")
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert "feedrank_feedback_spool_quarantined_total 1.0" in metrics
    assert "quarantined" in service.log_tail(60) and '"position": 0' in service.log_tail(60)
