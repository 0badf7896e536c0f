"""The paper's Table 2 (§5.1, unsupervised domain adaptation by RP), on shifts we can install.

    flock /tmp/heavy.lock python bench/reproduce_uda.py            # quick: 2 CPU cores, ~10 minutes

Through the product: each source network trains through the trainer (one task, RP,
incremental: it learns its RP head, which is then frozen and published as the group's
anchor), publishes through a registry (PARTSBIN_URL, or an embedded one in a temporary
folder), and is adapted by the ``adapt`` job's runner (the one a worker runs), which
publishes the adapted extractor and measures the rows through the benchmark's routines on
the target test set:

- as is: the source model with its stored running BatchNorm statistics;
- test-time BN: the test batch's statistics;
- recalibrated: running statistics recomputed on the target test images (AdaBN);
- adapted: the adapted extractor with the source head, batch statistics.

Two domain shifts, both directions each, two seeds. Departures from the paper (WRN-28 on
CIFAR-10 ↔ STL-10, an RP head pre-trained on ILSVRC-12, 1000 adaptation steps): ResNet-8,
small step counts, data subsets; the shifts are synthetic ("low contrast, brighter,
noisy" and "blurred, low contrast") on the same classes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from partsbin import Registry
from partsbin.parts.jobs.applications import AdaptResult, AdaptSpec
from partsbin.parts.jobs.train import TrainResult, TrainSpec
from partsbin.trainer.jobs import run_job

ROOT = Path(__file__).resolve().parents[1]

PAPER = {  # Table 2: CIFAR-10 → STL-10, STL-10 → CIFAR-10, average
    "as-is": (77.2, 52.9, 65.1),
    "test-bn": (82.0, 71.3, 76.7),
    "adapted": (82.6, 73.1, 77.9),
}
ROWS = ("as-is", "test-bn", "recalibrated", "adapted")

NOISY = [{"op": "contrast", "factor": 0.4}, {"op": "brightness", "delta": 0.3}, {"op": "noise", "sigma": 0.1}]
BLURRED = [{"op": "blur", "sigma": 1.0}, {"op": "contrast", "factor": 0.5}]

SHIFTS: dict[str, dict[str, Any]] = {
    "digits": {
        "data": {"source": "digits"},
        "shift": NOISY,
        "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 8}},
        "train_steps": 150,
        "adapt_steps": 100,
        "test_limit": None,
    },
    # The digits pair shift (8→4→8, inverted): not conservative, see the results.
    "digits-inverted": {
        "data": {"source": "digits"},
        "shift": [{"op": "resize", "size": 4, "back_to": 8}, {"op": "invert"}],
        "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 8}},
        "train_steps": 150,
        "adapt_steps": 100,
        "test_limit": None,
    },
    "fashion-mnist": {
        "data": {"source": "fashion-mnist", "limit": 6000},
        "shift": BLURRED,
        "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 8}},
        "train_steps": 200,
        "adapt_steps": 60,
        "test_limit": 1000,
    },
}


def _domain(base: dict[str, Any], shifted: bool, transforms: list[dict[str, Any]]) -> dict[str, Any]:
    return {**base, "transforms": transforms if shifted else []}


def one_run(reg: Registry, name: str, cfg: dict[str, Any], source_shifted: bool, seed: int) -> dict[str, Any]:
    direction = "shifted-to-original" if source_shifted else "original-to-shifted"
    run_name = f"uda-{name}-{direction}-s{seed}"
    source = _domain(cfg["data"], source_shifted, cfg["shift"])
    target = _domain(cfg["data"], not source_shifted, cfg["shift"])
    test = {k: v for k, v in target.items() if k != "limit"}
    if cfg["test_limit"]:
        test["limit"] = cfg["test_limit"]
    t = time.perf_counter()
    trained = run_job(
        TrainSpec(
            name=run_name,
            namespace="repro",
            methods=["RP"],
            scheme="incremental",
            arch=cfg["arch"],
            tasks=[{"name": "source", "data": source}],
            settings={
                "steps": cfg["train_steps"],
                "batch_size": 64,
                "lr": 0.05,
                "rp_fraction": 0.5,
                "seed": seed,
                "test_limit": cfg["test_limit"],
            },
        ),
        reg,
    )
    assert isinstance(trained, TrainResult)
    refs = {r.split("@")[0].rsplit("-", 1)[-1]: r for r in trained.refs}
    adapted = run_job(
        AdaptSpec(
            name=f"{run_name}-adapted",
            namespace="repro",
            extractor=refs["extractor"],
            rp_head=refs["rp"],
            head=refs["head"],
            data=target,
            test=test,
            settings={
                "steps": cfg["adapt_steps"],
                "lr": 0.01,
                "batch_size": 64,
                "schedule": "constant",
                "weight_decay": 0.0,
                "seed": seed,
            },
        ),
        reg,
    )
    assert isinstance(adapted, AdaptResult)
    rows = adapted.rows
    return {
        "shift": name,
        "direction": direction,
        "seed": seed,
        "rows": rows,
        "own_task": trained.tasks["source"].own_task_accuracy,
        "adapted": adapted.refs[0],
        "seconds": time.perf_counter() - t,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--shifts", nargs="+", default=list(SHIFTS), choices=list(SHIFTS))
    args = parser.parse_args()
    results = []
    started = time.perf_counter()
    with ExitStack() as stack:
        if os.environ.get("PARTSBIN_URL"):
            reg = stack.enter_context(Registry())
        else:
            from partsbin.registry.config import Settings
            from partsbin.registry.embedded import embedded_registry

            data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="partsbin-uda-")))
            emb = stack.enter_context(embedded_registry(Settings(data_dir=data)))
            reg = stack.enter_context(Registry(url=emb.url, token=emb.token, cache_dir=data / "cache"))
        # Seed by seed, so that a run cut short by its time limit has every shift and direction once.
        for seed in args.seeds:
            for name in args.shifts:
                for source_shifted in (False, True):
                    r = one_run(reg, name, SHIFTS[name], source_shifted, seed)
                    results.append(r)
                    # Written after every run: an interrupted reproduction keeps what it measured.
                    write_results(results, (time.perf_counter() - started) / 60, args.seeds, quiet=True)
                    print(
                        f"{name:14s} {r['direction']:20s} seed {seed}: "
                        + ", ".join(f"{k} {v:.1%}" for k, v in r["rows"].items())
                        + f" (own task {r['own_task']:.1%}; {r['seconds']:.0f} s)",
                        flush=True,
                    )
    write_results(results, (time.perf_counter() - started) / 60, args.seeds)


def write_results(results: list[dict[str, Any]], minutes: float, seeds: list[int], quiet: bool = False) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Table 2 (unsupervised domain adaptation through the frozen RP head), quick setting",
        "",
        f"`flock /tmp/heavy.lock python bench/reproduce_uda.py`: seeds {seeds}; {minutes:.1f} minutes on this machine "
        "(2 shared CPU cores). Source networks: ResNet-8 width 8, one task, RP (incremental: the RP head is learnt, "
        "then frozen); adaptation: the `adapt` job's runner, SGD lr 0.01 constant, batch 64, all four rotations of "
        "every image. Accuracy on the target test set (mean ± std over seeds), over the classes of the source head.",
        "",
        "Shifts: digits ↔ digits at contrast 0.4, brightness +0.3, Gaussian noise σ 0.1 (150 training steps, 100 "
        "adaptation steps, all 899 test images); Fashion-MNIST (first 6,000 training images) ↔ the same blurred "
        "(σ 1 px) at contrast 0.5 (200 training steps, 60 adaptation steps, first 1,000 test images); digits ↔ the "
        "digits pair's shift (8→4→8 bilinear, inverted; same settings as digits).",
        "",
        "| shift | direction | as is (running BN) | test-time BN | BN recalibrated | adapted through RP |",
        "|---|---|---|---|---|---|",
    ]
    summary: dict[str, Any] = {}
    for shift in dict.fromkeys(r["shift"] for r in results):
        for direction in dict.fromkeys(r["direction"] for r in results if r["shift"] == shift):
            runs = [r for r in results if r["shift"] == shift and r["direction"] == direction]
            cells = {}
            for row in ROWS:
                values = [r["rows"][row] for r in runs]
                cells[row] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
            summary[f"{shift} {direction}"] = cells
            lines.append(
                f"| {shift} | {direction} | " + " | ".join(f"{m:.1%} ± {s:.1%}" for m, s in cells.values()) + " |"
            )
    lines += [
        "| paper (WRN-28) | CIFAR-10 → STL-10 | 77.2% | 82.0% | – | 82.6% |",
        "| paper (WRN-28) | STL-10 → CIFAR-10 | 52.9% | 71.3% | – | 73.1% |",
        "",
    ]
    (out / "uda_quick.md").write_text("\n".join(lines) + "\n")
    (out / "uda_quick.json").write_text(
        json.dumps({"minutes": minutes, "paper": PAPER, "summary": summary, "runs": results}, indent=2) + "\n"
    )
    if not quiet:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
