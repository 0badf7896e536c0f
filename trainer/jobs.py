"""Running a job of any kind: the worker and the CLI's ``--local`` runs call :func:`run_job`.

Each kind of :data:`partsbin.parts.job_specs.JOB_KINDS` maps to the function that runs it;
every runner takes the validated spec, the client :class:`~partsbin.client.registry.Registry`
it pulls from and publishes to (None for a spec with ``publish: false`` that needs
nothing stored), a :class:`~partsbin.trainer.engine.Progress`, and the job's id for
provenance, and returns a :class:`~partsbin.trainer.run.RunResult`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from partsbin.trainer.adapt import run_adapt
from partsbin.trainer.engine import Progress
from partsbin.trainer.evaluate import run_evaluate
from partsbin.trainer.fct_job import run_fct
from partsbin.trainer.multiarch import run_multiarch
from partsbin.trainer.run import RunResult, run
from partsbin.trainer.stitch import run_stitch
from partsbin.trainer.transfer import run_transfer
from partsbin.trainer.update_head import run_update_head

__all__ = ["RUNNERS", "run_job"]


RUNNERS: dict[str, Callable[..., RunResult]] = {
    "train": run,
    "evaluate": run_evaluate,
    "train-multiarch": run_multiarch,
    "update-head": run_update_head,
    "adapt": run_adapt,
    "transfer": run_transfer,
    "stitch": run_stitch,
    "fct": run_fct,
}


def run_job(
    spec: Any, registry: Any = None, *, progress: Progress | None = None, job_id: str | None = None
) -> RunResult:
    try:
        runner = RUNNERS[spec.kind]
    except KeyError:
        raise ValueError(
            f"this worker cannot run jobs of kind {spec.kind!r}; it runs {', '.join(sorted(RUNNERS))}"
        ) from None
    return runner(spec, registry, progress=progress, job_id=job_id)
