"""The paper's Figure 2 analysis on the Fashion-MNIST two-domain pair (docs/architecture.md).

    python bench/reproduce_fig2.py --setting quick      # 2 CPU cores, < 90 minutes
    python bench/reproduce_fig2.py --setting full       # ResNet-56, for a GPU

Every method trains through the trainer, publishes through a registry (PARTSBIN_URL, or
an embedded one in a temporary folder) and is measured through the client benchmark
(``Registry.bench``: batch-statistics BatchNorm, the paper's choice, over batches of
common-class images only, shuffled with a fixed seed, the benchmark's default), so this
exercises the product, not a side path. ``--batch-composition all-classes`` feeds all
of a task's test images instead (the first version's choice) and writes its results
under their own name, so the two can be compared. Recombination accuracy is the mean of the two
directions; incremental results average both training orders (A first, then B first),
as the paper does. The upper bound is each network on its own task restricted to the
common classes, with its own RP head; its figure is the networks' own accuracy.

Settings (documented departures from the paper, which trains ResNet-56 for 64k steps
on CIFAR-10 vs STL-10):

- quick: ResNet-8, width 16; 500 steps per network at batch 64; RP on a quarter of
  each batch (an unbiased estimate of the RP term, at a quarter of its cost); a fixed
  test subset of 2,000 images per task; seeds 0 and 1.
- full: ResNet-56 (width 16), 4,000 steps per network at batch 128, full RP, the whole
  test split, seeds 0-2.
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
from partsbin.parts.jobs.train import TrainSpec
from partsbin.trainer.jobs import run_job

ROOT = Path(__file__).resolve().parents[1]

PAPER = {  # Figure 2 and §4 of the paper (ResNet-56, CIFAR-10 vs STL-10)
    "independent": 10.6,
    "IIW": 25.1,
    "RP": 50.1,
    "DCC": 65.8,
    "IIW+RP+DCC (joint)": 76.7,
    "IIW+RP+DCC (incremental)": 72.7,
    "upper bound": 85.6,
}
PAPER_OWN = {"IIW+RP+DCC (joint)": 86.3}

SETTINGS = {
    "quick": {
        "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 16}},
        "steps": 500,
        "batch_size": 64,
        "rp_fraction": 0.25,
        "test_limit": 2000,
        "seeds": [0, 1],
    },
    "full": {
        "arch": {"name": "resnet_cifar", "config": {"depth": 56, "width": 16}},
        "steps": 4000,
        "batch_size": 128,
        "rp_fraction": 1.0,
        "test_limit": None,
        "seeds": [0, 1, 2],
    },
}
METHODS: list[tuple[str, list[str], str]] = [
    ("independent", [], "independent"),
    ("IIW", ["IIW"], "independent"),
    ("RP", ["RP"], "joint"),
    ("DCC", ["DCC"], "joint"),
    ("IIW+RP+DCC (joint)", ["IIW", "RP", "DCC"], "joint"),
    ("IIW+RP+DCC (incremental)", ["IIW", "RP", "DCC"], "incremental"),
    ("upper bound", [], "upper-bound"),
]


def spec_for(
    setting: dict[str, Any], label: str, methods: list[str], scheme: str, seed: int, order: tuple[str, str]
) -> TrainSpec:
    slug = label.lower().replace("+", "-").replace(" ", "-").replace("(", "").replace(")", "")
    return TrainSpec.model_validate(
        {
            "name": f"fig2-{slug}-s{seed}-{''.join(order)}-{int(time.time())}",
            "namespace": "fig2",
            "arch": setting["arch"],
            "methods": methods,
            "scheme": scheme,
            "tasks": [{"name": t, "pair": "fashion-mnist", "pair_task": t} for t in order],
            "settings": {
                "steps": setting["steps"],
                "batch_size": setting["batch_size"],
                "rp_fraction": setting["rp_fraction"],
                "test_limit": setting["test_limit"],
                "seed": seed,
                "lr": 0.05,
                "schedule": "cosine",
                "weight_decay": 5e-4,
            },
        }
    )


def measure(reg: Registry, refs: list[str], composition: str) -> dict[str, float]:
    exts = sorted(r for r in refs if r.split("@")[0].endswith("-extractor"))
    heads = sorted(r for r in refs if r.split("@")[0].endswith("-head"))
    result = reg.bench(exts, heads, correlation=True, batch_composition=composition, shuffle_seed=0)
    own = [c.accuracy for c in result.cells if c.own_task]
    corr = next(iter(result.correlation.values()), {"direct": float("nan"), "best_permutation": float("nan")})
    return {
        "recombination": result.recombination_mean() or 0.0,
        "own": sum(own) / len(own),
        "corr": corr["direct"],
        "corr_perm": corr["best_permutation"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="quick")
    parser.add_argument("--seeds", type=int, nargs="*", help="override the setting's seeds")
    parser.add_argument("--only", nargs="*", help="only these methods (labels as in the table)")
    parser.add_argument("--fresh", action="store_true", help="ignore runs already recorded in the runs file")
    parser.add_argument(
        "--batch-composition",
        choices=["common-classes", "all-classes"],
        default="common-classes",
        help="what the benchmark's batches hold (default: common-class images only, the paper's measure)",
    )
    args = parser.parse_args()
    name = args.setting if args.batch_composition == "common-classes" else f"{args.setting}_all_images"
    setting = dict(SETTINGS[args.setting])
    if args.seeds:
        setting["seeds"] = args.seeds
    rows: dict[str, list[dict[str, float]]] = {}
    # Every finished run is appended here, so an interrupted reproduction resumes
    # where it stopped instead of training everything again.
    runs_file = ROOT / "bench" / "results" / f"reproduction_{name}_runs.jsonl"
    runs_file.parent.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        runs_file.unlink(missing_ok=True)
    done = (
        {(r["label"], r["seed"], r["order"]): r["metrics"] for r in map(json.loads, runs_file.read_text().splitlines())}
        if runs_file.exists()
        else {}
    )
    with ExitStack() as stack:
        if os.environ.get("PARTSBIN_URL"):
            reg = stack.enter_context(Registry())
        else:
            from partsbin.registry.config import Settings
            from partsbin.registry.embedded import embedded_registry

            data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="partsbin-fig2-")))
            emb = stack.enter_context(embedded_registry(Settings(data_dir=data)))
            reg = stack.enter_context(Registry(url=emb.url, token=emb.token, cache_dir=data / "cache"))
        for label, methods, scheme in METHODS:
            if args.only and label not in args.only:
                continue
            for seed in setting["seeds"]:
                orders = [("a", "b"), ("b", "a")] if scheme == "incremental" else [("a", "b")]
                per_order = []
                for order in orders:
                    key = (label, seed, "".join(order))
                    if key in done:
                        per_order.append(done[key])
                        continue
                    t = time.perf_counter()
                    res = run_job(spec_for(setting, label, methods, scheme, seed, order), reg)
                    m = measure(reg, res.refs, args.batch_composition)
                    m["seconds"] = time.perf_counter() - t
                    per_order.append(m)
                    with runs_file.open("a") as fh:
                        fh.write(
                            json.dumps({"label": label, "seed": seed, "order": "".join(order), "metrics": m}) + "\n"
                        )
                    print(
                        f"{label:28s} seed {seed} order {''.join(order)}: recombination {m['recombination']:.1%}, own {m['own']:.1%}, "
                        f"corr {m['corr']:.2f}/{m['corr_perm']:.2f}, {m['seconds']:.0f} s",
                        flush=True,
                    )
                rows.setdefault(label, []).append({k: statistics.mean(p[k] for p in per_order) for k in per_order[0]})
    minutes = sum(r["seconds"] for rs in rows.values() for r in rs) / 60
    write_results(name, args.setting, args.batch_composition, setting, rows, minutes)


def _ms(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def write_results(
    name: str,
    setting_name: str,
    composition: str,
    setting: dict[str, Any],
    rows: dict[str, list[dict[str, float]]],
    minutes: float,
) -> None:
    from partsbin.parts.evaluation import EvalSettings

    how = EvalSettings(batch_composition=composition, shuffle_seed=0).describe()  # type: ignore[arg-type]
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    lines = [
        f"# Figure 2 on the Fashion-MNIST two-domain pair ({setting_name} setting, {composition} batches)",
        "",
        f"`python bench/reproduce_fig2.py --setting {setting_name} --batch-composition {composition}`: {setting['arch']['name']} {setting['arch']['config']}, "
        f"{setting['steps']} steps per network at batch {setting['batch_size']}, RP on {setting['rp_fraction']:.0%} of each batch, "
        f"test subset {setting['test_limit'] or 'all'} images per task, seeds {setting['seeds']}; {minutes:.0f} minutes on this machine. "
        f"Recombination accuracy: mean of both directions, over the 8 common classes; {how}; "
        "incremental: mean of both training orders. Mean ± std over seeds.",
        "",
        "| method | recombination (ours) | paper (ResNet-56, CIFAR-10/STL-10) | own-task accuracy (ours) | feature correlation: direct / best permutation |",
        "|---|---|---|---|---|",
    ]
    for label, _, _ in METHODS:
        if label not in rows:
            continue
        rec = _ms([r["recombination"] for r in rows[label]])
        own = _ms([r["own"] for r in rows[label]])
        corr = _ms([r["corr"] for r in rows[label]])
        corr_p = _ms([r["corr_perm"] for r in rows[label]])
        summary[label] = {"recombination": rec, "own": own, "corr": corr, "corr_perm": corr_p, "runs": rows[label]}
        shown = own if label == "upper bound" else rec
        paper_own = f" (paper own-task {PAPER_OWN[label]}%)" if label in PAPER_OWN else ""
        lines.append(
            f"| {label} | {shown[0]:.1%} ± {shown[1]:.1%}{' (own task, common classes)' if label == 'upper bound' else ''} | {PAPER[label]}% | "
            f"{own[0]:.1%} ± {own[1]:.1%}{paper_own} | {corr[0]:.2f} / {corr_p[0]:.2f} |"
        )
    (out / f"reproduction_{name}.md").write_text("\n".join(lines) + "\n")
    (out / f"reproduction_{name}.json").write_text(
        json.dumps(
            {
                "setting": setting,
                "batch_composition": composition,
                "minutes": minutes,
                "paper": PAPER,
                "results": summary,
            },
            indent=2,
        )
        + "\n"
    )
    plot(out / f"reproduction_{name}.png", summary, name)
    print("\n".join(lines))


def plot(path: Path, summary: dict[str, Any], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(summary)
    ours = [100 * (summary[k]["own"][0] if k == "upper bound" else summary[k]["recombination"][0]) for k in labels]
    err = [100 * (summary[k]["own"][1] if k == "upper bound" else summary[k]["recombination"][1]) for k in labels]
    paper = [PAPER[k] for k in labels]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], ours, 0.4, yerr=err, label="partsbin, Fashion-MNIST pair", color="#3b7dd8", capsize=3)
    ax.bar([x + 0.2 for x in xs], paper, 0.4, label="paper, CIFAR-10/STL-10", color="#bbbbbb")
    ax.set_xticks(list(xs), [k.replace(" (", "\n(") for k in labels], fontsize=8)
    ax.set_ylabel("recombination accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Figure 2 reproduction ({name} setting)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
