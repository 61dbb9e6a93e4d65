"""Run records, restart recovery, run diffs, override validation, the paired test, rollback lineage."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.config import TrainingSettings
from services.common.errors import ErrorKind, FeedrankError
from services.trainer.evaluation import paired_test
from services.trainer.gate import champion_lineage
from services.trainer.mining import Triplet
from services.trainer.runs import RunRecord, RunStore, diff, new_run_id, now
from services.trainer.training import apply_overrides, split_dev, weighted_sample


def record(run_id, status="queued", **settings):
    return RunRecord(run_id, "tiny", "train", status, now(), {"loss": "bce", **settings}, ["a.jsonl"])


def test_runs_persist_and_restart_marks_unfinished_runs_interrupted(tmp_path):
    store = RunStore(tmp_path)
    running, queued, done = new_run_id(), new_run_id() + "x", new_run_id() + "y"
    store.create(record(running))
    store.update(running, status="running")
    store.create(record(queued))
    store.create(record(done))
    store.update(done, status="succeeded", metrics={"train_loss": 0.5})
    again = RunStore(tmp_path)  # a new process over the same folder
    assert sorted(again.recover()) == sorted([running, queued])
    assert again.get(running).status == "interrupted" and "restarted" in again.get(running).error
    assert again.get(running).finished_at
    assert again.get(done).status == "succeeded"
    statuses = [line for line in again.metrics_path(running).read_text().splitlines() if '"status"' in line]
    assert '"interrupted"' in statuses[-1]


def test_runs_of_another_live_process_are_left_alone(tmp_path):
    import os
    import socket

    store = RunStore(tmp_path)
    other = record(new_run_id())
    other.owner = f"{socket.gethostname()}:{os.getppid()}"  # alive: the process that runs pytest
    store.create(other)
    mine = record(new_run_id() + "m")
    mine.owner = f"{socket.gethostname()}:{os.getpid()}"  # this pid before a restart
    store.create(mine)
    assert RunStore(tmp_path).recover() == [mine.run_id]
    assert store.get(other.run_id).status == "queued"


def test_unknown_and_hostile_run_ids(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(FeedrankError) as err:
        store.get("r-missing")
    assert err.value.kind == ErrorKind.NOT_FOUND
    for bad in ("../x", "", ".hidden"):
        with pytest.raises(FeedrankError) as err:
            store.get(bad)
        assert err.value.field == "run_id"


def test_diff_shows_changed_settings_and_both_metrics():
    a = record("a", epochs=1)
    b = record("b", epochs=2)
    a.metrics, b.metrics = {"train_loss": 0.6}, {"train_loss": 0.4, "dev_ndcg@10": 0.9}
    d = diff(a, b)
    assert d["settings"] == {"epochs": (1, 2)}
    assert d["metrics"] == {"dev_ndcg@10": (None, 0.9), "train_loss": (0.6, 0.4)}


def test_overrides_are_validated_and_name_the_field():
    base = TrainingSettings()
    assert apply_overrides(base, {"epochs": "3", "loss": "lambda"}).epochs == 3
    for overrides, field in [({"nope": "1"}, "overrides.nope"), ({"epochs": "0"}, "overrides.epochs"),
                             ({"loss": "hinge"}, "overrides.loss")]:
        with pytest.raises(FeedrankError) as err:
            apply_overrides(base, overrides)
        assert err.value.kind == ErrorKind.INVALID_ARGUMENT and err.value.field == field


def test_dev_split_keeps_queries_whole_and_weights_resample():
    triplets = [Triplet(f"q{i % 10}", "p", f"d{i}", [], [], "s", weight=1.0 + (i == 0) * 50) for i in range(40)]
    train, dev = split_dev(triplets, 0.2, 13)
    assert {t.query for t in train}.isdisjoint({t.query for t in dev}) and len({t.query for t in dev}) == 2
    sampled = weighted_sample(triplets, 13)
    assert len(sampled) == 40 and sum(t.positive_doc_id == "d0" for t in sampled) > 10


def test_paired_test_separates_real_gains_from_noise():
    rng = np.random.default_rng(0)
    gains = 0.1 + rng.normal(0, 0.05, 60)
    noise = rng.normal(0, 0.05, 60)
    for kind in ("randomization", "bootstrap"):
        assert paired_test(gains, kind, 2000, 1) < 0.01
        assert paired_test(-gains, kind, 2000, 1) > 0.9
        assert paired_test(noise, kind, 2000, 1) > 0.05
        assert paired_test(np.zeros(10), kind, 2000, 1) == 1.0


def test_rollback_lineage_undoes_promotions_in_order():
    history = [
        {"alias": "challenger", "to": "v1", "reason": "run"},
        {"alias": "champion", "from": None, "to": "v1", "reason": "promote"},
        {"alias": "champion", "from": "v1", "to": "v2", "reason": "promote"},
        {"alias": "champion", "from": "v2", "to": "v3", "reason": "promote"},
        {"alias": "champion", "from": "v3", "to": "v2", "reason": "rollback from v3"},
    ]
    assert champion_lineage(history) == [None, "v1", "v2"]
    history.append({"alias": "champion", "from": "v2", "to": "v1", "reason": "rollback from v2"})
    assert champion_lineage(history) == [None, "v1"]
