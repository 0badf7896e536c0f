"""Measuring how well stored components recombine (``Registry.bench``, ``partsbin bench``).

- The recombination matrix: every extractor × head, on the **extractor's** task test
  images of the classes the pair shares (paper §4; docs/architecture.md); the prediction
  over the shared classes' logits, the unrestricted figure too; sample counts and 95%
  intervals. Extractor and head of one network give its own-task accuracy. What a batch
  holds (by default only those classes' images, shuffled with a fixed seed) is a recorded
  setting of every evaluation (:mod:`partsbin.parts.evaluation`). The result:
  :mod:`partsbin.client.bench_result`.
- The test data is rebuilt from the extractor's card, or from a local copy given with
  ``data=``, checked against the content digest the card records
  (:mod:`partsbin.client.eval_data`).
- BatchNorm: batch statistics (default, the paper's choice), stored running statistics,
  or running statistics recalibrated on the evaluation images
  (:mod:`partsbin.client.recalibrate`).
- Feature cross-correlation between extractors (Li et al. 2016): the mean over channels
  of the per-channel correlation, without permutation and with the best one
  (:mod:`partsbin.client.correlation`).
- Optionally latency and throughput of each assembled model (:mod:`partsbin.client.latency`).
- Or the matrix split into jobs for workers (:mod:`partsbin.client.bench_distributed`).

This module measures (a whole matrix, or one extractor's row, as a worker's ``evaluate``
job does) and posts the cells as evaluations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from partsbin.client.assemble import AssembledModel, check_junctions
from partsbin.client.bench_distributed import bench_distributed
from partsbin.client.bench_result import BenchResult, Cell
from partsbin.client.correlation import cross_correlation, extractor_features
from partsbin.client.errors import UsageError
from partsbin.client.eval_data import given_for, test_set
from partsbin.client.latency import measure_latency
from partsbin.client.recalibrate import recalibrate_bn_on
from partsbin.parts.cpus import available_cpus
from partsbin.parts.evaluation import (
    BatchComposition,
    EvalSettings,
    evaluate_heads,
    evaluate_pair,
    select_eval_images,
)
from partsbin.parts.metrics import shared_classes

if TYPE_CHECKING:
    from partsbin.client.component import Component
    from partsbin.client.registry import Registry
    from partsbin.parts.data import Images, StreamedImages

__all__ = ["BenchBN", "bench", "measure_row", "post_cells"]

BenchBN = Literal["batch", "running", "recalibrate"]


def bench(
    registry: Registry,
    extractors: list[str],
    heads: list[str],
    *,
    data: dict[str, Any] | None = None,
    bn_mode: BenchBN = "batch",
    batch_size: int = 256,
    batch_composition: BatchComposition = "common-classes",
    shuffle_seed: int = 0,
    threads: int | None = None,
    correlation: bool = False,
    latency: bool = False,
    latency_device: str = "cpu",
    post: bool = True,
    distributed: bool = False,
    heads_per_job: int = 8,
    namespace: str | None = None,
    poll_seconds: float = 1.0,
) -> BenchResult:
    """The matrix of ``extractors`` × ``heads``; each cell is posted as an evaluation when
    ``post``. The token is checked before anything is measured, and the cells are posted
    only once all are measured: a failure to post leaves the result whole, with the
    failure in ``result.post_error``.

    ``data`` points an extractor (by ref, name or task name) at its test data: a path to
    a local copy of the data its card records, or a whole ``DataSpec``. ``latency`` times
    each assembled pair on ``latency_device`` ("cpu", "cuda"...); accuracy is measured on the CPU. Batches hold
    ``batch_composition`` images (default: only the classes the pair shares, the paper's
    measure), shuffled with ``shuffle_seed``. torch uses ``threads`` CPU threads during
    the benchmark (default: the CPUs available to this process).

    ``distributed``: instead of measuring here, split the matrix into ``evaluate`` jobs
    (one extractor × up to ``heads_per_job`` heads each, so its features are computed once
    per job) that any worker takes from the registry's queue, in ``namespace`` (default:
    the first the token may publish into); wait for them and assemble the result from the
    evaluations they post."""
    if distributed:
        if correlation or latency or not post or data:
            raise UsageError(
                "a distributed benchmark measures accuracy on the workers and posts it: correlation, latency, "
                "data= and post=False need the local one"
            )
        return bench_distributed(
            registry,
            extractors,
            heads,
            bn_mode=bn_mode,
            batch_size=batch_size,
            batch_composition=batch_composition,
            shuffle_seed=shuffle_seed,
            threads=threads,
            heads_per_job=heads_per_job,
            namespace=namespace,
            poll_seconds=poll_seconds,
        )
    if post:
        registry.check_can_publish(None, "posting the results as evaluations (pass post=False / --no-post to skip)")
    settings = EvalSettings(
        bn_mode="batch" if bn_mode == "batch" else "running",
        batch_size=batch_size,
        batch_composition=batch_composition,
        shuffle_seed=shuffle_seed,
    )
    threads = threads or available_cpus()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        exts = [registry.pull(r) for r in extractors]
        hds = [registry.pull(r) for r in heads]
        test_sets = {e.ref: test_set(e, given_for(data, e)) for e in exts}
        for e in exts:
            for h in hds:
                check_junctions(e.ref, e.card, h.ref, h.card)
        cells = []
        for e in exts:
            cells += measure_row(
                e,
                hds,
                test_sets[e.ref],
                settings,
                recalibrate=bn_mode == "recalibrate",
                latency=latency,
                latency_device=latency_device,
            )
        result = BenchResult(
            [e.ref for e in exts],
            [h.ref for h in hds],
            bn_mode,
            batch_size,
            cells,
            batch_composition=batch_composition,
            shuffle_seed=shuffle_seed,
            threads=threads,
        )
        if correlation and len(exts) > 1:
            # Same images for every pair: the first extractor's test set.
            x = test_sets[exts[0].ref][1].x
            feats = {e.ref: extractor_features(e.build(), x, batch_size) for e in exts}
            for i, a in enumerate(exts):
                for b in exts[i + 1 :]:
                    direct, permuted = cross_correlation(feats[a.ref], feats[b.ref])
                    result.correlation[f"{a.ref} vs {b.ref}"] = {"direct": direct, "best_permutation": permuted}
    finally:
        torch.set_num_threads(previous_threads)
    if post:
        result.post_error = _post(registry, result)
    return result


def measure_row(
    ext: Component,
    heads: list[Component],
    test: tuple[str, Images | StreamedImages],
    settings: EvalSettings,
    *,
    recalibrate: bool = False,
    latency: bool = False,
    latency_device: str = "cpu",
) -> list[Cell]:
    """One extractor against many heads: one row of the matrix (also what a distributed
    benchmark's ``evaluate`` job measures). Without recalibration the extractor's
    features are computed once for all heads that see the same images."""
    dataset, images = test
    digest = images.data_digest
    extractor = ext.build()
    built = [h.build() for h in heads]
    if recalibrate:
        # AdaBN changes the running statistics of both parts: each pair on its own.
        accs = []
        for h, head in zip(heads, built, strict=True):
            e_copy = ext.build()
            chosen = select_eval_images(images, h.card.labels, settings)
            recalibrate_bn_on(nn.Sequential(e_copy, head), chosen.image_batches(settings.batch_size))
            accs.append(evaluate_pair(e_copy, head, images, h.card.labels, settings))
    else:
        accs = evaluate_heads(
            extractor, [(m, h.card.labels) for m, h in zip(built, heads, strict=True)], images, settings
        )
    cells = []
    for h, head, acc in zip(heads, built, accs, strict=True):
        own = h.card.compat.sibling == ext.ref
        cell = Cell(
            ext.ref, h.ref, acc.restricted, acc.unrestricted, acc.n, acc.ci95, own, dataset=dataset, data_digest=digest
        )
        cell.classes = len(shared_classes(images.classes, h.card.labels))
        if latency:
            model = AssembledModel(ext.build(), head, bn_mode=settings.bn_mode)
            first = next(images.image_batches(settings.batch_size))
            cell.latency_ms, cell.images_per_s = measure_latency(model, first, settings.batch_size, latency_device)
        cells.append(cell)
    return cells


def _post(registry: Registry, result: BenchResult) -> str | None:
    """Post every measured cell; the first failure is returned, not raised."""
    settings = EvalSettings(
        bn_mode="batch" if result.bn_mode == "batch" else "running",
        batch_size=result.batch_size,
        batch_composition=result.batch_composition,
        shuffle_seed=result.shuffle_seed,
    )
    return post_cells(registry, result.cells, settings, recalibrated=result.bn_mode == "recalibrate")


def post_cells(
    registry: Registry,
    cells: list[Cell],
    settings: EvalSettings,
    *,
    recalibrated: bool = False,
    details: dict[str, Any] | None = None,
    job: tuple[int, str] | None = None,
) -> str | None:
    """Post cells as evaluations (with how they were measured, and ``details``); the first
    failure is returned, not raised, so that no measurement is lost with it."""
    from partsbin.client.errors import PartsbinError

    for c in cells:
        if not c.samples:
            continue
        try:
            c.evaluation_id = registry.post_evaluation(
                extractor=c.extractor,
                head=c.head,
                dataset=c.dataset,
                value=c.accuracy,
                samples=c.samples,
                bn_mode="recalibrated" if recalibrated else settings.bn_mode,
                batch_size=settings.batch_size,
                classes=c.classes or None,
                job=job,
                data_digest=c.data_digest,
                details={
                    "unrestricted": c.unrestricted,
                    "ci95": list(c.ci95),
                    "own_task": c.own_task,
                    "batch_composition": settings.batch_composition,
                    "shuffle_seed": settings.shuffle_seed,
                    **(details or {}),
                },
            )["id"]
        except PartsbinError as exc:
            return f"posting the evaluation of {c.extractor} + {c.head} failed: {exc}"
    return None
