"""The consumer library: a Kafka consumer group that fills the event store.

Each poll's records are written to the store in one durable transaction, and only then are the
offsets committed. A crash between the two redelivers the batch, which the store drops by
event_id, so every event lands exactly once. A record that cannot be parsed is kept in the
store's `rejected` table and skipped (retrying cannot fix it).

    store = EventStore.open(settings)
    consumer = EventConsumer(settings.kafka, store)
    consumer.start()          # a background thread; or consumer.run(stop_event) in your own
    ...
    consumer.stop()
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable

from google.protobuf.message import DecodeError
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client import Counter, Gauge

from services.common.config import KafkaSettings
from services.events.kinds import EVENT_KINDS
from services.events.store import EventStore, Incoming
from services.kafka.connection import consumer_config
from services.proto.feedrank.v1 import feedback_pb2

log = logging.getLogger(__name__)

CONSUMED = Counter("feedrank_events_consumed_total", "FeedbackEvents read from Kafka (duplicates included)", ["kind"])
DUPLICATES = Counter("feedrank_events_duplicates_total", "Redelivered or resent events dropped by event_id")
REJECTED = Counter("feedrank_events_rejected_total", "Kafka records that were not a FeedbackEvent")
LAG = Gauge("feedrank_events_consumer_lag", "Records behind the partition's high watermark", ["partition"])


class EventConsumer:
    def __init__(self, kafka: KafkaSettings, store: EventStore, *, group_id: str | None = None,
                 topic: str | None = None, poll_timeout_ms: int = 500, max_records: int = 500,
                 after_poll: Callable[[list[feedback_pb2.FeedbackEvent]], None] | None = None):
        self.kafka = kafka
        self.store = store
        self.group_id = group_id or kafka.consumer_group
        self.topic = topic or kafka.topics.feedback
        self.poll_timeout_ms = poll_timeout_ms
        self.max_records = max_records
        # Called with each poll's parsed events once they are stored (an empty list when the poll was empty),
        # on the consumer's thread: the trainer's online-experiment ledger reads the stream this way.
        self.after_poll = after_poll
        self._consumer: KafkaConsumer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stored_total = 0

    def _ensure_consumer(self) -> KafkaConsumer | None:
        if self._consumer is None:
            try:
                consumer = KafkaConsumer(**consumer_config(self.kafka, self.group_id))
            except KafkaError as err:  # broker down: the caller's loop tries again
                log.info("consumer cannot reach the broker", extra={"fields": {"error": str(err)}})
                return None
            consumer.subscribe([self.topic])
            self._consumer = consumer
        return self._consumer

    def poll_once(self) -> int:
        """Poll one batch, store it, then commit its offsets. Returns the events newly stored."""
        consumer = self._ensure_consumer()
        if consumer is None:
            self._stop.wait(1.0)
            return 0
        batches = consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
        if not batches:
            self._update_lag(consumer)
            if self.after_poll is not None:
                self.after_poll([])
            return 0
        incoming: list[Incoming] = []
        commit: dict[TopicPartition, OffsetAndMetadata] = {}
        kinds: dict[str, int] = defaultdict(int)
        rejected: list[tuple[int, int, bytes | None, str]] = []
        for tp, records in batches.items():
            for record in records:
                try:
                    event = feedback_pb2.FeedbackEvent.FromString(record.value or b"")
                    kind = event.WhichOneof("kind")
                    if not event.event_id or kind not in EVENT_KINDS:
                        raise ValueError(f"no event_id or no known kind ({kind})")
                except (DecodeError, ValueError) as err:
                    rejected.append((tp.partition, record.offset, record.value, str(err)))
                    continue
                kinds[kind] += 1
                incoming.append(Incoming(event, tp.partition, record.offset))
            commit[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        try:
            for partition, offset, raw, reason in rejected:
                self.store.add_rejected(partition, offset, raw, reason)
            result = self.store.add(incoming)
        except sqlite3.Error as err:
            # Nothing of the batch is stored and nothing committed; rewind so the next poll reads
            # it again instead of moving past it.
            for tp, records in batches.items():
                consumer.seek(tp, records[0].offset)
            log.error("event store write failed; the batch will be read again",
                      extra={"fields": {"error": str(err)}})
            self._stop.wait(1.0)
            return 0
        for kind, n in kinds.items():
            CONSUMED.labels(kind).inc(n)
        REJECTED.inc(len(rejected))
        DUPLICATES.inc(result.duplicates)
        self.stored_total += result.inserted
        if self.after_poll is not None:
            self.after_poll([i.event for i in incoming])
        try:
            consumer.commit(commit)
        except KafkaError as err:
            # Typically a rebalance or the broker going away. The batch is stored: the next commit
            # covers it, or, if this consumer dies first, it is redelivered and dropped as duplicates.
            log.warning("offset commit failed",
                        extra={"fields": {"error": str(err)}})
        self._update_lag(consumer)
        return result.inserted

    def _update_lag(self, consumer: KafkaConsumer) -> None:
        # The high watermark comes with each fetch response (Tansu's ListOffsets 'latest' is
        # wrong, so end_offsets() is not used).
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = consumer.position(tp, timeout_ms=1000)
            except KafkaError:
                continue
            if position is not None:
                LAG.labels(str(tp.partition)).set(max(0, high - position))

    def run(self, stop: threading.Event | None = None) -> None:
        """Consume until `stop` (or `self.stop()`) is set."""
        stop = stop or self._stop
        while not stop.is_set() and not self._stop.is_set():
            try:
                self.poll_once()
            except KafkaError as err:
                log.warning("poll failed, retrying", extra={"fields": {"error": str(err)}})
                self._stop.wait(1.0)
        self.close()

    def start(self) -> threading.Thread:
        """Consume on a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="event-consumer", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except KafkaError as err:
                log.info("consumer close: %s", err)
