"""How many CPU threads a process of partsbin should use."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available_cpus", "use_threads"]


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.

    torch's default thread count is the machine's cores, which on a shared or
    containerised host oversubscribes the few this process gets (a run on a shared
    2-core machine went 143 images/s with the default and 680 with one thread)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(cpus, quota) if quota else cpus)


def _cgroup_quota() -> int | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]  # cgroup v2
        return None if quota == "max" else max(1, int(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else max(1, quota_us // period_us)
    except (OSError, ValueError):
        return None


def use_threads(threads: int | None) -> int:
    """Set torch's CPU threads to ``threads``, or, when None, cap them at the CPUs
    available (a lower setting, e.g. ``partsbin worker --threads 1``, stays). Returns the
    count in use."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    elif torch.get_num_threads() > available_cpus():
        torch.set_num_threads(available_cpus())
    return torch.get_num_threads()
