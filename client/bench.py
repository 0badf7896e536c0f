"""Measuring how well stored components recombine (``Registry.bench``, ``partsbin bench``).

- The recombination matrix: every extractor × head, on the **extractor's** task test
  images of the classes the pair shares (paper §4; docs/architecture.md); the prediction
  over the shared classes' logits, the unrestricted figure too; sample counts and 95%
  intervals. Extractor and head of one network give its own-task accuracy. What a batch
  holds (by default only those classes' images, shuffled with a fixed seed) is a recorded
  setting of every evaluation (:mod:`partsbin.parts.evaluation`).
- The test data is rebuilt from the extractor's card, or from a local copy given with
  ``data=``, checked against the content digest the card records.
- BatchNorm: batch statistics (default, the paper's choice), stored running statistics,
  or running statistics recalibrated on the evaluation images.
- Feature cross-correlation between extractors (Li et al. 2016): the mean over channels
  of the per-channel correlation, without permutation and with the best one.
- Optionally latency and throughput of each assembled model.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from partsbin.client.assemble import AssembledModel, check_junctions
from partsbin.client.errors import UsageError
from partsbin.parts.batchnorm import batchnorm_layers, evaluating, set_bn_mode
from partsbin.parts.cpus import available_cpus
from partsbin.parts.data.spec import RECORDED_TEST_EXTRAS
from partsbin.parts.evaluation import (
    BatchComposition,
    EvalSettings,
    evaluate_heads,
    evaluate_pair,
    select_eval_images,
)
from partsbin.parts.extras import require
from partsbin.parts.metrics import shared_classes
from partsbin.parts.names import shared_prefix

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from partsbin.client.registry import Component, Registry
    from partsbin.parts.data import Images

__all__ = ["BenchResult", "Cell", "bench", "cross_correlation", "recalibrate_bn", "recorded_test_spec", "test_set"]

BenchBN = Literal["batch", "running", "recalibrate"]


@dataclass
class Cell:
    extractor: str
    head: str
    accuracy: float
    unrestricted: float
    samples: int
    ci95: tuple[float, float]
    own_task: bool
    dataset: str = ""
    #: How many classes the pair shares: chance is 1 / classes (the registry ranks a pair
    #: measured at chance as not compatible).
    classes: int = 0
    latency_ms: float | None = None
    evaluation_id: int | None = None
    #: Content digest of the test images measured (the extractor's whole test set): what the
    #: registry compares with the test set the extractor's card records.
    data_digest: str | None = None
    images_per_s: float | None = None


@dataclass
class BenchResult:
    extractors: list[str]
    heads: list[str]
    bn_mode: str
    batch_size: int
    cells: list[Cell]
    batch_composition: BatchComposition = "common-classes"
    shuffle_seed: int = 0
    threads: int | None = None
    correlation: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Why posting the cells as evaluations failed, if it did (the figures are still here).
    post_error: str | None = None

    def cell(self, extractor: str, head: str) -> Cell:
        return next(c for c in self.cells if c.extractor == extractor and c.head == head)

    def recombination_mean(self) -> float | None:
        """Mean over the cells that recombine parts of different networks."""
        off = [c.accuracy for c in self.cells if not c.own_task]
        return sum(off) / len(off) if off else None

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "recombination_mean": self.recombination_mean()}, indent=2)

    def rich_table(self) -> Table:
        """The matrix as a rich Table. Names lose the prefix they all share (it moves to
        the title) and wrap rather than being cut, so no two rows look alike."""
        from rich.table import Table

        prefix = shared_prefix([*self.extractors, *self.heads])
        short = {n: n.removeprefix(prefix) for n in [*self.extractors, *self.heads]}
        images = "common-class" if self.batch_composition == "common-classes" else "all-class"
        title = (
            f"recombination accuracy (rows: extractor, columns: head; * own task)\nBatchNorm: {self.bn_mode}; "
            f"batches of {self.batch_size} {images} images, shuffled with seed {self.shuffle_seed}"
        )
        table = Table(title=title + (f"\nnames after {prefix}" if prefix else ""))
        table.add_column("extractor \\ head", overflow="fold")
        for h in self.heads:
            table.add_column(short[h], justify="right", overflow="fold")
        for e in self.extractors:
            row = []
            for h in self.heads:
                c = self.cell(e, h)
                row.append(
                    f"{c.accuracy:.1%}{'*' if c.own_task else ''} ±{(c.ci95[1] - c.ci95[0]) / 2:.1%}\n"
                    f"(all {c.unrestricted:.1%}, n={c.samples})"
                    if c.samples
                    else "no class\nin common"
                )
            table.add_row(short[e], *row)
        return table

    def table(self, console: Console | None = None) -> Table:
        """Print the matrix (on ``console``, default stdout) and return it as a rich Table."""
        from rich.console import Console

        table = self.rich_table()
        (console or Console(markup=False, emoji=False)).print(table)
        return table

    def heatmap(self, path: str | Path) -> Path:
        """Write the matrix as a PNG heatmap (see :meth:`heatmap_figure`)."""
        fig = self.heatmap_figure()
        import matplotlib.pyplot as plt

        path = Path(path)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path

    def heatmap_figure(self) -> Any:
        """The heatmap as a matplotlib figure. Readable at 8×8 and beyond: names lose the
        prefix they all share (it moves to the title), the figure grows with the matrix
        so that cells stay square and their figures fit, and the labels never overlap."""
        matplotlib = require("matplotlib", "train", "the benchmark's heatmap")

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        prefix = shared_prefix([*self.extractors, *self.heads])
        short = {n: n.removeprefix(prefix) for n in [*self.extractors, *self.heads]}
        rows, cols = len(self.extractors), len(self.heads)
        longest = max((len(short[n]) for n in [*self.extractors, *self.heads]), default=1)
        label_in = min(4.0, 0.5 + 0.075 * longest)  # room for the longest name, in inches
        cell_in = 0.8
        fig, ax = plt.subplots(
            figsize=(label_in + cell_in * cols + 1.6, label_in * 0.75 + cell_in * rows + 1.2), layout="constrained"
        )
        data = [[self.cell(e, h).accuracy for h in self.heads] for e in self.extractors]
        im = ax.imshow(data, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(cols), [short[h] for h in self.heads], rotation=40, ha="right", fontsize=9)
        ax.set_yticks(range(rows), [short[e] for e in self.extractors], fontsize=9)
        for i, e in enumerate(self.extractors):
            for j, h in enumerate(self.heads):
                c = self.cell(e, h)
                ax.text(
                    j,
                    i,
                    f"{c.accuracy:.0%}{'*' if c.own_task else ''}" if c.samples else "–",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="w" if c.accuracy < 0.6 else "k",
                )
        ax.set_xlabel("head")
        ax.set_ylabel("extractor")
        title = f"recombination accuracy (BatchNorm: {self.bn_mode}; * own task)"
        ax.set_title(title + (f"\nnames after {prefix}" if prefix else ""), fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046)
        return fig


def _task_of(comp: Component) -> str:
    ds = comp.card.provenance.dataset
    return str(getattr(ds, "task", "") or "") if ds is not None else ""


def test_set(comp: Component, given: Any = None) -> tuple[str, Images]:
    """The extractor's task test set: rebuilt from its card (trainer-published cards record
    it under ``provenance.dataset.test``), or from ``given``: a path to a local copy of the
    recorded data (checked against the recorded content digest), or a whole data spec."""
    from partsbin.parts.data import DataMissing, load_split
    from partsbin.parts.data.spec import DataSpec

    task = _task_of(comp)
    ds = comp.card.provenance.dataset
    recorded = getattr(ds, "test", None) if ds is not None else None
    how = f"--data {task or comp.name}=PATH (data={{{(task or comp.name)!r}: PATH}} in Python)"
    digest, limit = None, None
    if isinstance(given, (DataSpec, dict)):
        spec = given if isinstance(given, DataSpec) else _data_spec(given, f"the test data given for {comp.ref}")
    elif recorded is None:
        raise UsageError(
            f"{comp.ref}'s card does not say how to rebuild its test set; give the data with --data "
            f"{comp.name}=SPEC.json (data={{{comp.name!r}: DataSpec(...)}} in Python)"
        )
    else:
        # Read, never pop: the dict belongs to the component's card.
        spec = _data_spec({k: v for k, v in recorded.items() if k not in _NOT_SPEC}, f"{comp.ref}'s recorded test set")
        digest, limit = recorded.get("source_digest"), recorded.get("test_limit")
        if given is not None:
            spec = spec.model_copy(update={"path": str(given)})
    try:
        images = load_split(spec, "test")
    except DataMissing as exc:
        raise DataMissing(
            f"the test data of {comp.ref} (task {task or '?'}) is missing: {exc}. Point at a copy with {how}"
        ) from None
    if digest and images.source_digest != digest:
        where = spec.path or f"the standard location of {spec.source}"
        raise UsageError(
            f"the data at {where} is not the data {comp.ref} was tested on (content {images.source_digest}, "
            f"recorded {digest}); point at the right copy with {how}"
        )
    if limit:
        images = images.subset(range(min(limit, len(images))))
    return f"{spec.source}:{task}:test", images


def _data_spec(value: Any, what: str) -> Any:
    """A data spec, or a :class:`UsageError` naming each bad field (never pydantic's error)."""
    from pydantic import ValidationError

    from partsbin.parts.data.spec import DataSpec
    from partsbin.parts.messages import describe_validation_error

    try:
        return DataSpec.model_validate(value)
    except ValidationError as exc:
        raise UsageError(f"{what} is not a data spec: {describe_validation_error(exc)}") from None


# Keys of a card's recorded test set that are not part of the data spec.
_NOT_SPEC = RECORDED_TEST_EXTRAS


def recorded_test_spec(comp: Component) -> Any:
    """The test set ``comp``'s card records, as a data spec (its ``test_limit`` as ``limit``).

    ``partsbin bench --head-task`` measures every extractor on its head's task this way:
    an updated head (``update-head``) records the new task, with all of its classes, while
    each extractor's card records the task it was trained on."""

    ds = comp.card.provenance.dataset
    recorded = getattr(ds, "test", None) if ds is not None else None
    if not isinstance(recorded, dict):
        raise UsageError(f"{comp.ref}'s card does not record a test set (provenance.dataset.test)")
    spec = _data_spec({k: v for k, v in recorded.items() if k not in _NOT_SPEC}, f"{comp.ref}'s recorded test set")
    limit = recorded.get("test_limit")
    return spec.model_copy(update={"limit": limit}) if limit else spec


def _given(data: dict[str, Any] | None, comp: Component) -> Any:
    """What ``data`` says for this extractor: by ref, by name, or by its task's name."""
    if not data:
        return None
    for key in (comp.ref, comp.name, _task_of(comp)):
        if key and key in data:
            return data[key]
    return None


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Replace the running statistics with those of ``x`` (Li et al. 2016a, AdaBN)."""
    layers = batchnorm_layers(model)
    saved = [(bn.momentum, bn.training) for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
        bn.train()
    set_bn_mode(model, "running")
    for start in range(0, len(x), batch_size):
        model(x[start : start + batch_size])
    for bn, (momentum, training) in zip(layers, saved, strict=False):
        bn.momentum = momentum
        bn.train(training)


@torch.no_grad()
def _features(extractor: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with evaluating(extractor, "batch"):
        return torch.cat([extractor(x[s : s + batch_size]) for s in range(0, len(x), batch_size)])


@torch.no_grad()
def cross_correlation(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(without permutation, with the best permutation) — Li et al. 2016: each channel's
    activations over all images and positions, Pearson correlation channel to channel,
    averaged over channels."""
    if a.shape != b.shape:
        raise ValueError(f"feature shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    c = a.shape[1]
    fa = a.transpose(0, 1).reshape(c, -1).double()
    fb = b.transpose(0, 1).reshape(c, -1).double()
    fa = (fa - fa.mean(1, keepdim=True)) / (fa.std(1, keepdim=True) + 1e-12)
    fb = (fb - fb.mean(1, keepdim=True)) / (fb.std(1, keepdim=True) + 1e-12)
    corr = (fa @ fb.T) / (fa.shape[1] - 1)  # c × c
    direct = float(corr.diagonal().mean())
    linear_sum_assignment = require(
        "scipy.optimize", "train", "feature correlation with the best permutation"
    ).linear_sum_assignment

    rows, cols = linear_sum_assignment(corr.numpy(), maximize=True)
    return direct, float(corr[rows, cols].mean())


def _latency(model: AssembledModel, x: torch.Tensor, batch_size: int, device: str = "cpu") -> tuple[float, float]:
    model.to(device)
    batch = x[:batch_size].to(device)
    # CUDA runs asynchronously: time from a synchronised start to a synchronised end.
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    with torch.no_grad():
        model(batch)  # warm-up
        sync()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            model(batch)
            sync()
            times.append(time.perf_counter() - t)
    best = min(times)
    return best * 1000, len(batch) / best


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
        return _bench_distributed(
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
        test_sets = {e.ref: test_set(e, _given(data, e)) for e in exts}
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
            feats = {e.ref: _features(e.build(), x, batch_size) for e in exts}
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
    test: tuple[str, Images],
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
            recalibrate_bn(nn.Sequential(e_copy, head), chosen.x, settings.batch_size)
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
            cell.latency_ms, cell.images_per_s = _latency(model, images.x, settings.batch_size, latency_device)
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


def _bench_distributed(
    registry: Registry,
    extractors: list[str],
    heads: list[str],
    *,
    bn_mode: BenchBN,
    batch_size: int,
    batch_composition: BatchComposition,
    shuffle_seed: int,
    threads: int | None,
    heads_per_job: int,
    namespace: str | None,
    poll_seconds: float,
) -> BenchResult:
    from partsbin.client.errors import ServerError

    if heads_per_job < 1:
        raise UsageError("heads_per_job must be at least 1")
    me = registry.whoami()
    if namespace is None:
        namespace = me["namespaces"][0] if me["namespaces"] else extractors[0].partition("/")[0]
    registry.check_can_publish(namespace, f"submitting evaluation jobs into namespace {namespace!r}")
    # Exact versions, so that every job measures the same components however the latest moves.
    exts = [registry.info(r).ref for r in extractors]
    hds = [registry.info(r).ref for r in heads]
    jobs: dict[int, tuple[str, list[str]]] = {}
    for e in exts:
        for start in range(0, len(hds), heads_per_job):
            chunk = hds[start : start + heads_per_job]
            spec = {
                "kind": "evaluate",
                "name": f"bench-{e.replace('/', '-').replace('@', '-v')}"[:64],
                "namespace": namespace,
                "extractor": e,
                "heads": chunk,
                "bn_mode": bn_mode,
                "batch_composition": batch_composition,
                "shuffle_seed": shuffle_seed,
                "settings": {"eval_batch_size": batch_size, **({"threads": threads} if threads else {})},
            }
            jobs[registry.submit(spec).id] = (e, chunk)
    _wait_for_jobs(registry, list(jobs), poll_seconds)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for e in exts:
        for ev in registry.evaluations(extractor=e):
            job = str((ev.get("details") or {}).get("job"))
            if job.isdigit() and int(job) in jobs:
                found[(ev["extractor"], ev["head"])] = ev
    cells = []
    for e, chunk in jobs.values():
        for h in chunk:
            posted = found.get((e, h))
            if posted is None:
                # Not posted: the pair shares no class (the worker measured nothing).
                cells.append(Cell(e, h, 0.0, 0.0, 0, (0.0, 1.0), False))
                continue
            ev = posted
            d = ev.get("details") or {}
            ci = d.get("ci95") or [0.0, 1.0]
            cells.append(
                Cell(
                    e,
                    h,
                    ev["value"],
                    float(d.get("unrestricted", ev["value"])),
                    ev["samples"],
                    (ci[0], ci[1]),
                    bool(d.get("own_task")),
                    dataset=ev["dataset"],
                    evaluation_id=ev["id"],
                )
            )
    if len(cells) != len(exts) * len(hds):
        raise ServerError(
            f"the evaluation jobs {sorted(jobs)} left {len(exts) * len(hds) - len(cells)} cells unmeasured"
        )
    return BenchResult(
        exts,
        hds,
        bn_mode,
        batch_size,
        cells,
        batch_composition=batch_composition,
        shuffle_seed=shuffle_seed,
        threads=threads,
    )


def _wait_for_jobs(registry: Registry, ids: list[int], poll_seconds: float) -> None:
    """Follow the jobs until every one has finished; one that failed or was cancelled
    fails the benchmark, naming it and its error."""
    from partsbin.client.errors import ServerError
    from partsbin.client.progress import progress_bar

    pending = set(ids)
    with progress_bar(registry.progress, len(ids), f"{len(ids)} evaluation jobs") as advance:
        while pending:
            for job_id in sorted(pending):
                job = registry.jobs.get(job_id)
                if job["status"] == "succeeded":
                    pending.discard(job_id)
                    advance(1)
                elif job["status"] in ("failed", "cancelled"):
                    last = (job.get("error") or "").strip().splitlines()[-1:] or [job["status"]]
                    raise ServerError(f"evaluation job {job_id} {job['status']}: {last[0]}")
            if pending:
                time.sleep(poll_seconds)
