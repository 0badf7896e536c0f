"""Stopping a job at any phase: training steps, data loading, feature passes, evaluation.

The code that runs a job installs its check (:func:`stopping_with`): the worker's asks
whether the job was cancelled, its lease lost, the worker is stopping, or the job's wall
time (``settings.max_seconds``) is spent. Long loops anywhere, in the trainer or in the
shared core, call :func:`checkpoint` every few iterations; outside a job it does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from partsbin.parts.errors import PartsbinError

__all__ = ["StopRequested", "TimedOut", "checkpoint", "stopping_with"]


class StopRequested(Exception):
    """The job was asked to stop (cancelled, lease lost, worker stopping)."""


class TimedOut(PartsbinError, TimeoutError):
    """The job ran past its wall time."""


_check: ContextVar[Callable[[], None] | None] = ContextVar("partsbin_stop_check", default=None)


def checkpoint() -> None:
    """Raise :class:`StopRequested` or :class:`TimedOut` if the running job must stop."""
    check = _check.get()
    if check is not None:
        check()


@contextmanager
def stopping_with(check: Callable[[], None]) -> Iterator[None]:
    token = _check.set(check)
    try:
        yield
    finally:
        _check.reset(token)
