"""``Server-Timing`` (W3C): how long each step of a request took, for clients and benchmarks.

``POST /components`` reports ``receive`` (streaming, hashing and writing the body),
``check`` (the upload checks), ``store`` (the blob) and ``record`` (the database row),
so a slow publish says where its time went without a profiler.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ServerTiming"]


class ServerTiming:
    def __init__(self) -> None:
        self.metrics: list[tuple[str, float]] = []

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.metrics.append((name, (time.perf_counter() - start) * 1000))

    def header(self) -> str:
        return ", ".join(f"{name};dur={ms:.1f}" for name, ms in self.metrics)
