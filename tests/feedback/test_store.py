"""The event store: duplicates dropped by event_id, corpus joins, stats."""

from __future__ import annotations

import pytest

from services.events.store import EventStore, Incoming
from tests.feedback.helpers import make_event


@pytest.fixture
def store(tmp_path):
    s = EventStore(tmp_path / "events.sqlite3")
    yield s
    s.close()


def test_duplicates_are_dropped_by_event_id(store):
    first = store.add([make_event("a"), make_event("b", "rating"), make_event("a")])
    assert (first.inserted, first.duplicates) == (2, 1)
    again = store.add([Incoming(make_event("b", "rating"), partition=1, offset=7)])
    assert (again.inserted, again.duplicates) == (0, 1)
    assert store.count() == 2 and store.event_ids() == {"a", "b"}


def test_clicks_join_the_corpus_of_their_impression_whatever_the_order(store):
    store.add([make_event("c1", "click", query_id="q1")])  # click arrives first
    assert store.get("c1").corpus_id is None
    store.add([make_event("i1", "impression", query_id="q1", corpus_id="scifact"),
               make_event("i2", "impression", query_id="q2", corpus_id="nfcorpus"),
               make_event("r2", "rating", query_id="q2", rating=1)])
    assert [e.event_id for e in store.clicks("scifact")] == ["c1"]
    assert [e.event_id for e in store.ratings("nfcorpus")] == ["r2"]
    assert list(store.clicks("nfcorpus")) == []
    assert [e.event_id for e in store.impressions()] == ["i1", "i2"]
    assert store.get("r2").event.rating.rating == 1


def test_stats_by_kind_corpus_and_day(store):
    store.add([make_event("i1", "impression", query_id="q1"), make_event("c1", "click", query_id="q1"),
               make_event("c2", "click", query_id="q1"), make_event("c3", "click", query_id="orphan")])
    rows = {(r.kind, r.corpus_id): r.count for r in store.stats()}
    assert rows == {("impression", "scifact"): 1, ("click", "scifact"): 2, ("click", None): 1}


def test_time_window_and_kind_filters(store):
    early, late = make_event("e", "click"), make_event("l", "click")
    early.timestamp_ms, late.timestamp_ms = 1_700_000_000_000, 1_700_000_100_000
    store.add([late, early])
    assert [e.event_id for e in store.iter_events(kind="click")] == ["e", "l"]
    assert [e.event_id for e in store.iter_events(since_ms=1_700_000_050_000)] == ["l"]
    with pytest.raises(ValueError):
        list(store.iter_events(kind="purchase"))


def test_store_survives_reopen_and_reads_read_only(tmp_path):
    path = tmp_path / "events.sqlite3"
    writer = EventStore(path)
    writer.add([make_event("x")])
    writer.close()
    reader = EventStore(path, read_only=True)
    assert reader.count("click") == 1
    reader.close()
    with pytest.raises(FileNotFoundError):
        EventStore(tmp_path / "missing.sqlite3", read_only=True)
