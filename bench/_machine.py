"""What a benchmark ran on, recorded beside its figures: results from different hosts
are compared only through ratios to baselines of the same run."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    model, flags = "", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return {
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model or platform.processor(),
        # sha256 runs ~2x faster with the SHA extensions: the baseline of the transfer ratios.
        "sha_extensions": "sha_ni" in flags or "sha2" in flags,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
