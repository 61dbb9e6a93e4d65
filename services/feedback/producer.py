"""The Kafka side of the feedback service: a kafka-python producer behind a bounded asyncio wait.

kafka-python is thread-based: `send` can block on metadata and acks arrive on its I/O thread.
`send` here hands records to the producer from a worker thread and waits for the acks on the
event loop for at most `timeout_s`; whatever is not acknowledged by then is reported back so the
caller can spool it. A record that times out may still reach Kafka later (duplicates are dropped
downstream by event_id), but none is ever reported acknowledged without acks=all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from kafka import KafkaProducer
from kafka.errors import KafkaError

from services.common.config import KafkaSettings
from services.kafka.connection import ensure_topics, producer_config

log = logging.getLogger(__name__)


def _settle(future: asyncio.Future[bool], ok: bool) -> None:
    if not future.done():
        future.set_result(ok)


class KafkaSink:
    def __init__(self, kafka: KafkaSettings):
        self.kafka = kafka
        self.topic = kafka.topics.feedback
        self._producer: KafkaProducer | None = None
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kafka-send")
        self.healthy = False  # the producer exists and its last send was fully acknowledged

    @property
    def connected(self) -> bool:
        return self._producer is not None

    def _connect_blocking(self) -> KafkaProducer:
        # The service creates its topic (partitions from config) before producing to it, so the
        # broker's auto-create defaults never decide the partition count.
        ensure_topics(self.kafka, [self.topic], timeout_s=self.kafka.connect_timeout_ms / 1000)
        return KafkaProducer(**producer_config(self.kafka))

    async def connect(self) -> bool:
        """One attempt to reach the broker; True once a producer exists."""
        if self._producer is not None:
            return True
        loop = asyncio.get_running_loop()
        try:
            self._producer = await loop.run_in_executor(self._executor, self._connect_blocking)
        except Exception as err:  # KafkaError, or FeedrankError(UNAVAILABLE) from ensure_topics
            log.info("broker unreachable", extra={"fields": {"bootstrap": self.kafka.bootstrap_servers,
                                                             "error": str(err)}})
            return False
        self.healthy = True
        log.info("producer connected", extra={"fields": {"bootstrap": self.kafka.bootstrap_servers}})
        return True

    async def send(self, records: Sequence[tuple[bytes, bytes]], timeout_s: float) -> list[bool]:
        """Produce (key, value) records; per record, whether Kafka acknowledged it within `timeout_s`."""
        producer = self._producer
        if producer is None or not records:
            return [False] * len(records)
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[bool]] = [loop.create_future() for _ in records]

        def submit() -> None:
            for i, (key, value) in enumerate(records):
                try:
                    sent = producer.send(self.topic, key=key, value=value)
                except KafkaError as err:  # metadata unavailable within max_block_ms, buffer full
                    log.warning("send refused", extra={"fields": {"error": str(err)}})
                    for rest in waits[i:]:
                        loop.call_soon_threadsafe(_settle, rest, False)
                    return
                sent.add_callback(lambda _md, w=waits[i]: loop.call_soon_threadsafe(_settle, w, True))
                sent.add_errback(lambda _err, w=waits[i]: loop.call_soon_threadsafe(_settle, w, False))

        loop.run_in_executor(self._executor, submit)
        await asyncio.wait(waits, timeout=timeout_s)
        acked = [w.done() and w.result() for w in waits]
        self.healthy = all(acked)
        if not self.healthy:
            log.warning("kafka did not acknowledge in time", extra={"fields": {
                "records": len(records), "acked": sum(acked), "timeout_s": timeout_s}})
        return acked

    async def close(self, timeout_s: float = 2.0) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, partial(producer.close, timeout_s))
        self._executor.shutdown(wait=False, cancel_futures=True)
