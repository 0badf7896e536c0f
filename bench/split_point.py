"""Does compatibility depend on where the network is split? (issue 25, part 1)

    flock /tmp/heavy.lock python bench/split_point.py                  # ResNet, then MobileNetV2, P1
    flock /tmp/heavy.lock python bench/split_point.py --arch mnv2 --pair P2
    python bench/split_point.py --report                               # tables from the runs recorded so far

The earlier version of the paper (arXiv 2004.03898) states that "the degree of
compatibility is highly dependent on where we split the network into a feature extractor
and a classification head"; the AAAI paper splits ResNet-56 after stage 2 and leaves the
other splits to its supplementary material, which is not in /work/shared/papers/.

The quick setting of ``reproduce_fig2.py`` (500 steps per network at batch 64, RP on a
quarter of each batch, lr 0.05 cosine, 2,000 test images per task, seeds 0 and 1), at every
split point an architecture offers, for the independent baseline and the full method
(IIW+RP+DCC, joint):

- ResNet-8 width 16 (``resnet_cifar``): after stage 1, stage 2 (the paper's, and the quick
  reproduction's) and stage 3 (the head is then global pooling and the classifier only).
- MobileNetV2 width 0.5 (``mobilenetv2_cifar``, as ``reproduce_cross_arch.py --setting cpu``)
  after inverted-residual blocks 3, 6, 11 (the paper's §5.2 split) and 16: the last block of
  each of its channel groups but 11.

Pairs as in ``rp_conditions.py``: P1 is DESIGN.md's (8 common classes), P2 the milder one
(4 common classes). Everything trains through the trainer, publishes to an embedded
registry and is measured by ``Registry.bench`` (common-class batches, batch statistics:
``reproduce_fig2.measure``). Every finished run is appended to ``split_point_cpu_runs.jsonl``
so that an interrupted run resumes where it stopped; ``--stop-after`` starts no new run
once that many minutes have passed, so a run can be fitted to a time budget.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from departures import quick_spec
from reproduce_fig2 import measure
from rp_conditions import PAIRS

from partsbin import Registry
from partsbin.parts.jobs.train import TrainSpec
from partsbin.registry.config import Settings
from partsbin.registry.embedded import embedded_registry
from partsbin.trainer.jobs import run_job

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RUNS = RESULTS / "split_point_cpu_runs.jsonl"
SEEDS = [0, 1]
INPUT_SIZE = 28  # Fashion-MNIST

ARCHS: dict[str, dict[str, Any]] = {
    "resnet": {
        "name": "resnet_cifar",
        "config": {"depth": 8, "width": 16},
        "splits": ["stage1", "stage2", "stage3"],
        "paper_split": "stage2",
    },
    "mnv2": {
        "name": "mobilenetv2_cifar",
        "config": {"width_mult": 0.5},
        "splits": ["block3", "block6", "block11", "block16"],
        "paper_split": "block11",
    },
}
METHODS: list[tuple[str, list[str], str]] = [
    ("independent", [], "independent"),
    ("IIW+RP+DCC (joint)", ["IIW", "RP", "DCC"], "joint"),
]
CHANCE = {"P1": 1 / 8, "P2": 1 / 4}


def spec_at(
    arch: str, split: str, pair: str, label: str, methods: list[str], scheme: str, seed: int, **over: Any
) -> TrainSpec:
    """The quick setting (``departures.quick_spec``) with ``arch`` split at ``split``."""
    slug = "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")
    # Card names stop at 64 characters and the longest part name adds 12 ("-a-extractor").
    name = f"{arch}-{split}-{pair.lower()}-{slug}"[:44].rstrip("-") + f"-s{seed}"
    base = quick_spec(name, methods, scheme, seed, PAIRS[pair](), namespace="split", **over)
    a = ARCHS[arch]
    return TrainSpec.model_validate(
        {**base.model_dump(mode="json"), "arch": {"name": a["name"], "config": a["config"], "split": split}}
    )


@contextmanager
def registry() -> Iterator[Registry]:
    with tempfile.TemporaryDirectory(prefix="partsbin-split-") as tmp:
        data = Path(tmp)
        with (
            embedded_registry(Settings(data_dir=data)) as emb,
            Registry(emb.url, emb.token, cache_dir=data / "c") as reg,
        ):
            yield reg


def load_runs(path: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    if not path.exists():
        return {}
    return {tuple(r["key"]): r for r in map(json.loads, path.read_text().splitlines())}


def train_and_measure(reg: Registry, spec: TrainSpec) -> tuple[dict[str, float], list[str]]:
    t0 = time.perf_counter()
    res = run_job(spec, reg)
    m = measure(reg, res.refs, "common-classes")
    m["seconds"] = time.perf_counter() - t0
    return m, list(res.refs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="*", choices=sorted(ARCHS), default=["resnet", "mnv2"])
    parser.add_argument("--pair", nargs="*", choices=sorted(PAIRS), default=["P1"])
    parser.add_argument("--seeds", type=int, nargs="*", default=SEEDS)
    parser.add_argument("--splits", nargs="*", help="only these split points")
    parser.add_argument("--methods", nargs="*", help="only these methods (labels as in METHODS)")
    parser.add_argument("--stop-after", type=float, help="start no new run after this many minutes")
    parser.add_argument("--report", action="store_true", help="write the tables from the recorded runs, train nothing")
    args = parser.parse_args()
    done = load_runs(RUNS)
    if not args.report:
        started = time.perf_counter()
        RUNS.parent.mkdir(parents=True, exist_ok=True)
        with registry() as reg:
            for arch in args.arch:
                for pair in args.pair:
                    # Every split's first seed before any second one: a run stopped by the
                    # budget still has each split measured once.
                    for seed in args.seeds:
                        for split in ARCHS[arch]["splits"]:
                            if args.splits and split not in args.splits:
                                continue
                            for label, methods, scheme in METHODS:
                                if args.methods and label not in args.methods:
                                    continue
                                key = (arch, split, pair, label, seed)
                                if key in done:
                                    continue
                                if args.stop_after and (time.perf_counter() - started) / 60 > args.stop_after:
                                    print(f"--stop-after {args.stop_after} min reached; not starting {key}", flush=True)
                                    write_results(done)
                                    return
                                m, _ = train_and_measure(reg, spec_at(arch, split, pair, label, methods, scheme, seed))
                                done[key] = record = {"key": list(key), "metrics": m}
                                with RUNS.open("a") as fh:
                                    fh.write(json.dumps(record) + "\n")
                                print(
                                    f"{arch} {split} {pair} {label} seed {seed}: recombination "
                                    f"{m['recombination']:.1%}, own {m['own']:.1%} ({m['seconds']:.0f} s)",
                                    flush=True,
                                )
    write_results(done)


def ms(values: list[float], pct: bool = True) -> str:
    if not values:
        return "not run"
    mean = statistics.mean(values)
    if len(values) == 1:  # a spread of one run would read as a measured zero
        return f"{mean:.1%} (one seed)" if pct else f"{mean:.2f} (one seed)"
    std = statistics.stdev(values)
    return f"{mean:.1%} ± {std:.1%}" if pct else f"{mean:.2f} ± {std:.2f}"


def shape_at(arch: str, split: str) -> dict[str, int]:
    """What crosses the junction, and how much of the network the head is."""
    from partsbin.parts.archs import build, junction_of

    a = ARCHS[arch]
    cfg = {**a["config"], "in_chans": 1, "num_classes": 9}
    chs, side = junction_of(a["name"], cfg, split, INPUT_SIZE)
    net = build(a["name"], split=split, device="meta", **cfg)
    head = sum(p.numel() for p in net.head().parameters())
    return {"channels": chs, "side": side or 0, "head_params": head, "params": sum(p.numel() for p in net.parameters())}


def write_results(done: dict[tuple[Any, ...], dict[str, Any]]) -> None:
    seconds = sum(r["metrics"]["seconds"] for r in done.values())

    def vals(arch: str, split: str, pair: str, label: str, metric: str) -> list[float]:
        return [
            r["metrics"][metric]
            for (a, s, p, lab, _), r in sorted(done.items())
            if (a, s, p, lab) == (arch, split, pair, label)
        ]

    lines = [
        "# Recombination accuracy by split point (issue 25, part 1)",
        "",
        "`python bench/split_point.py`: the quick setting of `reproduce_fig2.py` (500 steps per network at batch 64, "
        "RP on a quarter of each batch, lr 0.05 cosine, 2,000 test images per task) at each split point, "
        f"seeds {SEEDS}; {seconds / 60:.0f} minutes of training and measuring on this machine (2 CPU cores, no GPU). "
        "Recombination accuracy: mean of both directions over the common classes, BatchNorm batch statistics, "
        "batches of common-class images (the benchmark's default). Own-task accuracy: each network with its own "
        "head. Mean ± std over seeds. Feature correlation (direct / best permutation) is the benchmark's, "
        "between the two extractors' features on the same images. The junction is channels × side at "
        "28×28 input; the head's share is its parameters over the whole network's.",
        "",
    ]
    summary: dict[str, Any] = {}
    for arch, a in ARCHS.items():
        for pair in PAIRS:
            if not any(k[0] == arch and k[2] == pair for k in done):
                lines += [f"{a['name']} {a['config']} on {pair}: not run.", ""]
                continue
            lines += [
                f"## {a['name']} {a['config']}, pair {pair} (chance {CHANCE[pair]:.1%})",
                "",
                "| split | junction | head's share of parameters | recombination, independent | "
                "recombination, IIW+RP+DCC joint | own-task, independent | own-task, IIW+RP+DCC joint | "
                "feature correlation, IIW+RP+DCC (direct / best perm.) |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for split in a["splits"]:
                shape = shape_at(arch, split)
                cell = {
                    label: {m: vals(arch, split, pair, label, m) for m in ("recombination", "own", "corr", "corr_perm")}
                    for label, _, _ in METHODS
                }
                summary.setdefault(arch, {}).setdefault(pair, {})[split] = {"shape": shape, **cell}
                full = cell["IIW+RP+DCC (joint)"]
                mark = " (paper's)" if split == a["paper_split"] else ""
                lines.append(
                    f"| {split}{mark} | {shape['channels']} × {shape['side']}² | "
                    f"{shape['head_params'] / shape['params']:.0%} | "
                    f"{ms(cell['independent']['recombination'])} | {ms(full['recombination'])} | "
                    f"{ms(cell['independent']['own'])} | {ms(full['own'])} | "
                    f"{ms(full['corr'], pct=False)} / {ms(full['corr_perm'], pct=False)} |"
                )
            lines.append("")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "split_point_cpu.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "split_point_cpu.json").write_text(
        json.dumps(
            {"minutes": seconds / 60, "seeds": SEEDS, "archs": ARCHS, "results": summary, "runs": list(done.values())},
            indent=2,
        )
        + "\n"
    )
    plot(RESULTS / "split_point_cpu.png", summary)
    print("\n".join(lines))


def plot(path: Path, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(arch, pair) for arch in summary for pair in summary[arch]]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (arch, pair) in zip(axes[0], panels, strict=True):
        splits = list(summary[arch][pair])
        xs = range(len(splits))
        for label, colour, style in (
            ("independent", "#999999", "--"),
            ("IIW+RP+DCC (joint)", "#3b7dd8", "-"),
        ):
            for metric, marker, what in (("recombination", "o", "recombination"), ("own", "s", "own task")):
                v = [summary[arch][pair][s][label][metric] for s in splits]
                mean = [100 * statistics.mean(x) if x else float("nan") for x in v]
                err = [100 * statistics.stdev(x) if len(x) > 1 else 0.0 for x in v]
                ax.errorbar(
                    list(xs),
                    mean,
                    yerr=err,
                    color=colour,
                    linestyle=style if metric == "recombination" else ":",
                    marker=marker,
                    capsize=3,
                    label=f"{label}, {what}",
                )
        ax.axhline(100 * CHANCE[pair], color="#cc4444", linewidth=0.8, label="chance")
        ax.set_xticks(list(xs), splits)
        ax.set_ylim(0, 100)
        ax.set_xlabel("split after")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{ARCHS[arch]['name']}, {pair}")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
