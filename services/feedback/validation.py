"""Checks on incoming feedback events. A bad event raises INVALID_ARGUMENT naming its field and index.

Validation happens before anything is recorded, so a batch with one bad event records none of it.
A valid event becomes a Kafka record: key = query_id, value = the serialized FeedbackEvent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.common.config import FeedbackSettings
from services.common.errors import invalid
from services.events.kinds import kind_of, require_id
from services.proto.feedrank.v1 import feedback_pb2

# Earlier than 2001-09-09 in milliseconds is almost surely seconds (or zero) sent as milliseconds.
_MIN_TIMESTAMP_MS = 1_000_000_000_000


@dataclass(frozen=True)
class ValidRecord:
    key: bytes
    value: bytes
    kind: str


def validate_event(
    event: feedback_pb2.FeedbackEvent, index: int, limits: FeedbackSettings, now_ms: int
) -> ValidRecord:
    """Check one event (at position `index` of its batch or stream) and serialize it."""
    at = f"events[{index}]"
    size = event.ByteSize()
    if size > limits.max_event_bytes:
        raise invalid(at, f"is {size} bytes, more than max_event_bytes {limits.max_event_bytes}")
    ids = limits.max_id_chars
    require_id(event.event_id, f"{at}.event_id", ids)
    require_id(event.query_id, f"{at}.query_id", limits.max_query_id_chars)
    require_id(event.session_id, f"{at}.session_id", ids)
    if event.timestamp_ms < _MIN_TIMESTAMP_MS:
        raise invalid(f"{at}.timestamp_ms", "must be unix epoch milliseconds")
    ahead_s = (event.timestamp_ms - now_ms) / 1000.0
    if ahead_s > limits.max_future_skew_s:
        raise invalid(f"{at}.timestamp_ms", f"is {ahead_s:.0f}s in the future (limit {limits.max_future_skew_s:.0f}s)")
    kind = kind_of(event, f"{at}.kind")
    kind.validate(getattr(event, kind.name), f"{at}.{kind.name}", limits)
    return ValidRecord(event.query_id.encode(), event.SerializeToString(deterministic=True), kind.name)


def validate_batch(
    events: Sequence[feedback_pb2.FeedbackEvent], limits: FeedbackSettings, now_ms: int
) -> list[ValidRecord]:
    if not events:
        raise invalid("events", "at least one event is required")
    if len(events) > limits.max_events_per_request:
        raise invalid("events", f"{len(events)} events, more than max_events_per_request {limits.max_events_per_request}")
    return [validate_event(event, i, limits, now_ms) for i, event in enumerate(events)]
