"""The feedback service's core: validate, hand to Kafka within the caller's deadline, else spool.

An event is acknowledged only once it is durable: acknowledged by Kafka with acks=all, or
fsynced to the spool. While the broker is known to be down, events go straight to the spool so
callers are not held for `send_timeout_s` each. A background task reconnects to the broker and
drains the spool in order, removing entries only after Kafka has acknowledged them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from services import __version__ as build_version
from services.common.config import Settings
from services.common.errors import FeedrankError, invalid, unavailable
from services.common.query_token import QueryIdSigner, signing_key
from services.feedback.integrity import FeedbackGuard, Refused, count_rejection
from services.feedback.producer import KafkaSink
from services.feedback.spool import Spool
from services.feedback.validation import ValidRecord, validate_batch, validate_event
from services.proto.feedrank.v1 import feedback_pb2

log = logging.getLogger(__name__)

EVENTS_ACCEPTED = Counter(
    "feedrank_feedback_events_accepted_total", "Events acknowledged to callers", ["kind", "path"]
)
BATCHES_REJECTED = Counter("feedrank_feedback_batches_rejected_total", "Record calls refused by validation")
SPOOL_DEPTH = Gauge("feedrank_feedback_spool_depth", "Events in the local spool waiting for Kafka")
SPOOL_DRAINED = Counter("feedrank_feedback_spool_drained_total", "Spooled events Kafka has since acknowledged")
BROKER_CONNECTED = Gauge("feedrank_feedback_broker_connected", "1 while the last send to Kafka was acknowledged")

# Time kept back from the caller's deadline for the spool's write + fsync, should Kafka not answer.
SPOOL_RESERVE_S = 0.25


@dataclass(frozen=True)
class RecordResult:
    accepted: int
    spooled: int


class FeedbackCore:
    def __init__(self, settings: Settings, sink: KafkaSink, spool: Spool):
        self.settings = settings
        self.limits = settings.feedback
        self.guard = FeedbackGuard(
            QueryIdSigner(signing_key(settings.feedback.signing_key, settings.data_path)), settings.feedback
        )
        self.sink = sink
        self.spool = spool
        self.accepted_total = 0
        self._wake = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        SPOOL_DEPTH.set(spool.depth)

    async def start(self) -> None:
        # The drainer connects to the broker; until it has, events are spooled, so the service
        # serves at once even with the broker down.
        self._drainer = asyncio.create_task(self._drain_loop(), name="spool-drainer")

    async def close(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        await self.sink.close()
        self.spool.close()

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    async def record(self, events: Sequence[feedback_pb2.FeedbackEvent], time_left_s: float | None) -> RecordResult:
        """Record one batch: all of it or, if any event is invalid, none of it."""
        try:
            records = validate_batch(events, self.limits, self._now_ms())
            for i, event in enumerate(events):
                self.guard.check(event, i)
            undo = self.guard.admit(events)
        except FeedrankError as err:
            self._rejected(err)
            raise
        return await self._deliver(records, time_left_s, undo)

    async def record_stream(
        self, events: AsyncIterator[feedback_pb2.FeedbackEvent], time_left: Callable[[], float | None]
    ) -> RecordResult:
        """Record a client stream as one batch, validating each event as it arrives."""
        records: list[ValidRecord] = []
        checked: list[feedback_pb2.FeedbackEvent] = []
        held = 0  # bytes of the stream held in memory until it ends
        try:
            async for event in events:
                if len(records) >= self.limits.max_stream_events:
                    raise invalid("events", f"more than max_stream_events {self.limits.max_stream_events}")
                record = validate_event(event, len(records), self.limits, self._now_ms())
                held += len(record.value)
                if held > self.limits.max_stream_bytes:
                    raise Refused("stream_bytes", f"events[{len(records)}]", (
                        f"the stream passes feedback.max_stream_bytes {self.limits.max_stream_bytes} here; send it "
                        "as several streams (nothing of this one was recorded)"))
                self.guard.check(event, len(records))
                records.append(record)
                checked.append(event)
            if not records:
                raise invalid("events", "at least one event is required")
            undo = self.guard.admit(checked)
        except FeedrankError as err:
            self._rejected(err)
            raise
        return await self._deliver(records, time_left(), undo)

    @staticmethod
    def _rejected(err: FeedrankError) -> None:
        BATCHES_REJECTED.inc()
        count_rejection(err)

    async def _deliver(
        self, records: list[ValidRecord], time_left_s: float | None, undo: Callable[[], None]
    ) -> RecordResult:
        try:
            return await self._send_or_spool(records, time_left_s)
        except BaseException:
            undo()  # not recorded: the caller's retry must not find its caps spent
            raise

    async def _send_or_spool(self, records: list[ValidRecord], time_left_s: float | None) -> RecordResult:
        budget = self.limits.send_timeout_s
        if time_left_s is not None:
            budget = min(budget, time_left_s - SPOOL_RESERVE_S)
        acked = [False] * len(records)
        if self.sink.healthy and budget > 0:
            acked = await self.sink.send([(r.key, r.value) for r in records], budget)
        rest = [r for r, ok in zip(records, acked, strict=True) if not ok]
        if rest:
            try:
                await asyncio.to_thread(self.spool.append, [(r.key, r.value) for r in rest])
            except OSError as err:
                # Neither Kafka nor the disk took them: the caller must retry (same event_ids).
                raise unavailable(f"kafka did not acknowledge and the spool failed: {err}") from err
            SPOOL_DEPTH.set(self.spool.depth)
            self._wake.set()
        BROKER_CONNECTED.set(1 if self.sink.healthy else 0)
        for r, ok in zip(records, acked, strict=True):
            EVENTS_ACCEPTED.labels(r.kind, "kafka" if ok else "spool").inc()
        self.accepted_total += len(records)
        return RecordResult(accepted=len(records), spooled=len(rest))

    async def _drain_loop(self) -> None:
        retry = self.limits.retry_interval_s
        while True:
            try:
                if not self.sink.connected and not await self.sink.connect():
                    BROKER_CONNECTED.set(0)
                    await asyncio.sleep(retry)
                    continue
                if self.spool.depth == 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), retry)
                    continue
                await self.drain_once()
                BROKER_CONNECTED.set(1 if self.sink.healthy else 0)
                if not self.sink.healthy:
                    await asyncio.sleep(retry)
            except asyncio.CancelledError:
                raise
            except Exception:  # the drainer must outlive any one failure; the spool keeps the events
                log.exception("spool drain round failed")
                await asyncio.sleep(retry)

    async def drain_once(self) -> int:
        """Send the oldest spooled events; drop from the spool the prefix Kafka acknowledged."""
        # While the broker is failing, probe with one event: every unacknowledged send stays queued
        # in the producer (retried until delivery_timeout_ms), so full batches would pile up copies.
        size = self.limits.drain_batch if self.sink.healthy else 1
        entries = await asyncio.to_thread(self.spool.peek, size)
        if not entries:
            return 0
        acked = await self.sink.send([(e.key, e.value) for e in entries], self.limits.send_timeout_s)
        done = 0
        while done < len(acked) and acked[done]:
            done += 1
        # Only a prefix is removed so the spool stays in order; acknowledged records after a gap
        # are sent again next round and deduplicated downstream by event_id.
        await asyncio.to_thread(self.spool.commit, entries[:done])
        SPOOL_DEPTH.set(self.spool.depth)
        SPOOL_DRAINED.inc(done)
        if done:
            log.info("spool drained", extra={"fields": {"sent": done, "left": self.spool.depth}})
        return done

    def info(self) -> feedback_pb2.FeedbackInfo:
        return feedback_pb2.FeedbackInfo(
            build_version=build_version, topic=self.sink.topic, broker_connected=self.sink.healthy,
            spool_depth=self.spool.depth, events_accepted=self.accepted_total,
        )
