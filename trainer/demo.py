"""``partsbin demo``: the whole idea end to end, on the digits two-domain pair.

1. Train network A with RP+DCC (and IIW's shared initial weights) on task A, publish it
   with its aux heads.
2. Train network B on task B — odd-indexed digits seen through a domain shift —
   incrementally: against A's frozen aux heads, from A's initial weights, without
   seeing any of A's data.
3. Ask the registry which extractors B's head is compatible with (``GET /compatible``).
4. Assemble A's extractor with B's head.
5. Benchmark the 2×2 recombination matrix against an independently trained pair, print
   the tables and save the heatmaps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partsbin.parts.jobs.train import TrainResult, TrainSpec
from partsbin.trainer.jobs import run_job

__all__ = ["DemoResult", "run_demo"]

ARCH = {"name": "resnet_cifar", "config": {"depth": 8, "width": 16}}
COMMON = [str(i) for i in range(1, 9)]  # digits 1-8: the classes tasks A and B share


@dataclass
class DemoResult:
    compatible: Any
    independent: Any
    found_by_lookup: list[str]
    heatmaps: list[Path]
    seconds: float


def _spec(name: str, tasks: list[str], **kw: Any) -> TrainSpec:
    steps = kw.pop("steps")
    seed = kw.pop("seed", 0)
    return TrainSpec.model_validate(
        {
            "name": name,
            "namespace": "demo",
            "arch": ARCH,
            "tasks": [{"name": t, "pair": "digits", "pair_task": t} for t in tasks],
            "settings": {"steps": steps, "batch_size": 64, "lr": 0.05, "seed": seed, "rp_fraction": 0.5},
            **kw,
        }
    )


def _run(spec: TrainSpec, registry: Any) -> TrainResult:
    result = run_job(spec, registry)
    assert isinstance(result, TrainResult)
    return result


def run_demo(
    registry: Any, *, steps: int = 150, out_dir: Path = Path("."), console: Any = None, seed: int = 0
) -> DemoResult:
    say = console.print if console is not None else print
    started = time.perf_counter()
    tag = time.strftime("%Y%m%d%H%M%S")

    say(f"[1/5] training network A on digits task A (classes 0-8) with RP + DCC over {len(COMMON)} common classes ...")
    a = _run(
        _spec(
            f"a-{tag}",
            ["a"],
            steps=steps,
            seed=seed,
            methods=["IIW", "RP", "DCC"],
            scheme="incremental",
            dcc_labels=COMMON,
        ),
        registry,
    )
    aux = [r for r in a.refs if "-aux-" in r]
    init = next(r for r in a.refs if "-init@" in r)
    ext_a = next(r for r in a.refs if r.split("@")[0].endswith("-a-extractor"))
    head_a = next(r for r in a.refs if r.split("@")[0].endswith("-a-head"))
    say(f"      published {', '.join(a.refs)}; own-task accuracy {a.tasks['a'].own_task_accuracy:.1%}")

    say(
        "[2/5] training network B on digits task B (odd indices, 8→4→8 blur, inverted) against A's frozen aux heads ..."
    )
    b = _run(
        _spec(
            f"b-{tag}",
            ["b"],
            steps=steps,
            seed=seed + 1,
            methods=["IIW", "RP", "DCC"],
            scheme="incremental",
            anchors=aux,
            init=init,
        ),
        registry,
    )
    ext_b = next(r for r in b.refs if r.split("@")[0].endswith("-b-extractor"))
    head_b = next(r for r in b.refs if r.split("@")[0].endswith("-b-head"))
    say(f"      published {', '.join(b.refs)}; own-task accuracy {b.tasks['b'].own_task_accuracy:.1%}")

    say(f"[3/5] GET /compatible?head={head_b}")
    found = [item["component"].ref for item in registry.compatible(head=head_b)]
    for item in registry.compatible(head=head_b):
        say(f"      {item['component'].ref}: {item['reasons'][0]['detail']} ({item['reasons'][0].get('anchor_ref')})")
    if ext_a not in found:
        raise RuntimeError(f"the registry did not list {ext_a} as compatible with {head_b}")

    say(f"[4/5] assembling {ext_a} + {head_b}")
    model = registry.assemble(ext_a, head_b)
    say(
        f"      {type(model).__name__}: {sum(p.numel() for p in model.parameters()):,} parameters, BatchNorm {model.bn_mode} statistics, labels {model.labels}"
    )

    say("[5/5] benchmarking against an independently trained pair ...")
    ind = _run(_spec(f"independent-{tag}", ["a", "b"], steps=steps, seed=seed + 2, scheme="independent"), registry)
    ind_ext = [r for r in ind.refs if "extractor" in r]
    ind_head = [r for r in ind.refs if r.split("@")[0].endswith("-head")]
    compatible = registry.bench([ext_a, ext_b], [head_a, head_b], correlation=True)
    independent = registry.bench(ind_ext, ind_head, correlation=True)
    heatmaps = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for label, result in (("compatible", compatible), ("independent", independent)):
        if console is not None:
            console.print(result.rich_table())
        corr = next(iter(result.correlation.values()), None)
        say(
            f"      {label}: mean recombination accuracy {result.recombination_mean():.1%}"
            + (
                f"; feature correlation {corr['direct']:.2f} (best permutation {corr['best_permutation']:.2f})"
                if corr
                else ""
            )
        )
        heatmaps.append(result.heatmap(out_dir / f"demo-{label}.png"))
    ab = compatible.cell(ext_a, head_b).accuracy
    ab_ind = independent.cell(ind_ext[0], ind_head[1]).accuracy
    say(
        f"A's extractor + B's head: {ab:.1%} (independent pair: {ab_ind:.1%}). Heatmaps: {', '.join(str(p) for p in heatmaps)}"
    )
    return DemoResult(compatible, independent, found, heatmaps, time.perf_counter() - started)
