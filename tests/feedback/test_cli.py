"""`feedrank events stats` reads the event store offline."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from services.cli import app
from services.common.config import get_settings
from services.events.store import EventStore
from tests.feedback.helpers import make_event


def test_events_stats_counts_by_kind_and_corpus(data_dir):
    store = EventStore(data_dir / "events" / "events.sqlite3")
    store.add([make_event("i", "impression", query_id="q"), make_event("c", "click", query_id="q"),
               make_event("r", "rating", query_id="q")])
    store.close()
    result = CliRunner().invoke(app, ["events", "stats", "--json", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["totals"] == {"impression": 1, "click": 1, "rating": 1}
    assert {row["corpus_id"] for row in report["rows"]} == {"scifact"}
    get_settings.cache_clear()  # settings are cached per process; read FEEDRANK_DATA_DIR from the fixture
    try:
        table = CliRunner().invoke(app, ["events", "stats"])
    finally:
        get_settings.cache_clear()
    assert table.exit_code == 0 and "total 3" in table.output


def test_events_stats_without_a_store_says_so(tmp_path):
    result = CliRunner().invoke(app, ["events", "stats", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no event store" in result.output
