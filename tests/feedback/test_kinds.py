"""The event kinds table: it covers every case of the proto's oneof, and a kind with no row is refused."""

from __future__ import annotations

import pytest

from services.common.config import FeedbackSettings
from services.common.errors import ErrorKind, FeedrankError
from services.events.kinds import EVENT_KINDS, TEACHING_KINDS
from services.events.store import EventStore
from services.feedback.validation import validate_batch
from services.gateway import convert, schemas
from services.proto.feedrank.v1 import feedback_pb2
from tests.feedback.helpers import make_event, now_ms

LIMITS = FeedbackSettings()


def _invalid_on(field: str, call) -> FeedrankError:
    with pytest.raises(FeedrankError) as info:
        call()
    assert info.value.kind is ErrorKind.INVALID_ARGUMENT
    assert info.value.field == field
    return info.value


def test_the_table_has_a_row_for_every_case_of_the_proto_oneof():
    cases = [f.name for f in feedback_pb2.FeedbackEvent.DESCRIPTOR.oneofs_by_name["kind"].fields]
    assert sorted(EVENT_KINDS) == sorted(cases), "a FeedbackEvent kind needs a row in services/events/kinds.py"


@pytest.mark.parametrize("name", sorted(EVENT_KINDS))
def test_each_row_accepts_a_valid_event_and_names_its_document(name):
    event = make_event("e", name, doc_id="d-9")
    row = EVENT_KINDS[name]
    row.validate(getattr(event, name), f"events[0].{name}", LIMITS)
    # Teaching kinds are about one document (mining joins them to what was shown); impressions about none.
    assert row.doc_id(event) == ("d-9" if row.teaches else None)


def test_a_kind_with_no_row_is_refused_at_validation_and_at_the_store(tmp_path, monkeypatch):
    monkeypatch.delitem(EVENT_KINDS, "rating")  # as if the proto gained a case nobody gave a row
    err = _invalid_on("events[1].kind", lambda: validate_batch(
        [make_event("ok", "click"), make_event("new", "rating")], LIMITS, now_ms()))
    assert "rating" in err.message
    store = EventStore(tmp_path / "events.sqlite3")
    try:
        _invalid_on("kind", lambda: store.add([make_event("ok", "click"), make_event("new", "rating")]))
        assert store.count() == 0  # refused as a batch, never stored as something else or with doc_id NULL
    finally:
        store.close()


def test_an_event_with_no_kind_is_refused_at_validation_and_at_the_store(tmp_path):
    bare = feedback_pb2.FeedbackEvent(event_id="e", query_id="q", session_id="s", timestamp_ms=now_ms())
    _invalid_on("events[0].kind", lambda: validate_batch([bare], LIMITS, now_ms()))
    store = EventStore(tmp_path / "events.sqlite3")
    try:
        _invalid_on("kind", lambda: store.add([bare]))
    finally:
        store.close()


@pytest.mark.parametrize("name", TEACHING_KINDS)
def test_the_gateway_builds_every_kind_its_schema_accepts(name):
    body = schemas.TelemetryEvent(event_id="e", query_id="q", doc_id="d", type=name, rating=5, rank=1)
    assert convert.feedback_event(body).WhichOneof("kind") == name


def test_the_gateway_schema_refuses_a_kind_with_no_row():
    with pytest.raises(ValueError, match="type"):
        schemas.TelemetryEvent(event_id="e", query_id="q", doc_id="d", type="purchase")
