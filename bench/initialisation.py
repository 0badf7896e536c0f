"""How much does the initialisation matter for compatibility? (issue 25, part 2)

    flock /tmp/heavy.lock python bench/initialisation.py     # writes bench/results/initialisation_cpu.{md,json}
    python bench/initialisation.py --report                  # tables from the runs recorded so far

The earlier version of the paper (arXiv 2004.03898) states that "random initialization has
a large effect on compatibility"; the AAAI paper measures IIW alone at 25.1% against 10.6%
for independent networks (Fig. 2), and, from pre-trained weights, IIW at 74.3% while RP
falls from 50.1% to 19.7% and DCC from 65.8% to 52.3% when the two networks start from
*different* weights (§4).

The quick setting of ``reproduce_fig2.py`` with ResNet-8 split after stage 2 on P1
(DESIGN.md's pair), seeds 0 and 1, as ``split_point.py`` trains it:

- independent networks (each its own seed) against IIW alone (one shared seed);
- RP+DCC joint from different seeds against IIW+RP+DCC joint (one shared seed);
- IIW+RP+DCC joint from a fresh shared init against one from a registered ``init``
  component: the untrained weights that a separate one-step IIW run (seed 100 + s, so
  weights neither network would have drawn) published, pulled by ref (``TrainSpec.init``).

The independent and fresh-init IIW+RP+DCC figures are ``split_point.py``'s stage-2 runs
(the same spec); everything else is trained here, through the trainer, published to an
embedded registry and measured by ``Registry.bench``, appended to
``initialisation_cpu_runs.jsonl`` so that an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from split_point import RESULTS, RUNS, SEEDS, load_runs, ms, registry, spec_at, train_and_measure

from partsbin.parts.jobs.train import TrainSpec
from partsbin.trainer.jobs import run_job

OWN_RUNS = RESULTS / "initialisation_cpu_runs.jsonl"
ARCH, SPLIT, PAIR = "resnet", "stage2", "P1"
REGISTERED = "IIW+RP+DCC joint, registered init"
# (label, methods, scheme, where its runs come from)
CONDITIONS: list[tuple[str, list[str], str, str]] = [
    ("independent (different seeds)", [], "independent", "split_point"),
    ("IIW", ["IIW"], "independent", "here"),
    ("RP+DCC joint (different seeds)", ["RP", "DCC"], "joint", "here"),
    ("IIW+RP+DCC joint, fresh shared init", ["IIW", "RP", "DCC"], "joint", "split_point"),
    (REGISTERED, ["IIW", "RP", "DCC"], "joint", "here"),
]
FROM_SPLIT_POINT = {
    "independent (different seeds)": "independent",
    "IIW+RP+DCC joint, fresh shared init": "IIW+RP+DCC (joint)",
}
PAPER = {
    "independent (different seeds)": "10.6% (random init)",
    "IIW": "25.1% (identical random); 74.3% (identical pre-trained)",
    "RP+DCC joint (different seeds)": "not reported; RP 50.1% / DCC 65.8% from different random weights, "
    "19.7% / 52.3% from different pre-trained ones",
    "IIW+RP+DCC joint, fresh shared init": "76.7%",
    REGISTERED: "not reported",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", action="store_true", help="write the tables from the recorded runs, train nothing")
    parser.add_argument("--stop-after", type=float, help="start no new run after this many minutes")
    args = parser.parse_args()
    done = load_runs(OWN_RUNS)
    if not args.report:
        started = time.perf_counter()
        with registry() as reg:
            # Both seeds of a condition before the next one: a run stopped by the budget
            # leaves whole conditions measured.
            for label, methods, scheme, source in CONDITIONS:
                for seed in SEEDS:
                    key = (label, seed)
                    if source != "here" or key in done:
                        continue
                    if args.stop_after and (time.perf_counter() - started) / 60 > args.stop_after:
                        print(f"--stop-after {args.stop_after} min reached; not starting {key}", flush=True)
                        break
                    over: dict[str, Any] = {}
                    init_seconds = 0.0
                    if label == REGISTERED:
                        # The trainer publishes an IIW run's untrained shared weights as an
                        # `init` component; one step is enough to get it into the registry.
                        t0 = time.perf_counter()
                        prep = spec_at(ARCH, SPLIT, PAIR, "init-source", ["IIW"], "independent", 100 + seed, steps=1)
                        refs = run_job(prep, reg).refs
                        over["init"] = next(r for r in refs if r.split("@")[0].endswith("-init"))
                        init_seconds = time.perf_counter() - t0
                    spec = spec_at(ARCH, SPLIT, PAIR, label, methods, scheme, seed)
                    if over:
                        spec = TrainSpec.model_validate({**spec.model_dump(mode="json"), **over})
                    m, _ = train_and_measure(reg, spec)
                    m["seconds"] += init_seconds
                    done[key] = record = {"key": list(key), "metrics": m, "init": over.get("init")}
                    with OWN_RUNS.open("a") as fh:
                        fh.write(json.dumps(record) + "\n")
                    print(
                        f"{label} seed {seed}: recombination {m['recombination']:.1%}, own {m['own']:.1%} "
                        f"({m['seconds']:.0f} s)",
                        flush=True,
                    )
    write_results(done)


def write_results(done: dict[tuple[Any, ...], dict[str, Any]]) -> None:
    split_runs = load_runs(RUNS)

    def runs(label: str) -> list[dict[str, Any]]:
        if label in FROM_SPLIT_POINT:
            return [
                r
                for (a, s, p, lab, _), r in sorted(split_runs.items())
                if (a, s, p, lab) == (ARCH, SPLIT, PAIR, FROM_SPLIT_POINT[label])
            ]
        return [r for (lab, _), r in sorted(done.items()) if lab == label]

    own_minutes = sum(r["metrics"]["seconds"] for r in done.values()) / 60
    lines = [
        "# Initialisation and compatibility (issue 25, part 2)",
        "",
        "`python bench/initialisation.py`: the quick setting of `reproduce_fig2.py` (ResNet-8 width 16 split after "
        "stage 2, 500 steps per network at batch 64, RP on a quarter of each batch, 2,000 test images per task) "
        f"on P1 (DESIGN.md's pair, 8 common classes, chance 12.5%), seeds {SEEDS}; {own_minutes:.0f} minutes of "
        "training and measuring here, plus the two rows marked † taken from `split_point.py`'s stage-2 runs "
        "(the same spec). Recombination accuracy: mean of both directions, batch statistics, common-class batches. "
        "Mean ± std over seeds. The registered init is the untrained weights published by a separate one-step "
        "IIW run of seed 100 + s, pulled by ref.",
        "",
        "| condition | recombination (ours) | paper (ResNet-56, CIFAR-10/STL-10) | own-task accuracy | "
        "feature correlation (direct / best perm.) |",
        "|---|---|---|---|---|",
    ]
    summary = {}
    for label, *_ in CONDITIONS:
        rs = runs(label)
        rec = [r["metrics"]["recombination"] for r in rs]
        own = [r["metrics"]["own"] for r in rs]
        corr = [r["metrics"]["corr"] for r in rs]
        corr_p = [r["metrics"]["corr_perm"] for r in rs]
        summary[label] = {"recombination": rec, "own": own, "corr": corr, "corr_perm": corr_p}
        mark = " †" if label in FROM_SPLIT_POINT else ""
        lines.append(
            f"| {label}{mark} | {ms(rec)} | {PAPER[label]} | {ms(own)} | "
            f"{ms(corr, pct=False)} / {ms(corr_p, pct=False)} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "initialisation_cpu.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "initialisation_cpu.json").write_text(
        json.dumps(
            {
                "minutes_here": own_minutes,
                "seeds": SEEDS,
                "setting": {"arch": ARCH, "split": SPLIT, "pair": PAIR},
                "paper": PAPER,
                "results": {
                    k: {m: (statistics.mean(v) if v else None) for m, v in s.items()} for k, s in summary.items()
                },
                "runs": list(done.values()),
            },
            indent=2,
        )
        + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
