"""A recombination matrix CNN × ViT on the built-in Fashion-MNIST pair (issue 24, item 2).

    python bench/reproduce_vit_cnn.py                # 2 shared CPU cores: see the results file
    python bench/reproduce_vit_cnn.py --steps 20     # a smoke run (results file *_smoke)

The pair (``pair: fashion-mnist``): task A = even training images, classes 0-8; task B =
odd ones through a domain shift (28→14→28, inverted), classes 1-9. For each scheme,

- ``independent``: each network trained alone (own seed, task loss only);
- ``compatible``: the two networks of a family trained jointly with IIW + RP + DCC,

a CNN pair (``resnet_cifar``, split after stage 2: a 14×14 spatial junction) and a ViT
pair (``vit``, split after block 2: a token junction, 49 tokens) are trained through the
trainer's ``train`` job and published to a registry. Then, measured with the client
benchmark (``Registry.bench`` for direct pairs, ``Registry.bench_path`` through bridges) on
each extractor's own test set (the classes it shares with the head, batch-statistics
BatchNorm):

- within a family, direct: the own pair (A's extractor, A's head) and the recombination
  (A's extractor, B's head), the paper's measure;
- across families, through a trained adapter (``stitch`` job: ``tokens_to_spatial`` or
  ``spatial_to_tokens``): A's extractor to the other family's A head, the adapter then
  **reused unchanged** with the other family's B head (it works only if the B head reads
  the A head's feature space: compatibility), and a dedicated adapter to the B head (a
  trained stitch hides any incompatibility: the reference).

Everything trains through the trainer and publishes through a registry (PARTSBIN_URL, or
an embedded one in a temporary folder). The paper (Gygli et al. 2021) has no transformer:
the figures to compare with are the CNN rows, and the paper's Figure 2 (ResNet-56,
CIFAR-10 vs STL-10: independent 10.6%, joint IIW+RP+DCC 76.7% recombination), as
``bench/reproduce_fig2.py`` quotes them.

    python bench/reproduce_vit_cnn.py --rewrite      # the tables again from the JSON, no training
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from partsbin import Registry
from partsbin.parts.jobs.bridges import StitchResult, StitchSpec
from partsbin.parts.jobs.train import TrainResult, TrainSpec
from partsbin.trainer.jobs import run_job

ROOT = Path(__file__).resolve().parents[1]

FAMILIES: dict[str, dict[str, Any]] = {
    "cnn": {
        "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 16}},
        "settings": {"optimizer": "sgd", "lr": 0.05},
    },
    "vit": {
        "arch": {
            "name": "vit",
            "config": {"img_size": 28, "patch_size": 4, "dim": 64, "depth": 4, "heads": 4, "mlp_ratio": 2},
            "split": "block2",
        },
        # Transformers train with Adam(W); SGD at the CNN's rate leaves a small ViT near chance.
        "settings": {"optimizer": "adam", "lr": 0.002, "weight_decay": 0.01},
    },
}
SETTING: dict[str, Any] = {
    "steps": 300,
    "stitch_steps": 150,
    "stitch_images": 5000,
    "batch_size": 64,
    "test_limit": 2000,
    "seed": 0,
}
SCHEMES = {"independent": ([], "independent"), "compatible": (["IIW", "RP", "DCC"], "joint")}
# The paper's Figure 2 (ResNet-56, CIFAR-10 vs STL-10), recombination accuracy in %.
PAPER = {"independent": 10.6, "compatible": 76.7}


def _train(reg: Registry, family: str, scheme: str, setting: dict[str, Any]) -> dict[str, str]:
    methods, kind = SCHEMES[scheme]
    f = FAMILIES[family]
    result = run_job(
        TrainSpec.model_validate(
            {
                "name": f"{family}-{scheme}",
                "namespace": "vitcnn",
                "arch": f["arch"],
                "tasks": [
                    {"name": "a", "pair": "fashion-mnist", "pair_task": "a"},
                    {"name": "b", "pair": "fashion-mnist", "pair_task": "b"},
                ],
                "methods": methods,
                "scheme": kind,
                "settings": {
                    **f["settings"],
                    "steps": setting["steps"],
                    "batch_size": setting["batch_size"],
                    "seed": setting["seed"],
                    "test_limit": setting["test_limit"],
                },
            }
        ),
        reg,
    )
    assert isinstance(result, TrainResult)
    by_part = {r.split("@")[0].split("/")[1].removeprefix(f"{family}-{scheme}-"): r for r in result.refs}
    return {k: by_part[k] for k in ("a-extractor", "a-head", "b-extractor", "b-head")} | {
        "own_a": f"{result.tasks['a'].own_task_accuracy}",
        "own_b": f"{result.tasks['b'].own_task_accuracy}",
    }


def _stitch(reg: Registry, name: str, ext: str, head: str, setting: dict[str, Any]) -> StitchResult:
    data = reg.info(ext).card.provenance.dataset
    assert data is not None
    spec = {**data.spec, "limit": setting["stitch_images"]}  # type: ignore[attr-defined]
    result = run_job(
        StitchSpec.model_validate(
            {
                "name": name,
                "namespace": "vitcnn",
                "extractor": ext,
                "head": head,
                "data": spec,
                "settings": {
                    "steps": setting["stitch_steps"],
                    "seed": setting["seed"],
                    "test_limit": setting["test_limit"],
                },
            }
        ),
        reg,
    )
    assert isinstance(result, StitchResult)
    return result


def one_scheme(reg: Registry, scheme: str, setting: dict[str, Any]) -> dict[str, Any]:
    t = time.perf_counter()
    parts = {fam: _train(reg, fam, scheme, setting) for fam in FAMILIES}
    out: dict[str, Any] = {
        "own_task": {fam: {"a": float(p["own_a"]), "b": float(p["own_b"])} for fam, p in parts.items()},
        "minutes_train": (time.perf_counter() - t) / 60,
    }
    t = time.perf_counter()
    cells: dict[str, dict[str, Any]] = {}
    for fam, p in parts.items():
        # Direct pairs within a family: the own pair and the recombination A -> B.
        res = reg.bench([p["a-extractor"]], [p["a-head"], p["b-head"]])
        for c in res.cells:
            cells.setdefault(f"{fam}-a", {})[f"{fam}-{'a' if c.head == p['a-head'] else 'b'} head"] = {
                "accuracy": c.accuracy,
                "samples": c.samples,
                "how": "direct",
            }
    for src, dst in (("cnn", "vit"), ("vit", "cnn")):
        ext = parts[src]["a-extractor"]
        to_a = _stitch(reg, f"{src}-a-to-{dst}-a-{scheme}", ext, parts[dst]["a-head"], setting)
        to_b = _stitch(reg, f"{src}-a-to-{dst}-b-{scheme}", ext, parts[dst]["b-head"], setting)
        (adapter_a,) = to_a.refs
        (adapter_b,) = to_b.refs
        row = cells.setdefault(f"{src}-a", {})
        for head, via, how in (
            (parts[dst]["a-head"], adapter_a, "adapter trained to this head"),
            (parts[dst]["b-head"], adapter_a, "adapter trained to the A head, reused"),
            (parts[dst]["b-head"], adapter_b, "adapter trained to this head"),
        ):
            m = reg.bench_path(ext, head, via=[via], post=False)
            key = f"{dst}-{'a' if head == parts[dst]['a-head'] else 'b'} head" + (
                " (A's adapter)" if via == adapter_a and head == parts[dst]["b-head"] else ""
            )
            row[key] = {"accuracy": m["accuracy"], "samples": m["samples"], "how": how, "via": via}
        row["adapter_parameters"] = {f"{dst}-a": to_a.adapter_parameters, f"{dst}-b": to_b.adapter_parameters}
    out["cells"] = cells
    out["minutes_measure"] = (time.perf_counter() - t) / 60
    return out


COLUMNS = [
    "cnn-a head",
    "cnn-b head",
    "cnn-b head (A's adapter)",
    "vit-a head",
    "vit-b head",
    "vit-b head (A's adapter)",
]


def write_results(name: str, setting: dict[str, Any], runs: dict[str, Any], out: Path) -> None:
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    minutes = sum(r["minutes_train"] + r["minutes_measure"] for r in runs.values())
    lines = [
        f"# A recombination matrix CNN × ViT on the Fashion-MNIST pair — {name} setting",
        "",
        f"`python bench/reproduce_vit_cnn.py{'' if name == 'cpu' else ' --steps ' + str(setting['steps'])}`: "
        f"CNN {FAMILIES['cnn']['arch']['name']} {FAMILIES['cnn']['arch']['config']} (SGD, lr 0.05) split after "
        f"stage2; ViT {FAMILIES['vit']['arch']['config']} (AdamW, lr 0.002) split after block2; {setting['steps']} "
        f"steps per network at batch {setting['batch_size']}; adapters: {setting['stitch_steps']} steps on "
        f"{setting['stitch_images']} training images of the extractor's task; test subset "
        f"{setting['test_limit']} images of the extractor's task (A), the classes it shares with the head; seed "
        f"{setting['seed']}; {minutes:.1f} minutes on this machine (2 shared CPU cores, no GPU). Accuracy in %, "
        "batch-statistics BatchNorm (the benchmark's default). Rows: task A's extractor; columns: heads, "
        "direct within a family, through a trained adapter across families.",
        "",
        "| scheme | extractor | own-task A / B | " + " | ".join(COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for scheme, r in runs.items():
        for fam in FAMILIES:
            row = r["cells"][f"{fam}-a"]
            own = r["own_task"][fam]
            vals = [pct(row[c]["accuracy"]) if c in row else "—" for c in COLUMNS]
            lines.append(f"| {scheme} | {fam}-a | {pct(own['a'])} / {pct(own['b'])} | " + " | ".join(vals) + " |")
    lines += [
        "",
        "Within a family the B column is the paper's recombination (A's extractor, B's head); across families "
        'the adapter column to the B head is a dedicated stitch, and "(A\'s adapter)" is the adapter trained '
        "to the other family's A head, reused unchanged with its B head.",
        f"Paper (Figure 2, ResNet-56, CIFAR-10 vs STL-10; no transformer): recombination independent "
        f"{PAPER['independent']}%, joint IIW+RP+DCC {PAPER['compatible']}%.",
    ]
    (out / f"vit_cnn_{name}.md").write_text("\n".join(lines) + "\n")
    (out / f"vit_cnn_{name}.json").write_text(
        json.dumps(
            {"setting": setting, "families": FAMILIES, "minutes": minutes, "paper": PAPER, "runs": runs}, indent=2
        )
        + "\n"
    )
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="override the steps (a smoke run; own results file)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all available)")
    parser.add_argument("--rewrite", action="store_true", help="rewrite the tables from the results JSON")
    args = parser.parse_args()
    setting = dict(SETTING)
    name = "cpu"
    out = ROOT / "bench" / "results"
    if args.rewrite:
        done = json.loads((out / f"vit_cnn_{name}.json").read_text())
        write_results(name, done["setting"], done["runs"], out)
        return
    if args.steps:
        setting.update(steps=args.steps, stitch_steps=args.steps, stitch_images=500, test_limit=300)
        name = "smoke"
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Any] = {}
    with ExitStack() as stack:
        if os.environ.get("PARTSBIN_URL"):
            reg = stack.enter_context(Registry())
        else:
            from partsbin.registry.config import Settings
            from partsbin.registry.embedded import embedded_registry

            data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="partsbin-vitcnn-")))
            emb = stack.enter_context(embedded_registry(Settings(data_dir=data)))
            reg = stack.enter_context(Registry(url=emb.url, token=emb.token, cache_dir=data / "cache"))
        for scheme in SCHEMES:
            runs[scheme] = one_scheme(reg, scheme, setting)
            print(json.dumps({scheme: runs[scheme]}), flush=True)
            write_results(name, setting, runs, out)


if __name__ == "__main__":
    main()
