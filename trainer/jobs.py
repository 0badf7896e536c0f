"""Running a job of any kind: the worker and the CLI's ``--local`` runs call :func:`run_job`.

The kind's registration (:mod:`partsbin.parts.jobs`) names its runner; every runner takes
the validated spec, the client :class:`~partsbin.client.registry.Registry` it pulls from
and publishes to (None for a spec with ``publish: false`` that needs nothing stored), a
:class:`~partsbin.trainer.loop.Progress`, and the job's id for provenance, and returns
the kind's result model. What every kind needs around it is here, once: the CPU threads,
the wall-time limit, the data it may read, and stopping at any phase.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from partsbin.parts.cancel import stopping_with
from partsbin.parts.cpus import available_cpus, use_threads
from partsbin.parts.data.access import DataAccess, data_access
from partsbin.parts.jobs import JobResult, JobSpec, job_kind
from partsbin.trainer.loop import Progress

__all__ = ["run_job", "capacity_problem"]


def capacity_problem(spec: JobSpec) -> str | None:
    """Why this worker cannot run ``spec`` (threads or processes beyond its CPUs), or None."""
    cpus = available_cpus()
    s = spec.settings
    if s.threads is not None and s.threads > cpus:
        return f"the job asks for {s.threads} threads (settings.threads) and this worker has {cpus} CPUs"
    if s.distributed is not None and s.distributed.nproc_per_node > cpus:
        return (
            f"the job asks for {s.distributed.nproc_per_node} processes on this machine "
            f"(settings.distributed.nproc_per_node) and this worker has {cpus} CPUs"
        )
    return None


def run_job(
    spec: JobSpec,
    registry: Any = None,
    *,
    progress: Progress | None = None,
    job_id: str | None = None,
    data_roots: tuple[Path, ...] | None = None,
) -> JobResult:
    """Run ``spec`` here. ``data_roots``: the only folders its paths may name (a worker's
    ``PARTSBIN_DATA_ROOTS``); None for a user's own run, whose paths are the user's."""
    kind = job_kind(spec.kind)
    runner = kind.load_runner()
    progress = progress or Progress()
    s = spec.settings
    if s.max_seconds is not None:
        progress.max_seconds = s.max_seconds
        progress.deadline = time.monotonic() + s.max_seconds
    # torch's default is the machine's core count, which oversubscribes a shared or
    # containerised host; at most the CPUs this process may use.
    use_threads(s.threads)
    started = time.perf_counter()
    datasets = registry.dataset_resolver() if registry is not None else None
    with stopping_with(progress.check), data_access(DataAccess(roots=data_roots, datasets=datasets)):
        result = runner(spec, registry, progress=progress, job_id=job_id)
    result.seconds = time.perf_counter() - started
    return result
