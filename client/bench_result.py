"""The result of a recombination benchmark (``Registry.bench``, ``partsbin bench``):
its cells, and the matrix as a table, JSON or a heatmap."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partsbin.parts.extras import require
from partsbin.parts.names import shared_prefix

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from partsbin.parts.evaluation import BatchComposition

__all__ = ["BenchResult", "Cell"]


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
