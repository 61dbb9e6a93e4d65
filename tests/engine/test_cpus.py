"""Threads follow the cores the process may use: affinity, capped by the cgroup v2 or v1 quota."""

from __future__ import annotations

import os
from pathlib import Path

from services.engine import cpus


def _affinity() -> int:
    return len(os.sched_getaffinity(0))


def test_cgroup_v2_quota_caps_the_affinity(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(cpus, "_own_cgroup_v2", lambda: "kubepods/pod1")
    (tmp_path / "kubepods" / "pod1").mkdir(parents=True)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "kubepods" / "cpu.max").write_text("300000 100000\n")
    (tmp_path / "kubepods" / "pod1" / "cpu.max").write_text("150000 100000\n")
    budget = cpus.cpu_budget(tmp_path)
    assert budget.quota == 1.5 and budget.source.endswith("pod1/cpu.max")  # the tightest ancestor wins
    assert budget.cores == min(_affinity(), 2)


def test_cgroup_v2_without_a_limit_is_the_affinity(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(cpus, "_own_cgroup_v2", lambda: "")
    (tmp_path / "cpu.max").write_text("max 100000\n")
    budget = cpus.cpu_budget(tmp_path)
    assert budget.quota is None and budget.cores == _affinity()


def test_cgroup_v1_quota(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(cpus, "_own_cgroup_v2", lambda: "")
    v1 = tmp_path / "cpu,cpuacct"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    budget = cpus.cpu_budget(tmp_path)
    assert budget.quota == 0.5 and budget.cores == 1  # never below one thread
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpus.cpu_budget(tmp_path).quota is None


def test_sessions_take_their_threads_from_the_budget(monkeypatch):
    from services.engine import session

    monkeypatch.setattr(session, "usable_cores", lambda: 3)
    assert session._threads(0) == 3 and session._threads(5) == 5
