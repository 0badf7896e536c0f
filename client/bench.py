"""Measuring how well stored components recombine (``Registry.bench``, ``partsbin bench``).

- The recombination matrix: every extractor × head, on the **extractor's** task test
  images of the classes the pair shares (paper §4; docs/architecture.md); the prediction over the
  shared classes' logits, the unrestricted figure too; sample counts and 95% intervals.
  Extractor and head of one network give its own-task accuracy.
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
from partsbin.parts.batchnorm import batchnorm_layers, set_bn_mode
from partsbin.parts.extras import require
from partsbin.parts.metrics import recombination_accuracy, shared_classes

if TYPE_CHECKING:
    from partsbin.client.registry import Component, Registry

__all__ = ["BenchResult", "Cell", "bench", "cross_correlation", "recalibrate_bn", "load_test_data"]

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
    latency_ms: float | None = None
    images_per_s: float | None = None


@dataclass
class BenchResult:
    extractors: list[str]
    heads: list[str]
    bn_mode: str
    batch_size: int
    cells: list[Cell]
    correlation: dict[str, dict[str, float]] = field(default_factory=dict)

    def cell(self, extractor: str, head: str) -> Cell:
        return next(c for c in self.cells if c.extractor == extractor and c.head == head)

    def recombination_mean(self) -> float | None:
        """Mean over the cells that recombine parts of different networks."""
        off = [c.accuracy for c in self.cells if not c.own_task]
        return sum(off) / len(off) if off else None

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "recombination_mean": self.recombination_mean()}, indent=2)

    def table(self):
        from rich.table import Table

        table = Table(
            title=f"recombination accuracy (BatchNorm: {self.bn_mode}; rows: extractor, columns: head; * own task)"
        )
        table.add_column("extractor \\ head")
        for h in self.heads:
            table.add_column(h, justify="right")
        for e in self.extractors:
            row = []
            for h in self.heads:
                c = self.cell(e, h)
                row.append(
                    f"{c.accuracy:.1%}{'*' if c.own_task else ''} ±{(c.ci95[1] - c.ci95[0]) / 2:.1%}\n(all {c.unrestricted:.1%}, n={c.samples})"
                )
            table.add_row(e, *row)
        return table

    def heatmap(self, path: str | Path) -> Path:
        matplotlib = require("matplotlib", "train", "the benchmark's heatmap")

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        data = [[self.cell(e, h).accuracy for h in self.heads] for e in self.extractors]
        fig, ax = plt.subplots(figsize=(3.6 + 1.6 * len(self.heads), 2.4 + 1.0 * len(self.extractors)))
        im = ax.imshow(data, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(self.heads)), [h.split("/")[-1] for h in self.heads], rotation=30, ha="right")
        ax.set_yticks(range(len(self.extractors)), [e.split("/")[-1] for e in self.extractors])
        for i, e in enumerate(self.extractors):
            for j, h in enumerate(self.heads):
                c = self.cell(e, h)
                ax.text(
                    j,
                    i,
                    f"{c.accuracy:.0%}{'*' if c.own_task else ''}",
                    ha="center",
                    va="center",
                    color="w" if c.accuracy < 0.6 else "k",
                )
        ax.set_xlabel("head")
        ax.set_ylabel("extractor")
        ax.set_title(f"recombination accuracy\n(BatchNorm: {self.bn_mode} statistics; * own task)", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def load_test_data(comp: Component) -> tuple[str, Any]:
    """The extractor's task test set, rebuilt from its card (trainer-published cards
    record it under ``provenance.dataset.test``)."""
    from partsbin.parts.data import load_split
    from partsbin.parts.training_spec import DataSpec

    ds = comp.card.provenance.dataset
    test = getattr(ds, "test", None) if ds is not None else None
    if test is None:
        raise ValueError(
            f"{comp.ref}'s card does not say how to rebuild its test set; pass data={{'{comp.ref}': DataSpec(...)}}"
        )
    # Read, never pop: the dict belongs to the component's card.
    limit = test.get("test_limit") if isinstance(test, dict) else None
    spec = DataSpec.model_validate({k: v for k, v in test.items() if k != "test_limit"})
    images = load_split(spec, "test")
    if limit:
        images = images.subset(range(min(limit, len(images))))
    return f"{spec.source}:{getattr(ds, 'task', '')}:test", images


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
    set_bn_mode(extractor, "batch")
    extractor.eval()
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


def _latency(model: AssembledModel, x: torch.Tensor, batch_size: int) -> tuple[float, float]:
    batch = x[:batch_size]
    with torch.no_grad():
        model(batch)  # warm-up
        times = []
        for _ in range(5):
            t = time.perf_counter()
            model(batch)
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
    correlation: bool = False,
    latency: bool = False,
    post: bool = True,
) -> BenchResult:
    from partsbin.parts.data import load_split
    from partsbin.parts.training_spec import DataSpec

    exts = [registry.pull(r) for r in extractors]
    hds = [registry.pull(r) for r in heads]
    test_sets: dict[str, tuple[str, Any]] = {}
    for e in exts:
        given = (data or {}).get(e.ref) or (data or {}).get(e.name)
        if given is not None:
            spec = given if isinstance(given, DataSpec) else DataSpec.model_validate(given)
            test_sets[e.ref] = (f"{spec.source}:test", load_split(spec, "test"))
        else:
            test_sets[e.ref] = load_test_data(e)
    cells = []
    for e in exts:
        dataset, images = test_sets[e.ref]
        for h in hds:
            check_junctions(e.ref, e.card, h.ref, h.card)
            model = AssembledModel(e.build(), h.build(), bn_mode="batch" if bn_mode == "batch" else "running")
            if bn_mode == "recalibrate":
                recalibrate_bn(model, images.x, batch_size)
            with torch.no_grad():
                logits = torch.cat([model(images.x[s : s + batch_size]) for s in range(0, len(images), batch_size)])
            acc = recombination_accuracy(logits, images.y, images.classes, h.card.labels)
            own = h.card.compat.sibling == e.ref
            cell = Cell(e.ref, h.ref, acc.restricted, acc.unrestricted, acc.n, acc.ci95, own)
            classes = len(shared_classes(images.classes, h.card.labels))
            if latency:
                cell.latency_ms, cell.images_per_s = _latency(model, images.x, batch_size)
            cells.append(cell)
            if post and acc.n:
                registry.post_evaluation(
                    extractor=e.ref,
                    head=h.ref,
                    dataset=dataset,
                    value=acc.restricted,
                    samples=acc.n,
                    bn_mode="recalibrated" if bn_mode == "recalibrate" else bn_mode,
                    batch_size=batch_size,
                    classes=classes,
                    details={"unrestricted": acc.unrestricted, "ci95": list(acc.ci95), "own_task": own},
                )
    result = BenchResult([e.ref for e in exts], [h.ref for h in hds], bn_mode, batch_size, cells)
    if correlation and len(exts) > 1:
        # Same images for every pair: the first extractor's test set.
        x = test_sets[exts[0].ref][1].x
        feats = {e.ref: _features(e.build(), x, batch_size) for e in exts}
        for i, a in enumerate(exts):
            for b in exts[i + 1 :]:
                direct, permuted = cross_correlation(feats[a.ref], feats[b.ref])
                result.correlation[f"{a.ref} vs {b.ref}"] = {"direct": direct, "best_permutation": permuted}
    return result
