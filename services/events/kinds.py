"""The event kinds: one row per case of the FeedbackEvent `kind` oneof, read by everything that switches on it.

Validation (feedback), the event store and its counters, the trainer's "does it teach" decisions, and the
gateway's and MCP's feedback schemas all look a kind up here, so a new kind is a proto case plus a row.
A kind with no row is an error (INVALID_ARGUMENT naming the field), never silently treated as another kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from services.common.config import FeedbackSettings
from services.common.errors import invalid
from services.proto.feedrank.v1 import feedback_pb2


def require_id(value: str, field: str, limit: int) -> None:
    if not value:
        raise invalid(field, "is required")
    if len(value) > limit:
        raise invalid(field, f"is {len(value)} characters, more than {limit}")


@dataclass(frozen=True)
class EventKind:
    name: str  # the oneof case, also the `kind` column of the store and the label of the counters
    doc_id: Callable[[feedback_pb2.FeedbackEvent], str | None]  # the one document it is about, if any
    teaches: bool  # feedback a user gave about a document (mining learns from it), not a record of what was shown
    validate: Callable[[Message, str, FeedbackSettings], None]  # (the oneof's message, its field path, limits)


def _validate_impression(imp: feedback_pb2.Impression, at: str, limits: FeedbackSettings) -> None:
    require_id(imp.corpus_id, f"{at}.corpus_id", limits.max_id_chars)
    if not imp.results:
        raise invalid(f"{at}.results", "at least one shown result is required")
    for j, shown in enumerate(imp.results):
        require_id(shown.doc_id, f"{at}.results[{j}].doc_id", limits.max_id_chars)
        if shown.rank < 1:
            raise invalid(f"{at}.results[{j}].rank", "must be >= 1")


def _validate_click(click: feedback_pb2.Click, at: str, limits: FeedbackSettings) -> None:
    require_id(click.doc_id, f"{at}.doc_id", limits.max_id_chars)
    if click.rank < 1:
        raise invalid(f"{at}.rank", "must be >= 1")
    if click.dwell_ms < 0:
        raise invalid(f"{at}.dwell_ms", "must be >= 0")


def _validate_rating(rating: feedback_pb2.Rating, at: str, limits: FeedbackSettings) -> None:
    require_id(rating.doc_id, f"{at}.doc_id", limits.max_id_chars)
    if not 1 <= rating.rating <= 5:
        raise invalid(f"{at}.rating", "must be 1-5 (thumbs up = 5, thumbs down = 1)")
    if rating.rank < 0:
        raise invalid(f"{at}.rank", "must be >= 1, or 0 when unknown")


EVENT_KINDS: dict[str, EventKind] = {k.name: k for k in (
    EventKind("impression", lambda e: None, teaches=False, validate=_validate_impression),
    EventKind("click", lambda e: e.click.doc_id, teaches=True, validate=_validate_click),
    EventKind("rating", lambda e: e.rating.doc_id, teaches=True, validate=_validate_rating),
)}
# The kinds clients report about one result (the gateway's `type`, the MCP tool's `kind`); impressions are
# recorded by the search path itself.
TEACHING_KINDS: tuple[str, ...] = tuple(name for name, k in EVENT_KINDS.items() if k.teaches)


def kind_of(event: feedback_pb2.FeedbackEvent, field: str = "kind") -> EventKind:
    """The row of the event's kind; INVALID_ARGUMENT on `field` when it has none or one with no row."""
    name = event.WhichOneof("kind")
    if name is None:
        raise invalid(field, f"one of {', '.join(EVENT_KINDS)} is required")
    return lookup(name, field)


def lookup(name: str, field: str = "kind") -> EventKind:
    """The row named `name`; INVALID_ARGUMENT on `field` for a kind with no row."""
    row = EVENT_KINDS.get(name)
    if row is None:
        raise invalid(field, f"unknown event kind {name!r}; known: {', '.join(EVENT_KINDS)}")
    return row
