"""The ``evaluate`` job: one row of a recombination matrix, measured by a worker.

The extractor's test set is rebuilt once and its features computed once for all heads
that see the same images (:func:`partsbin.client.bench.measure_row`); the cells are posted
as evaluations that name the job, so the client that split the matrix finds them.
"""

from __future__ import annotations

import time
from typing import Any

from partsbin.client.assemble import check_junctions
from partsbin.client.bench import measure_row, post_cells
from partsbin.client.eval_data import test_set
from partsbin.parts.evaluation import EvalSettings
from partsbin.parts.jobs.evaluate import CellResult, EvaluateResult, EvaluateSpec
from partsbin.trainer.lease import current_lease
from partsbin.trainer.loop import Progress

__all__ = ["run_evaluate"]


def run_evaluate(
    spec: EvaluateSpec, registry: Any, *, progress: Progress | None = None, job_id: str | None = None
) -> EvaluateResult:
    if registry is None:
        raise ValueError("an evaluate job needs a registry to pull the components from")
    progress = progress or Progress()
    started = time.perf_counter()
    ext = registry.pull(spec.extractor)
    heads = [registry.pull(h) for h in spec.heads]
    for h in heads:
        check_junctions(ext.ref, ext.card, h.ref, h.card)
    progress.phase("loading data")
    settings = EvalSettings(
        bn_mode="batch" if spec.bn_mode == "batch" else "running",
        batch_size=spec.settings.eval_batch_size,
        batch_composition=spec.batch_composition,
        shuffle_seed=spec.shuffle_seed,
    )
    test = test_set(ext, spec.test)
    progress.phase("evaluating", heads=len(heads))
    cells = measure_row(ext, heads, test, settings, recalibrate=spec.bn_mode == "recalibrate")
    if spec.publish:
        # Posted under the job's lease (when a worker runs it): the registry trusts
        # evaluations its own workers made for jobs a trusted token submitted.
        error = post_cells(
            registry,
            cells,
            settings,
            recalibrated=spec.bn_mode == "recalibrate",
            details={"job": job_id},
            job=current_lease.get(),
        )
        if error:
            raise RuntimeError(error)
    return EvaluateResult(
        cells=[
            CellResult(
                extractor=c.extractor,
                head=c.head,
                accuracy=c.accuracy,
                unrestricted=c.unrestricted,
                samples=c.samples,
                classes=c.classes,
                own_task=c.own_task,
            )
            for c in cells
        ],
        seconds=time.perf_counter() - started,
    )
