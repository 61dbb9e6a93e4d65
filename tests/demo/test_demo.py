"""`make demo QUICK=1` as CI runs it (a shorter online step): the whole loop on real processes, asserting what it
must show."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCIFACT = REPO.parent / "shared" / "data" / "scifact"


def run_demo(env: dict[str, str], timeout_s: float, *args: str) -> subprocess.CompletedProcess:
    """The demo in its own process group, so a timeout also stops the broker and services it started."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "demo", "--quick", "--dataset", str(SCIFACT), *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"the quick demo ran past {timeout_s:.0f}s:\n{out[-3000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"SciFact not found at {SCIFACT}")
@pytest.mark.timeout(3000)  # minutes of real work on 2 cores; the run's own limit below stops it first
def test_quick_demo_learns_and_drops_no_request(tmp_path):
    # The online step's budget is cut from the quick run's 400 queries: here it only has to run and be reported
    # (the interleaving, crediting and the sequential test: tests/gateway/test_online_experiment.py, tests/trainer).
    env = {**os.environ, "FEEDRANK_DATA_DIR": str(tmp_path / "data"), "FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET": "0",
           "FEEDRANK_DEMO__QUICK_ONLINE_QUERIES": "100"}
    run = run_demo(env, timeout_s=2700)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    result = json.loads((tmp_path / "data" / "demo" / "scifact-quick" / "demo.json").read_text())
    rows, simulation = result["rows"], result["simulation"]
    # What users get after the loop beats the fused order on test queries no step trained on.
    assert rows["fused+learned"]["ndcg@10"] >= rows["fused"]["ndcg@10"] + 0.01, rows
    assert rows["fused+learned"]["version_id"] != "none"
    # Not one simulated search or feedback call failed, through training, the gate and the swap.
    assert simulation["failed_searches"] == 0 and simulation["failed_feedback"] == 0, simulation["errors"]
    assert simulation["sessions"] >= 1000 and simulation["clicks"] > 0
    # v0 learned from the labels of some train queries; the users asked the others.
    assert simulation["queries_labelled_for_v0"] > 0 and simulation["queries_asked"] > 0, simulation
    assert {run["step"] for run in result["training_loss"] if run["points"]} == {"bootstrap", "feedback"}
    # The simulated users decided the learned version online (or spent the quick budget), set beside the test.
    online = result["online"]
    assert online["queries"] > 0 and online["state"] in ("win", "loss", "undecided"), online
    assert "test_ndcg_delta" in online, online
    # Every gate decision was made on held-out train queries, never on the reported test split.
    recorded = (tmp_path / "data" / "trainer" / "decisions.jsonl").read_text().splitlines()
    assert recorded
    for decision in map(json.loads, recorded):
        if "eval_id" in decision:
            evaluation = json.loads((tmp_path / "data" / "evals" / f"{decision['eval_id']}.json").read_text())
            assert evaluation["eval_set"].startswith("qrels:train@"), evaluation["eval_set"]
    decisions = [d for d in result["decisions"] if d["step"] == "feedback"]
    assert decisions and all("reason" in d for d in decisions)
    if decisions[-1]["promoted"]:
        assert result["swap"]["version_id"] == decisions[-1]["version_id"]
    for name in ("demo.json", "demo.md", "demo.png"):
        assert (tmp_path / "data" / "demo" / "scifact-quick" / name).stat().st_size > 0


@pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"SciFact not found at {SCIFACT}")
@pytest.mark.timeout(3000)
def test_quick_demo_judged_by_clicks_alone(tmp_path):
    """`make demo QUICK=1 JUDGE=clicks`: the trainer is given no qrels, no queries and no golden file."""
    data = tmp_path / "data"
    # No online step: the labelled test above runs it, this one is about judging offline by clicks.
    env = {**os.environ, "FEEDRANK_DATA_DIR": str(data), "FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET": "0",
           "FEEDRANK_DEMO__QUICK_ONLINE_QUERIES": "0"}
    run = run_demo(env, 2700, "--judge", "clicks")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    # The trainer reads a corpus only from its folder under corpora/: there is nothing labelled to open.
    corpus = data / "corpora" / "scifact-quick-clicks"
    assert (corpus / "docs.sqlite").is_file()
    assert not (corpus / "qrels").exists() and not (corpus / "queries.jsonl").exists()
    result = json.loads((data / "demo" / "scifact-quick-clicks" / "demo.json").read_text())
    rows, simulation = result["rows"], result["simulation"]
    assert simulation["failed_searches"] == 0 and simulation["failed_feedback"] == 0, simulation["errors"]
    assert simulation["queries_labelled_for_v0"] == 0  # v0 is the fused order
    decisions = [d for d in result["judging"] if d["judge"] == "clicks"]
    assert decisions and not any(d["judge"] == "labels" for d in result["judging"])
    assert decisions[-1]["promoted"], decisions[-1]["reason"]
    # Learned from clicks, judged by clicks, better on labelled test queries. The issue's +0.02 is a measured
    # figure (README): two quick runs gave +0.020 and +0.046, so a test at +0.02 would fail on a run's noise.
    assert rows["fused+learned"]["ndcg@10"] >= rows["fused"]["ndcg@10"] + 0.01, rows
    # The measured propensities sit beside the simulated users' true examination, ranks 1..20.
    measured = result["propensities"]
    assert measured["ranks"] == list(range(1, 21)) and measured["intervened"] > 0
    assert measured["true"][:3] == [1.0, 0.5, pytest.approx(1 / 3)]
    for name in ("propensity.md", "propensity.png"):
        assert (data / "demo" / "scifact-quick-clicks" / name).stat().st_size > 0


@pytest.mark.parametrize(("cli", "dataset", "field"), [
    ({"noise": 2.0}, SCIFACT, "demo.noise"),  # the CLI's --noise is checked like FEEDRANK_DEMO__NOISE
    ({"noise": -0.1}, SCIFACT, "demo.noise"),
    ({"judge": "votes"}, SCIFACT, "demo.judge"),  # and --judge like FEEDRANK_DEMO__JUDGE
    ({}, REPO / "no-such-dataset", "dataset"),
])
def test_bad_demo_input_is_refused_naming_the_field(tmp_path, cli, dataset, field):
    from services.common.config import Settings
    from services.common.errors import ErrorKind, FeedrankError
    from services.demo.run import Demo

    with pytest.raises(FeedrankError) as refused:
        Demo(Settings(data_dir=str(tmp_path)), dataset, quick=True, **cli)
    assert (refused.value.kind, refused.value.field) == (ErrorKind.INVALID_ARGUMENT, field)
