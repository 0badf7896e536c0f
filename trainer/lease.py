"""The job a worker is running in this thread, for runners that post under its lease."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["current_lease", "holding_lease"]

#: (job id, lease id) of the job the worker runs in this thread: what a runner passes to
#: ``Registry.post_evaluation(job=...)`` so the registry knows the evaluation was made by
#: its own worker under that job (a trusted evaluation). None outside a worker.
current_lease: ContextVar[tuple[int, str] | None] = ContextVar("partsbin_current_lease", default=None)


@contextmanager
def holding_lease(job_id: int, lease_id: str) -> Iterator[None]:
    token = current_lease.set((job_id, lease_id))
    try:
        yield
    finally:
        current_lease.reset(token)
