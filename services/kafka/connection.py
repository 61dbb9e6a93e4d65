"""Kafka client settings built from `KafkaSettings`, and topic creation.

Every kafka-python client feedrank makes takes its config from here, so the workarounds for the
development broker's gaps (Tansu) live in one place. Each is harmless on Apache Kafka.
"""

from __future__ import annotations

import logging
import threading
import time
from types import EllipsisType
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from services.common.config import KafkaSettings
from services.common.errors import unavailable

log = logging.getLogger(__name__)


def _servers(kafka: KafkaSettings) -> list[str]:
    return [s.strip() for s in kafka.bootstrap_servers.split(",") if s.strip()]


def security_config(kafka: KafkaSettings) -> dict[str, Any]:
    """How every client authenticates and encrypts (kafka.security_protocol and its companions)."""
    config: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.security_protocol.startswith("SASL_"):
        config.update(sasl_mechanism=kafka.sasl_mechanism, sasl_plain_username=kafka.sasl_username,
                      sasl_plain_password=kafka.sasl_password)
    if kafka.security_protocol.endswith("SSL") and kafka.ssl_cafile:
        config["ssl_cafile"] = kafka.ssl_cafile
    return config


def producer_config(kafka: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """KafkaProducer keyword arguments: acks=all, retries, no idempotence."""
    config: dict[str, Any] = {
        "bootstrap_servers": _servers(kafka),
        "acks": "all",
        # Tansu's idempotent producer breaks for good after one storage error (its producer-id
        # state is lost), so idempotence stays off; resends can then duplicate a record, which
        # the event store drops by event_id.
        "enable_idempotence": False,
        "retries": kafka.producer_retries,
        # Without idempotence, more than one request in flight lets a retried batch overtake a
        # later one; one in flight keeps each partition in send order (the spool drains in order).
        "max_in_flight_requests_per_connection": 1,
        "linger_ms": kafka.linger_ms,
        "request_timeout_ms": kafka.request_timeout_ms,
        "delivery_timeout_ms": max(kafka.delivery_timeout_ms, kafka.request_timeout_ms + kafka.linger_ms),
        # send() blocks while metadata is unknown; callers bound their wait themselves, this
        # only caps how long a sending thread can be held.
        "max_block_ms": kafka.connect_timeout_ms,
        "bootstrap_timeout_ms": kafka.connect_timeout_ms,
        **security_config(kafka),
    }
    config.update(overrides)
    return config


def consumer_config(
    kafka: KafkaSettings, group_id: str | None | EllipsisType = ..., **overrides: Any
) -> dict[str, Any]:
    """KafkaConsumer keyword arguments; offsets are committed by hand.

    group_id: omitted = `kafka.consumer_group` (the trainer's event store); a name = that group;
    None = no group (a reader that assigns partitions itself and commits nothing).
    """
    config: dict[str, Any] = {
        "bootstrap_servers": _servers(kafka),
        "group_id": kafka.consumer_group if group_id is ... else group_id,
        # Tansu answers ListOffsets 'latest' wrongly, so a new group starts from 'earliest';
        # committed offsets work, so a known group resumes where it left off.
        "auto_offset_reset": "earliest",
        # Offsets are committed only after the event store has the records.
        "enable_auto_commit": False,
        # Tansu's group join waits about session_timeout/2, so a short session keeps joins quick.
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": kafka.heartbeat_interval_ms,
        "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
        "request_timeout_ms": max(kafka.request_timeout_ms, kafka.session_timeout_ms + 5000),
        # Tansu's read_committed is not atomic; feedrank writes no transactions, so read everything.
        "isolation_level": "read_uncommitted",
        "bootstrap_timeout_ms": kafka.connect_timeout_ms,
        **security_config(kafka),
    }
    config.update(overrides)
    return config


def admin_config(kafka: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap_servers": _servers(kafka),
        "request_timeout_ms": kafka.request_timeout_ms,
        "bootstrap_timeout_ms": kafka.connect_timeout_ms,
        **security_config(kafka),
    }
    config.update(overrides)
    return config


def ensure_topics(kafka: KafkaSettings, names: list[str] | None = None, timeout_s: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet (default: every topic in `kafka.topics`).

    Returns the names it created. Retries until `timeout_s` while the broker is unreachable,
    then raises UNAVAILABLE.
    """
    wanted = names if names is not None else [kafka.topics.feedback, kafka.topics.models]
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(**admin_config(kafka))
        except KafkaError as err:
            last = err
            time.sleep(0.5)
            continue
        try:
            existing = set(admin.list_topics())
            created = []
            for name in wanted:
                if name in existing:
                    continue
                try:
                    admin.create_topics([NewTopic(name, kafka.partitions, kafka.replication_factor)])
                    created.append(name)
                except TopicAlreadyExistsError:
                    pass  # another process created it between list and create
            if created:
                log.info("created topics", extra={"fields": {"topics": created, "partitions": kafka.partitions}})
            return created
        except KafkaError as err:
            last = err
            time.sleep(0.5)
        finally:
            admin.close()
    raise unavailable(f"cannot create topics {wanted} on {kafka.bootstrap_servers}: {last}")


class TopicPublisher:
    """Sends protobuf messages to one topic through a producer made on first use (creating the topic then);
    any Kafka failure is UNAVAILABLE naming the topic, so a broker that is down costs the event, never the caller's
    decision."""

    def __init__(self, kafka: KafkaSettings, topic: str):
        self.kafka = kafka
        self.topic = topic
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def send(self, key: str, message: Any, timeout_s: float = 15.0) -> None:
        with self._lock:
            try:
                if self._producer is None:
                    ensure_topics(self.kafka, [self.topic], timeout_s=timeout_s)
                    self._producer = KafkaProducer(**producer_config(self.kafka))
                self._producer.send(self.topic, key=key.encode(), value=message.SerializeToString()).get(
                    timeout=timeout_s)
            except KafkaError as err:
                raise unavailable(f"cannot publish to {self.topic}: {err}") from err

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None
