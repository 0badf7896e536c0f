"""Forward Compatible Training (Ramanujan et al., CVPR 2022) on Fashion-MNIST, small.

    flock /tmp/heavy.lock python bench/reproduce_fct.py                  # Fashion-MNIST, 2 CPU cores, ~10 minutes
    flock /tmp/heavy.lock python bench/reproduce_fct.py --setting cpu    # longer training, within 90 minutes
    python bench/reproduce_fct.py --setting tiny                         # scikit-learn digits, about a minute

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
    "hidden": 256,
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


# The CPU setting: longer training of every part, a 5,000-image test subset.
CPU = {
    **QUICK,
    "old_steps": 1500,
    "new_steps": 3000,
    "side_steps": 1500,
    "transform_steps": 1500,
    "test_limit": 5000,
}
SETTINGS = {"tiny": TINY, "quick": QUICK, "cpu": CPU}


def gap_closed(row: dict[str, float], old: float, new: float) -> float | None:
    return None if new == old else (row["top1"] - old) / (new - old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="quick")
    parser.add_argument("--name", default=None, help="results file name (default: fct_SETTING)")
    parser.add_argument("--new-steps", type=int, default=None, help="train the new (and BCT) network longer")
    parser.add_argument("--side-dim", type=int, default=None, help="side-information vector length (default 16)")
    parser.add_argument("--side-width", type=int, default=None, help="side-info network width (default 8)")
    parser.add_argument("--side-steps", type=int, default=None, help="side-info rotation-prediction steps")
    args = parser.parse_args()
    setting = dict(SETTINGS[args.setting])
    overrides = {
        "new_steps": args.new_steps,
        "side_dim": args.side_dim,
        "side_width": args.side_width,
        "side_steps": args.side_steps,
    }
    suffix = ""
    for key, value in overrides.items():
        if value is not None:
            setting[key] = value
            suffix += f"_{key.replace('_steps', '').replace('_', '')}{value}"
    name = args.name or f"fct_{args.setting}{suffix}"
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
        write_results(name, args.setting, setting, runs, (time.perf_counter() - started) / 60, overrides)


def write_results(
    name: str,
    setting_name: str,
    setting: dict[str, Any],
    runs: list[dict[str, Any]],
    minutes: float,
    overrides: dict[str, Any],
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
        + "".join(f" --{k.replace('_', '-')} {v}" for k, v in overrides.items() if v is not None)
        + f"` — seeds {[r['settings']['seed'] for r in runs]}, "
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
    lines += [
        "",
        "Top-1 by query class (leave-one-out over the whole gallery): the old classes 0-4, which the old model "
        "was trained on, and the new classes 5-9, which it never saw. `side-info alone` is the side-information "
        "vectors used as embeddings.",
        "",
        "| query / gallery | old classes | new classes |",
        "|---|---|---|",
    ]
    for row in runs[0]["top1_by_group"]:
        g = {k: statistics.mean(r["top1_by_group"][row][k] for r in runs) for k in ("old classes", "new classes")}
        lines.append(f"| {row} | {g['old classes']:.1%} | {g['new classes']:.1%} |")
    # "no bridge" is None where the old junction does not meet the new head: left out.
    cls = {
        k: statistics.mean(r["classification"][k] for r in runs)
        for k in runs[0]["classification"]
        if all(r["classification"][k] is not None for r in runs)
    }
    lines += [
        "",
        "Classification with the new model's head (10 classes, the benchmark's settings: batch statistics, "
        "common-class batches), on transformed old junction features (an `fct` job with `space: junction`, "
        "measured by `Registry.bench_path` through the transform):",
        "",
        "| features fed to the new head | accuracy | per seed |",
        "|---|---|---|",
    ]
    for key, value in cls.items():
        per = ", ".join(f"{r['classification'][key]:.1%}" for r in runs)
        lines.append(f"| {key.removeprefix('new head on ')} | {value:.1%} | {per} |")
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
    lines += ["", f"![FCT retrieval and classification]({name}.png)"]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    plot(out / f"{name}.png", summary, cls, runs, name)
    (out / f"{name}.json").write_text(
        json.dumps({"summary": summary, "runs": runs, "minutes": minutes, "paper": PAPER}, indent=2, default=str)
    )
    print("\n".join(lines))


def plot(
    path: Path, summary: dict[str, dict[str, float]], cls: dict[str, float], runs: list[dict[str, Any]], name: str
) -> None:
    """Left: retrieval top-1 and mAP per row, with FCT's own fractions of the old→new gap
    drawn where the transformed rows would sit. Right: the new head's accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary if r != "side-info alone"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    xs = range(len(rows))
    for i, (metric, colour) in enumerate((("top1", "#3b7dd8"), ("mAP", "#9bbfe8"))):
        ax.bar(
            [x + (i - 0.5) * 0.38 for x in xs],
            [100 * summary[r][metric] for r in rows],
            0.38,
            label=metric,
            color=colour,
        )
    old, new = 100 * summary["old/old"]["top1"], 100 * summary["new/new"]["top1"]
    fracs = [(t - o) / (n - o) for o, n, t in PAPER.values()]
    # Where FCT's transformed top-1 would sit here: the fraction of the gap it closes.
    ax.axhspan(old + min(fracs) * (new - old), old + max(fracs) * (new - old), color="#d83b3b", alpha=0.25)
    ax.plot(
        [],
        [],
        color="#d83b3b",
        alpha=0.4,
        linewidth=6,
        label=f"FCT's top-1: {min(fracs):.0%}-{max(fracs):.0%} of the gap",
    )
    ax.set_xticks(list(xs), [r.replace("/", "/\n", 1) for r in rows], fontsize=8)
    ax.set_ylabel("%")
    lo = min(100 * min(summary[r]["mAP"], summary[r]["top1"]) for r in rows)
    ax.set_ylim(max(0, lo - 10), 100)
    ax.set_title("retrieval (leave-one-out, test split)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    labels = list(cls)
    bx.bar(range(len(labels)), [100 * cls[k] for k in labels], color="#3b7dd8")
    bx.set_xticks(range(len(labels)), [k.removeprefix("new head on ").replace(", ", ",\n") for k in labels], fontsize=7)
    bx.set_ylim(0, 100)
    bx.set_title("new head on ... (10-class accuracy)")
    fig.suptitle(f"FCT on {runs[0]['settings']['source']} ({name}, {len(runs)} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
