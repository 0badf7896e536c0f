"""Forward Compatible Training (Ramanujan et al., CVPR 2022) on Fashion-MNIST, small.

    flock /tmp/heavy.lock python bench/reproduce_fct.py            # Fashion-MNIST, 2 CPU cores, ~10 minutes
    python bench/reproduce_fct.py --setting tiny                   # scikit-learn digits, under a minute

The old model is trained on classes 0-4, the new one independently on all ten classes
(its training unchanged), both through the trainer and published to a registry
(PARTSBIN_URL, or an embedded one in a temporary folder). The side-information model
(rotation prediction on the old data) and the transformations (old embedding, with and
without side-information, to the new one; L2 loss on the new training data) are
published as ``side-info`` and ``transform`` components, and the transformed gallery is
made through ``Registry.transform_gallery`` from stored embeddings alone. BCT is the new
network trained against the old run's frozen DCC head (partsbin's incremental scheme).
Retrieval is measured on the test split (leave-one-out; cosine similarity on the
globally pooled junction features): CMC top-1/top-5 and mAP.

Departures from FCT (CIFAR-100 / ImageNet, ResNet-50-class models, hundreds of epochs):
ResNet-8 width 16 for both models, a few hundred steps each, a 2,000-image test subset,
the transform fitted on 20,000 training images; rotation prediction instead of a
contrastive side-info objective (see partsbin/trainer/fct.py for why). FCT's numbers are
shown for the shape of the result (how much of the old→new gap the transform closes),
not for equality.
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
from partsbin.trainer.fct import FCTSettings, run_fct_experiment

ROOT = Path(__file__).resolve().parents[1]

# FCT Table 1 (top-1 retrieval, %): old/old, new/new, new query vs transformed old gallery.
PAPER = {"CIFAR-100": (32.9, 56.4, 50.6), "ImageNet-1k": (46.4, 68.4, 65.1)}

TINY = {
    "source": "digits",
    "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 8}},
    "old_steps": 60,
    "new_steps": 150,
    "side_steps": 100,
    "transform_steps": 300,
    "hidden": 64,
    "batch_size": 64,
    "bct": True,
    "threads": 2,
}

QUICK = {
    "source": "fashion-mnist",
    "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 16}},
    "old_steps": 300,
    "new_steps": 400,
    "side_steps": 300,
    "transform_steps": 800,
    "hidden": 256,
    "batch_size": 64,
    "test_limit": 2000,
    "transform_images": 20000,
    "bct": True,
    "threads": 2,
}


def gap_closed(row: dict[str, float], old: float, new: float) -> float | None:
    return None if new == old else (row["top1"] - old) / (new - old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--setting", choices=["quick", "tiny"], default="quick")
    parser.add_argument("--name", default=None, help="results file name (default: fct_SETTING)")
    parser.add_argument("--new-steps", type=int, default=None, help="train the new (and BCT) network longer")
    args = parser.parse_args()
    setting = dict(QUICK if args.setting == "quick" else TINY)
    if args.new_steps:
        setting["new_steps"] = args.new_steps
    name = args.name or f"fct_{args.setting}" + (f"_new{args.new_steps}" if args.new_steps else "")
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        with ExitStack() as stack:
            if os.environ.get("PARTSBIN_URL"):
                reg = stack.enter_context(Registry())
            else:
                from partsbin.registry.config import Settings
                from partsbin.registry.embedded import embedded_registry

                data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="partsbin-fct-")))
                emb = stack.enter_context(embedded_registry(Settings(data_dir=data)))
                reg = stack.enter_context(Registry(url=emb.url, token=emb.token, cache_dir=data / "cache"))
            t0 = time.perf_counter()
            out = run_fct_experiment(reg, FCTSettings(**setting, seed=seed, namespace=f"fct-s{seed}"))
            out["seconds"] = time.perf_counter() - t0
            runs.append(out)
            print(json.dumps({"seed": seed, "rows": out["rows"], "seconds": out["seconds"]}), flush=True)
        # After every seed, so that a run stopped by its time limit keeps what it measured.
        write_results(name, args.setting, setting, runs, (time.perf_counter() - started) / 60)


def write_results(
    name: str, setting_name: str, setting: dict[str, Any], runs: list[dict[str, Any]], minutes: float
) -> None:
    out = ROOT / "bench" / "results"
    rows = list(runs[0]["rows"])
    summary: dict[str, dict[str, float]] = {}
    for row in rows:
        summary[row] = {
            metric: statistics.mean(r["rows"][row][metric] for r in runs) for metric in ("top1", "top5", "mAP")
        }
    old, new = summary["old/old"]["top1"], summary["new/new"]["top1"]
    lines = [
        f"# FCT reproduction ({setting['source']}, old = classes 0-4, new = all 10)",
        "",
        f"`python bench/reproduce_fct.py --setting {setting_name}"
        f"{'' if setting['new_steps'] == (QUICK if setting_name == 'quick' else TINY)['new_steps'] else ' --new-steps ' + str(setting['new_steps'])}` — seeds {[r['settings']['seed'] for r in runs]}, "
        f"{minutes:.1f} minutes on this machine (2 CPU cores shared with other work). "
        f"Settings: {json.dumps(setting)}. Test split{' (first ' + str(setting['test_limit']) + ' images)' if setting.get('test_limit') else ''}, "
        "leave-one-out retrieval, cosine similarity on pooled junction features.",
        "",
        "| query / gallery | top-1 | top-5 | mAP | gap closed (top-1 / mAP) | per seed (top-1) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        s = summary[row]
        g = gap_closed(s, old, new)
        old_map, new_map = summary["old/old"]["mAP"], summary["new/new"]["mAP"]
        gm = (s["mAP"] - old_map) / (new_map - old_map) if new_map - old_map >= 0.02 else None
        # A gap under 2 points makes the fraction noise: left blank.
        gap = (
            f"{'n/a' if g is None or new - old < 0.02 else f'{g:.0%}'} / {'n/a' if gm is None else f'{gm:.0%}'}"
            if row.startswith("new/FCT")
            else ""
        )
        per = ", ".join(f"{r['rows'][row]['top1']:.1%}" for r in runs)
        lines.append(f"| {row} | {s['top1']:.1%} | {s['top5']:.1%} | {s['mAP']:.1%} | {gap} | {per} |")
    lines += ["", "FCT's numbers (top-1, %) for the shape to expect:", ""]
    for data, (o, n, t) in PAPER.items():
        lines.append(
            f"- {data}: old/old {o}, new/new {n}, new/transformed old {t} ({(t - o) / (n - o):.0%} of the gap)"
        )
    tp = [r["throughput"] for r in runs]
    lines += [
        "",
        "Throughput (best of three, this machine): transforming stored embeddings "
        f"{statistics.mean(t['transform_images_per_s'] for t in tp):,.0f} images/s against running the new backbone "
        f"{statistics.mean(t['backbone_images_per_s'] for t in tp):,.0f} images/s "
        f"({statistics.mean(t['transform_images_per_s'] / t['backbone_images_per_s'] for t in tp):.0f}x).",
        "",
        "BCT rows: the new network trained against the old run's frozen DCC head (incremental scheme); "
        "`BCT/old` is BCT queries against the old gallery (what BCT offers without backfilling).",
        "",
        "Own-task accuracy (own test classes): old "
        + ", ".join(f"{r['own_task']['old']:.1%}" for r in runs)
        + "; new "
        + ", ".join(f"{r['own_task']['new']:.1%}" for r in runs)
        + ".",
    ]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    (out / f"{name}.json").write_text(
        json.dumps({"summary": summary, "runs": runs, "minutes": minutes, "paper": PAPER}, indent=2, default=str)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
