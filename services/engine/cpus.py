"""How many cores this process may use: its CPU affinity, capped by the cgroup (v2 or v1) CPU quota.

os.cpu_count() is the host's count; in a container limited to 2 CPUs on a 64-core host, threads
sized from it oversubscribe the quota and get throttled, which costs more than fewer threads.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CpuBudget:
    affinity: int  # CPUs in the scheduler affinity mask
    quota: float | None  # cgroup quota in CPUs (quota / period); None = unlimited
    source: str  # which cgroup file gave the quota, or "none"

    @property
    def cores(self) -> int:
        """Whole cores to size thread pools by: at least 1, never more than the quota rounds up to."""
        limit = self.affinity if self.quota is None else min(self.affinity, math.ceil(self.quota))
        return max(1, limit)


def cpu_budget(root: Path = CGROUP_ROOT) -> CpuBudget:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota, source = _cgroup_quota(root)
    return CpuBudget(affinity, quota, source)


def usable_cores() -> int:
    return cpu_budget().cores


def _cgroup_quota(root: Path) -> tuple[float | None, str]:
    # cgroup v2: "<quota> <period>" or "max <period>". Every ancestor's limit applies, so the
    # tightest one on the path from the process's cgroup up to the mount wins.
    own = root / _own_cgroup_v2()
    v2 = [folder / "cpu.max" for folder in (own, *own.parents) if folder.is_relative_to(root)]
    v2 = [f for f in v2 if f.is_file()]
    if v2:
        limits = []
        for cpu_max in v2:
            parts = cpu_max.read_text().split()
            if len(parts) == 2 and parts[0] != "max" and int(parts[1]) > 0:
                limits.append((int(parts[0]) / int(parts[1]), str(cpu_max)))
        return min(limits) if limits else (None, str(v2[0]))
    # cgroup v1: cfs_quota_us is -1 when unlimited.
    for folder in (root / "cpu,cpuacct", root / "cpu"):
        quota_file, period_file = folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us"
        if quota_file.is_file() and period_file.is_file():
            quota, period = int(quota_file.read_text()), int(period_file.read_text())
            if quota > 0 and period > 0:
                return quota / period, str(quota_file)
            return None, str(quota_file)
    return None, "none"


def _own_cgroup_v2() -> str:
    """This process's cgroup v2 path relative to the mount ('0::/path' in /proc/self/cgroup)."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:].lstrip("/")
    except OSError:
        pass
    return ""
