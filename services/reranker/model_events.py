"""Follow Kafka topic `kafka.topics.models`: a ModelPublished event makes the pool re-read aliases now.

Events are keyed by corpus id (`global` for the corpus-neutral scope); the refresh re-reads every
corpus's aliases, and swaps only what changed, so one corpus's promotion leaves the others' versions
in place.

The registry watch still runs; this only cuts the delay between a promotion and the swap. Every
replica must see every event, so the consumer joins no group and starts from the earliest offset
(replayed events are harmless: a refresh with unchanged aliases does nothing).
"""

from __future__ import annotations

import asyncio
import logging
import threading

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from services.common.config import KafkaSettings
from services.kafka.connection import consumer_config
from services.proto.feedrank.v1 import feedback_pb2
from services.reranker.versions import VersionPool

log = logging.getLogger(__name__)


class ModelEventFollower:
    def __init__(self, kafka: KafkaSettings, pool: VersionPool, loop: asyncio.AbstractEventLoop):
        self.kafka = kafka
        self.pool = pool
        self.loop = loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-events", daemon=True)
        self.events_seen = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except (KafkaError, OSError) as err:  # broker away: the registry watch covers us meanwhile
                log.debug("model events unavailable: %s", err)
                self._stop.wait(5)

    def _follow(self) -> None:
        consumer = KafkaConsumer(**consumer_config(self.kafka, group_id=None))
        try:
            topic = self.kafka.topics.models
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                self._stop.wait(5)
                return
            consumer.assign([TopicPartition(topic, p) for p in partitions])
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self._on_event(record.value)
        finally:
            consumer.close()

    def _on_event(self, value: bytes) -> None:
        event = feedback_pb2.ModelPublished()
        try:
            event.ParseFromString(value)
        except Exception as err:  # protobuf's DecodeError: skip what is not ours
            log.warning("undecodable model event skipped: %s", err)
            return
        self.events_seen += 1
        log.info("model published", extra={"fields": {"corpus": event.corpus_id or "global", "version": event.version_id,
                                                          "alias": event.alias}})
        asyncio.run_coroutine_threadsafe(self.pool.refresh(), self.loop)
