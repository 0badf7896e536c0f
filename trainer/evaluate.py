"""The ``evaluate`` job: one row of a recombination matrix, measured by a worker.

The extractor's test set is rebuilt once and its features computed once for all heads
that see the same images (:func:`partsbin.client.bench.measure_row`); the cells are posted
as evaluations that name the job, so the client that split the matrix finds them.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import torch

from partsbin.client.assemble import check_junctions
from partsbin.client.bench import measure_row, post_cells, test_set
from partsbin.parts.cpus import use_threads
from partsbin.parts.evaluation import EvalSettings
from partsbin.parts.evaluation_spec import EvaluateSpec
from partsbin.trainer.engine import Progress, StopRequested
from partsbin.trainer.lease import current_lease
from partsbin.trainer.run import RunResult

__all__ = ["run_evaluate"]


def run_evaluate(
    spec: EvaluateSpec, registry: Any, *, progress: Progress | None = None, job_id: str | None = None
) -> RunResult:
    if registry is None:
        raise ValueError("an evaluate job needs a registry to pull the components from")
    progress = progress or Progress()
    use_threads(spec.threads)
    started = time.perf_counter()
    ext = registry.pull(spec.extractor)
    heads = [registry.pull(h) for h in spec.heads]
    for h in heads:
        check_junctions(ext.ref, ext.card, h.ref, h.card)
    if progress.should_stop():
        raise StopRequested()
    settings = EvalSettings(
        bn_mode="batch" if spec.bn_mode == "batch" else "running",
        batch_size=spec.batch_size,
        batch_composition=spec.batch_composition,
        shuffle_seed=spec.shuffle_seed,
    )
    test = test_set(ext, spec.data)
    cells = measure_row(ext, heads, test, settings, recalibrate=spec.bn_mode == "recalibrate")
    seconds = time.perf_counter() - started
    progress.on_step(
        {"step": len(heads), "total": len(heads), "loss": None, "images_per_s": len(test[1]) * len(heads) / seconds}
    )
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
    result = RunResult(
        metrics={"cells": [asdict(c) for c in cells], "seconds": seconds, "threads": torch.get_num_threads()}
    )
    result.lines = [
        f"{c.extractor} + {c.head}: {c.accuracy:.1%} on {c.samples} images" + (" (own task)" if c.own_task else "")
        for c in cells
    ]
    return result
