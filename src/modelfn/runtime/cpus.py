"""How many CPUs this process may really use: the CPU affinity, capped by a cgroup CPU quota.

Containers with a CPU limit (Cloud Run, Kubernetes, Lambda's fractional vCPUs) still show
every core of the host to ``os.cpu_count()``; a thread pool sized by it oversubscribes the
quota and gets throttled. The quota is ``cpu.max`` under cgroup v2 and
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` under v1; a fractional quota rounds down
(at least 1), as Go's automaxprocs does.
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """CPUs usable by this process: affinity, capped by the cgroup quota if one is set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = _quota(root)
    if quota is not None:
        cpus = min(cpus, max(1, int(quota)))
    return max(1, cpus)


def _quota(root: Path) -> float | None:
    """The cgroup CPU quota in CPUs, or ``None`` when there is none (or it cannot be read)."""
    try:
        limit_text, period_text = (root / "cpu.max").read_text().split()[:2]  # v2: "max 100000" or "150000 100000"
        return None if limit_text == "max" else int(limit_text) / int(period_text)
    except (OSError, ValueError):
        pass
    for folder in (root / "cpu", root / "cpu,cpuacct"):  # v1
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota <= 0 or period <= 0 else quota / period
    return None
