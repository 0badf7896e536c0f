"""Training throughput with torch.distributed: one process against N processes.

    python bench/ddp_bench.py                  # 1 vs 2 processes; bench/results/ddp.{json,md}
    python bench/ddp_bench.py --nproc 1 2 4    # on a bigger machine (GPUs: one rank per GPU)

The same spec each time (joint IIW+RP+DCC on the Fashion-MNIST two-domain pair,
ResNet-8 width 16, global batch 128, RP on a quarter of each batch), run through
``partsbin.trainer.jobs.run_job`` as ``partsbin train --local`` runs it. The CPUs are shared
out: one process uses all of them as torch threads, N processes get 1/N each, so the
comparison is of the same machine used two ways. Images/s is the training loop's own
figure (rank 0's, counting every rank's images); wall seconds include starting the
ranks. Rounds alternate so both see the same load on a shared machine; the figure for
each is its best round.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from _machine import machine_info

from partsbin.parts.cpus import available_cpus
from partsbin.parts.jobs.train import TrainResult, TrainSpec
from partsbin.trainer.jobs import run_job

ROOT = Path(__file__).resolve().parents[1]


def spec(nproc: int, steps: int, device: str) -> TrainSpec:
    cpus = available_cpus()
    settings: dict[str, Any] = {
        "steps": steps,
        "batch_size": 128,
        "rp_fraction": 0.25,
        "device": device,
        "threads": max(1, cpus // nproc),
        "test_limit": 500,
    }
    if nproc > 1:
        settings["distributed"] = {"nproc_per_node": nproc}
    return TrainSpec.model_validate(
        {
            "name": f"ddp-{nproc}",
            "namespace": "bench",
            "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 16}},
            "methods": ["IIW", "RP", "DCC"],
            "scheme": "joint",
            "tasks": [{"name": t, "pair": "fashion-mnist", "pair_task": t} for t in ("a", "b")],
            "settings": settings,
            "publish": False,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=150, help="steps per task")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    best: dict[int, dict[str, float]] = {}
    for r in range(args.rounds):
        for n in args.nproc:
            t = time.perf_counter()
            result = run_job(spec(n, args.steps, args.device))
            wall = time.perf_counter() - t
            assert isinstance(result, TrainResult) and result.train is not None
            ips = result.train.images_per_s
            print(f"round {r}: {n} process(es): {ips:.0f} images/s, {wall:.1f} s wall", flush=True)
            if n not in best or ips > best[n]["images_per_s"]:
                best[n] = {"images_per_s": ips, "wall_seconds": wall}
    base = best[args.nproc[0]]["images_per_s"]
    out = {
        "machine": machine_info(),
        "device": args.device,
        "cpus": available_cpus(),
        "torch": torch.__version__,
        "steps_per_task": args.steps,
        "results": {str(n): {**v, "speedup": v["images_per_s"] / base} for n, v in best.items()},
    }
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "ddp.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Data-parallel training: images/s by number of processes",
        "",
        f"`python bench/ddp_bench.py --nproc {' '.join(map(str, args.nproc))}` on {args.device}, "
        f"{available_cpus()} CPUs shared out among the processes; joint IIW+RP+DCC, ResNet-8 width 16, "
        f"global batch 128, {args.steps} steps per task; best of {args.rounds} alternating rounds.",
        "",
        "| processes | images/s | vs 1 process | wall s (with start-up) |",
        "|---|---|---|---|",
    ]
    for n, v in best.items():
        lines.append(f"| {n} | {v['images_per_s']:.0f} | {v['images_per_s'] / base:.2f}× | {v['wall_seconds']:.1f} |")
    (results / "ddp.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
