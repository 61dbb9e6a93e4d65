"""Validation: each bad event is refused with INVALID_ARGUMENT naming its field and batch index."""

from __future__ import annotations

import pytest

from services.common.config import FeedbackSettings
from services.common.errors import ErrorKind, FeedrankError
from services.feedback.validation import validate_batch
from tests.feedback.helpers import make_event, now_ms

LIMITS = FeedbackSettings(max_events_per_request=10, max_event_bytes=2000)


def _batch_with(bad, index: int = 3):
    events = [make_event(f"ok-{i}") for i in range(5)]
    bad(events[index])
    return events


def _refused(events) -> FeedrankError:
    with pytest.raises(FeedrankError) as info:
        validate_batch(events, LIMITS, now_ms())
    assert info.value.kind is ErrorKind.INVALID_ARGUMENT
    return info.value


def test_valid_events_of_every_kind_become_keyed_records():
    events = [make_event("a", "impression", query_id="q-7"), make_event("b", "click"), make_event("c", "rating")]
    records = validate_batch(events, LIMITS, now_ms())
    assert [r.kind for r in records] == ["impression", "click", "rating"]
    assert records[0].key == b"q-7"
    assert records[2].value == events[2].SerializeToString(deterministic=True)


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda e: setattr(e, "event_id", ""), "events[3].event_id"),
    (lambda e: setattr(e, "query_id", ""), "events[3].query_id"),
    (lambda e: setattr(e, "session_id", ""), "events[3].session_id"),
    (lambda e: setattr(e, "event_id", "x" * 300), "events[3].event_id"),
    (lambda e: e.ClearField("click"), "events[3].kind"),
    (lambda e: setattr(e.click, "rank", 0), "events[3].click.rank"),
    (lambda e: setattr(e.click, "doc_id", ""), "events[3].click.doc_id"),
    (lambda e: setattr(e.click, "dwell_ms", -5), "events[3].click.dwell_ms"),
    (lambda e: setattr(e, "timestamp_ms", now_ms() + 3_600_000), "events[3].timestamp_ms"),
    (lambda e: setattr(e, "timestamp_ms", now_ms() // 1000), "events[3].timestamp_ms"),
    (lambda e: setattr(e, "source", "x" * 3000), "events[3]"),
])
def test_bad_click_is_named_by_index_and_field(mutate, field):
    err = _refused(_batch_with(mutate))
    assert err.field == field


@pytest.mark.parametrize("value", [0, 6, -1])
def test_rating_outside_1_to_5_is_refused(value):
    events = [make_event("r0", "rating"), make_event("r1", "rating", rating=value)]
    err = _refused(events)
    assert err.field == "events[1].rating.rating"
    assert "1-5" in err.message


def test_impression_result_rank_below_one_is_refused():
    events = [make_event("i0", "impression")]
    events[0].impression.results[2].rank = 0
    assert _refused(events).field == "events[0].impression.results[2].rank"


def test_impression_needs_corpus_and_results():
    event = make_event("i0", "impression")
    event.impression.corpus_id = ""
    assert _refused([event]).field == "events[0].impression.corpus_id"
    event = make_event("i1", "impression")
    del event.impression.results[:]
    assert _refused([event]).field == "events[0].impression.results"


def test_batch_size_limits():
    assert _refused([]).field == "events"
    assert _refused([make_event(f"e{i}") for i in range(11)]).field == "events"


def test_small_future_skew_is_tolerated():
    event = make_event("skew")
    event.timestamp_ms = now_ms() + 60_000  # a client clock a minute fast
    assert len(validate_batch([event], LIMITS, now_ms())) == 1
