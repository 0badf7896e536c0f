"""The paper's Figure 5 (§5.3, faster transfer learning), on tasks we can install.

    flock /tmp/heavy.lock python bench/reproduce_transfer.py      # quick: 2 CPU cores, a few minutes

Curves: compatible parts (RP+IIW, as partsbin's other reproductions; and RP alone, the
paper's §5.3 setting), the source extractor with a fresh head, independent components.

The paper's setting: a frozen RP head learnt on a third task; a source network and each
target network trained incrementally against it (RP, and IIW from shared initial weights);
the source extractor is recombined with each target head and fine-tuned on the target
task. Baselines: the source extractor with a freshly initialised head, and independently
trained components (each network with its own randomly initialised RP head, as the paper
does for fairness). Everything goes through the product: the trainer trains and publishes
to a registry (PARTSBIN_URL, or an embedded one), the freshly initialised head is pushed as
a component, and each curve is a ``transfer`` job run by its runner (the one a worker runs),
which posts one evaluation per point with ``finetune_steps``.

Departures from the paper (ILSVRC-12 → CIFAR-10 / STL-10 / CIFAR-100, ResNet-56 trained for
many epochs, RP head from CIFAR-100): all tasks are 8×8 grey images (scikit-learn's digits
and Fashion-MNIST downsampled to 8×8) so that a CPU finishes in minutes; ResNet-8 width 8;
300 training steps per network; three seeds.

- third task (learns the RP head): Fashion-MNIST 8×8, even-indexed, first 6,000 images;
- source: digits, even-indexed (10 classes);
- targets: digits odd-indexed at low contrast with noise; digits odd-indexed inverted;
  Fashion-MNIST 8×8, odd-indexed, first 6,000 images (10 classes each).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from partsbin import Registry
from partsbin.parts.archs import build
from partsbin.parts.data import load_split
from partsbin.parts.data.spec import DataSpec
from partsbin.parts.describe import card_for
from partsbin.parts.jobs.applications import TransferResult, TransferSpec
from partsbin.parts.jobs.train import TrainSpec
from partsbin.trainer.jobs import run_job

ROOT = Path(__file__).resolve().parents[1]
ARCH = {"name": "resnet_cifar", "config": {"depth": 8, "width": 8}}
SMALL = [{"op": "resize", "size": 8}]
NOISY = [{"op": "contrast", "factor": 0.4}, {"op": "brightness", "delta": 0.3}, {"op": "noise", "sigma": 0.1}]

RP_TASK = {"source": "fashion-mnist", "indices": "even", "limit": 6000, "transforms": SMALL}
SOURCE = {"source": "digits", "indices": "even"}
TARGETS: dict[str, dict[str, Any]] = {
    "digits-noisy": {"source": "digits", "indices": "odd", "transforms": NOISY},
    "digits-inverted": {"source": "digits", "indices": "odd", "transforms": [{"op": "invert"}]},
    "fashion-8px": {"source": "fashion-mnist", "indices": "odd", "limit": 6000, "transforms": SMALL},
}
TEST_LIMIT = 2000
PAPER = {  # Fig. 5, read off the figure's overlays: ours directly after recombination
    "recombined, 0 steps": "40.0%-66.4% (ours, RP+IIW); baselines at chance",
}


def _test(data: dict[str, Any]) -> dict[str, Any]:
    test = {k: v for k, v in data.items() if k not in ("indices", "limit")}
    return {**test, "limit": TEST_LIMIT}


def _train(reg: Registry, name: str, data: dict[str, Any], seed: int, steps: int, **kw: Any) -> dict[str, str]:
    spec = TrainSpec(
        name=name,
        namespace="repro",
        arch=ARCH,
        tasks=[{"name": "t", "data": data, "test": _test(data)}],
        settings={"steps": steps, "batch_size": 64, "lr": 0.05, "rp_fraction": 0.5, "seed": seed},
        **kw,
    )
    refs = run_job(spec, reg).refs
    return {r.split("@")[0].removeprefix(f"repro/{name}-"): r for r in refs}


def _fresh_head(reg: Registry, name: str, labels: list[str], seed: int) -> str:
    """A freshly initialised task head for the target's classes, stored like any part."""
    torch.manual_seed(seed)
    config = {**ARCH["config"], "in_chans": 1, "num_classes": len(labels)}
    net = build(ARCH["name"], **config)
    card = card_for(
        name=f"repro/{name}",
        role="head",
        arch=ARCH["name"],
        config=config,
        split=net.split,
        labels=labels,
        description="freshly initialised head (the transfer baseline)",
        provenance={"seed": seed},
    )
    return reg.push(net.head(), card).ref


def _curve(
    reg: Registry, name: str, ext: str, head: str, data: dict[str, Any], steps: list[int]
) -> list[dict[str, Any]]:
    spec = TransferSpec(
        name=name,
        namespace="repro",
        extractor=ext,
        head=head,
        data=data,
        test=_test(data),
        steps=steps,
        settings={"lr": 0.01, "batch_size": 64, "schedule": "constant", "seed": 0},
    )
    result = run_job(spec, reg)
    assert isinstance(result, TransferResult)
    return [p.model_dump() for p in result.curve]


COMPAT = "compatible (RP+IIW, recombined)"
RP_ONLY = "compatible (RP only, recombined)"
FRESH = "source extractor + fresh head"
INDEPENDENT = "independent components"


def one_seed(reg: Registry, s: int, steps: int, smoke: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    # The third task learns the RP head (and publishes the shared initial weights).
    third = _train(reg, f"third-s{s}", RP_TASK, s, steps, methods=["RP", "IIW"], scheme="incremental")
    rp, init = third["aux-rp"], third["init"]
    compat = {"methods": ["RP", "IIW"], "scheme": "incremental", "anchors": [rp], "init": init}
    # RP alone, as the paper's §5.3 states it: the same frozen RP head, no shared initial weights.
    rp_only = {"methods": ["RP"], "scheme": "incremental", "anchors": [rp]}
    source = _train(reg, f"source-s{s}", SOURCE, s + 1, steps, **compat)
    source_rp = _train(reg, f"source-rp-s{s}", SOURCE, s + 3, steps, **rp_only)
    # Independent components: each with its own randomly initialised RP head, own seed.
    source_ind = _train(reg, f"source-ind-s{s}", SOURCE, s + 2, steps, scheme="upper-bound")
    for i, (name, data) in enumerate(TARGETS.items()):
        target = _train(reg, f"{name}-s{s}", data, s + 10 + i, steps, **compat)
        target_rp = _train(reg, f"{name}-rp-s{s}", data, s + 40 + i, steps, **rp_only)
        target_ind = _train(reg, f"{name}-ind-s{s}", data, s + 20 + i, steps, scheme="upper-bound")
        n = len(load_split(DataSpec.model_validate(data), "train"))
        epoch = math.ceil(n / 64)
        points = sorted({0, 1, 3, 10, 30, epoch, 100, 300})
        if smoke:
            points = [0, 1, epoch]
        labels = reg.info(target["t-head"]).card.labels
        fresh = _fresh_head(reg, f"{name}-fresh-head-s{s}", labels, s + 30 + i)
        curves = {
            COMPAT: _curve(reg, f"{name}-compat-s{s}", source["t-extractor"], target["t-head"], data, points),
            RP_ONLY: _curve(reg, f"{name}-rp-s{s}", source_rp["t-extractor"], target_rp["t-head"], data, points),
            FRESH: _curve(reg, f"{name}-fresh-s{s}", source["t-extractor"], fresh, data, points),
            INDEPENDENT: _curve(reg, f"{name}-ind-s{s}", source_ind["t-extractor"], target_ind["t-head"], data, points),
        }
        results[name] = {"train_images": n, "epoch_steps": epoch, "classes": len(labels), "curves": curves}
        print(
            f"seed {s}, {name}: "
            + "; ".join(
                f"{k}: {c[0]['accuracy']:.1%} at 0, "
                f"{next(p['accuracy'] for p in c if p['finetune_steps'] == epoch):.1%} after one epoch"
                for k, c in curves.items()
            ),
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--smoke", action="store_true", help="a few steps of everything, no results written")
    args = parser.parse_args()
    started = time.perf_counter()
    runs: dict[int, Any] = {}
    with ExitStack() as stack:
        if os.environ.get("PARTSBIN_URL"):
            reg = stack.enter_context(Registry())
        else:
            from partsbin.registry.config import Settings
            from partsbin.registry.embedded import embedded_registry

            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="partsbin-transfer-")))
            emb = stack.enter_context(embedded_registry(Settings(data_dir=folder)))
            reg = stack.enter_context(Registry(url=emb.url, token=emb.token, cache_dir=folder / "cache"))
        for seed in args.seeds:
            # Seeds 100 apart: each seed's networks (seed + 0..42) never share initial weights with another's.
            runs[seed] = one_seed(reg, 100 * seed, args.train_steps, args.smoke)
            # Written after every seed: an interrupted reproduction keeps what it measured.
            if not args.smoke:
                write_results(runs, (time.perf_counter() - started) / 60, args, quiet=True)
    if args.smoke:
        plot(Path(tempfile.mkdtemp()) / "smoke.png", runs)
        return
    write_results(runs, (time.perf_counter() - started) / 60, args)


def _at(runs: dict[int, Any], name: str, method: str, step: int) -> list[float]:
    out = []
    for r in runs.values():
        at = {p["finetune_steps"]: p["accuracy"] for p in r[name]["curves"][method]}
        if step in at:
            out.append(at[step])
    return out


def _ms(v: list[float]) -> str:
    if not v:
        return "—"
    return f"{statistics.mean(v):.1%} ± {statistics.stdev(v) if len(v) > 1 else 0:.1%}"


def write_results(runs: dict[int, Any], minutes: float, args: argparse.Namespace, quiet: bool = False) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(runs.values()))
    lines = [
        "# Figure 5 (faster transfer: recombine, then fine-tune), quick setting",
        "",
        f"`flock /tmp/heavy.lock python bench/reproduce_transfer.py --seeds {' '.join(map(str, runs))}`: "
        f"{len(runs)} seeds, {args.train_steps} training steps per network (ResNet-8 width 8, 8×8 grey images), "
        f"fine-tuning SGD lr 0.01 constant at batch 64; {minutes:.1f} minutes on this machine (2 shared CPU "
        f"cores). Accuracy on the target test set (first {TEST_LIMIT} images), batch-statistics BatchNorm, "
        "chance = 10%; mean ± std over seeds.",
        "",
        "| target | train images (1 epoch = steps) | method | 0 steps | 1 epoch | 100 steps | 300 steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in first.items():
        for method in r["curves"]:
            cells = [_ms(_at(runs, name, method, k)) for k in (0, r["epoch_steps"], 100, 300)]
            lines.append(
                f"| {name} | {r['train_images']} ({r['epoch_steps']}) | {method} | " + " | ".join(cells) + " |"
            )
    lines += [
        "",
        "Paper (Fig. 5, ILSVRC-12 → CIFAR-10 / STL-10 / CIFAR-100, ResNet-56): 40.0%–66.4% directly after "
        "recombination for the compatible components, both baselines at chance; still ahead after one epoch; all "
        "converge after several epochs.",
        "",
        "![transfer curves](transfer_quick.png)",
        "",
    ]
    (out / "transfer_quick.md").write_text("\n".join(lines) + "\n")
    (out / "transfer_quick.json").write_text(
        json.dumps({"minutes": minutes, "seeds": list(runs), "runs": runs}, indent=2) + "\n"
    )
    plot(out / "transfer_quick.png", runs)
    if not quiet:
        print("\n".join(lines))


def plot(path: Path, runs: dict[int, Any]) -> None:
    """One panel per target, one curve per method: the mean over seeds, the band min-max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(runs.values()))
    fig, grid = plt.subplots(
        1, len(first), figsize=(4.2 * len(first), 3.6), sharey=True, layout="constrained", squeeze=False
    )
    axes = grid[0]
    for ax, (name, r) in zip(axes, first.items(), strict=True):
        for method, curve in r["curves"].items():
            xs = [p["finetune_steps"] for p in curve]
            per = [[100 * a for a in _at(runs, name, method, x)] for x in xs]
            mean = [statistics.mean(v) for v in per]
            line = ax.plot(xs, mean, marker="o", markersize=3, label=method)[0]
            if len(runs) > 1:
                ax.fill_between(xs, [min(v) for v in per], [max(v) for v in per], color=line.get_color(), alpha=0.15)
        ax.axvline(r["epoch_steps"], color="#999", lw=0.8, ls="--")
        ax.text(r["epoch_steps"], 2, " 1 epoch", fontsize=8, color="#666")
        ax.axhline(100 / r["classes"], color="#ccc", lw=0.8)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, 1.3 * max(p["finetune_steps"] for c in r["curves"].values() for p in c))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("fine-tuning steps (log scale)")
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("target test accuracy (%)")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
