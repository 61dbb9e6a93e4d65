"""Progress off a terminal: plain lines per 5% and a heartbeat, and `feedrank ingest` with stdout piped."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

from rich.console import Console

from services.common.config import get_settings
from services.common.progress import PlainProgress, progress, status
from tests.conftest import REPO
from tests.feedback.helpers import wait_until
from tests.retriever.conftest import DOCS, seeded_data_dir  # noqa: F401 (fixture)

LINE = re.compile(r"^\[progress\] (?P<step>.+): (?P<done>\d+)/(?P<total>\d+) \((?P<pct>\d+)%\) "
                  r"(?P<rate>[\d.]+)/s ETA (?P<eta>\d+[smh][\dsm]*|\?)$")
STATUS_LINE = re.compile(r"^\[progress\] (?P<step>.+): (?P<state>running|done in) \d+[smh][\dsm]*$")


def piped() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out), out


def test_a_task_prints_a_line_per_five_percent_with_rate_and_eta():
    console, out = piped()
    bar = progress(console)
    assert isinstance(bar, PlainProgress)  # a StringIO is no terminal: no bar is drawn
    with bar:
        task = bar.add_task("ingest tiny", total=400)
        for _ in range(400):
            bar.advance(task)
    lines = out.getvalue().splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert {m["step"] for m in parsed} == {"ingest tiny"} and {m["total"] for m in parsed} == {"400"}
    assert [int(m["pct"]) for m in parsed] == list(range(0, 101, 5))  # each 5% once, in order, nothing else
    assert [int(m["done"]) for m in parsed] == list(range(0, 401, 20))


def test_a_task_that_jumps_prints_once_per_jump_and_ends_with_where_it_stopped():
    console, out = piped()
    with progress(console) as bar:
        task = bar.add_task("measure", total=10)
        bar.advance(task, 3)
        bar.update(task, completed=7, info="loss 0.5")
    lines = out.getvalue().splitlines()
    assert [LINE.match(line.removesuffix(" loss 0.5"))["done"] for line in lines] == ["0", "3", "7", "7"]
    assert lines[-1].endswith("loss 0.5")


def test_the_share_and_the_heartbeat_are_settings(monkeypatch):
    monkeypatch.setenv("FEEDRANK_PROGRESS__SHARE", "0.25")
    monkeypatch.setenv("FEEDRANK_PROGRESS__INTERVAL_S", "0.05")
    get_settings.cache_clear()
    try:
        console, out = piped()
        with progress(console) as bar:
            task = bar.add_task("ingest", total=100)
            for _ in range(100):
                bar.advance(task, 1)
        assert [int(LINE.match(line)["pct"]) for line in out.getvalue().splitlines()] == [0, 25, 50, 75, 100]
        console, out = piped()
        with status(console, "gate"):
            wait_until(lambda: len(out.getvalue().splitlines()) >= 3, 30, "heartbeat lines every 0.05 s")
    finally:
        get_settings.cache_clear()


def test_a_status_prints_at_start_beats_while_open_and_says_when_done():
    console, out = piped()
    with status(console, "gate: challenger vs champion", interval_s=0.05) as shown:
        wait_until(lambda: len(out.getvalue().splitlines()) >= 3, 30, "heartbeat lines")
        shown.update("gate: paired test")
    lines = out.getvalue().splitlines()
    parsed = [STATUS_LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert parsed[0]["step"] == "gate: challenger vs champion" and parsed[0]["state"] == "running"
    assert parsed[-1]["step"] == "gate: paired test" and parsed[-1]["state"] == "done in"


def test_feedrank_ingest_with_stdout_piped_prints_progress_lines(seeded_data_dir, tmp_path):  # noqa: F811
    dataset = tmp_path / "tiny"
    dataset.mkdir()
    (dataset / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in DOCS))
    env = {**os.environ, "PYTHONPATH": str(REPO), "FEEDRANK_DATA_DIR": str(seeded_data_dir), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "services.cli", "ingest", "--corpus-id", "tiny",
                           "--dataset", str(dataset)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [m for m in map(LINE.match, done.stdout.splitlines()) if m]
    assert lines and {m["step"] for m in lines} == {"ingest tiny"}
    assert lines[0]["done"] == "0" and lines[-1]["done"] == lines[-1]["total"] == str(len(DOCS))
    assert '"added": %d' % len(DOCS) in done.stdout
