"""Every job kind's training through the one loop (``partsbin.trainer.loop.fit``) against a
bare PyTorch loop of the same model, data, loss and optimiser, in the same run.

For each kind the trainer's own entry point (what the kind's runner calls) is timed
against a hand-written loop doing the same steps: index a CPU minibatch, forward, loss,
``zero_grad``, ``backward``, ``step`` — nothing else (no progress, no schedule, no cancel
checks). Both start from the same freshly built modules; rounds alternate, best of
``--rounds``. The ratio is bare seconds / loop seconds (1.0: no cost; the target is ≥ 0.95).

    flock /tmp/heavy.lock python bench/job_loop_bench.py            # Fashion-MNIST 28x28, ResNet-8 width 16
    python bench/job_loop_bench.py --steps 20 --rounds 1            # a quick look

Writes bench/results/job_loop_cpu.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from partsbin.parts.archs import build
from partsbin.parts.data import load_split
from partsbin.parts.data.spec import DataSpec
from partsbin.parts.evaluation import EvalSettings, evaluate_heads
from partsbin.parts.jobs.settings import Settings
from partsbin.trainer.adapt import adapt_extractor
from partsbin.trainer.engine import Network, build_aux_heads, build_networks, train
from partsbin.trainer.fct import train_side_info, train_transform
from partsbin.trainer.loop import make_optimizer
from partsbin.trainer.multiarch import train_shared_head
from partsbin.trainer.rotation import rotate_batch
from partsbin.trainer.stitch import features, train_adapter
from partsbin.trainer.transfer import finetune_curve
from partsbin.trainer.update_head import fine_tune_head, frozen_reference

RESULTS = Path(__file__).resolve().parent / "results"
ARCH = {"depth": 8, "width": 16}
Case = Callable[[], tuple[Callable[[], None], Callable[[], None]]]


def _sgd(params: Any, lr: float = 0.05) -> torch.optim.Optimizer:
    return make_optimizer(list(params), Settings(lr=lr))


def _adam(params: Any, lr: float) -> torch.optim.Optimizer:
    return make_optimizer(list(params), Settings(optimizer="adam", lr=lr, weight_decay=0.0))


def _batches(n: int, batch: int, steps: int, seed: int) -> list[torch.Tensor]:
    """The minibatch indices a bare loop uses: an epoch permutation, as the loop's."""
    gen, out, order, pos = torch.Generator().manual_seed(seed), [], None, n
    for _ in range(steps):
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=gen), 0
        assert order is not None
        out.append(order[pos : pos + batch])
        pos += batch
    return out


def cases(steps: int, batch: int) -> dict[str, Case]:
    train_x = load_split(DataSpec(source="fashion-mnist", limit=6000), "train")
    test_x = load_split(DataSpec(source="fashion-mnist", limit=1000), "test")
    x, y = train_x.x, train_x.y
    n = len(train_x)
    classes = train_x.classes

    def net(seed: int, num_classes: int = 10, arch: str = "resnet_cifar", **cfg: Any) -> Any:
        torch.manual_seed(seed)
        return build(arch, in_chans=1, num_classes=num_classes, **(cfg or ARCH))

    def train_kind() -> tuple[Callable[[], None], Callable[[], None]]:
        from partsbin.parts.jobs.train import TrainSpec

        spec = TrainSpec.model_validate(
            {
                "name": "bench",
                "methods": ["RP", "DCC"],
                "arch": {"name": "resnet_cifar", "config": ARCH},
                "tasks": [{"name": t, "data": {"source": "fashion-mnist"}} for t in ("a", "b")],
                "dcc_labels": classes[1:9],
                "settings": {"steps": steps, "batch_size": batch, "rp_fraction": 0.25},
            }
        )
        from partsbin.parts.data import TaskData

        task = TaskData("a", train_x, test_x, DataSpec(source="fashion-mnist"), DataSpec(source="fashion-mnist"))
        tasks = [task, TaskData("b", train_x, test_x, task.train_spec, task.test_spec)]
        nets = build_networks(spec, tasks)
        aux = build_aux_heads(spec, tasks, classes[1:9])
        rp_n = round(batch * 0.25)
        to_dcc = torch.tensor([classes[1:9].index(c) if c in classes[1:9] else -1 for c in classes])

        def loop() -> None:
            train(nets, aux, spec.settings, joint=True, device=torch.device("cpu"))

        def bare() -> None:
            models = [n_.model for n_ in nets]
            assert aux.rp is not None and aux.dcc is not None
            opts = [_sgd(m.parameters()) for m in models]
            aux_opt = _sgd([*aux.rp.parameters(), *aux.dcc.parameters()])
            idx = [_batches(n, batch, steps, 1 + k) for k in range(2)]
            for s in range(steps):
                for k, m in enumerate(models):
                    xb, yb = x[idx[k][s]], y[idx[k][s]]
                    ext, head = m.extractor(), m.head()
                    feats = ext(xb)
                    loss = F.cross_entropy(head(feats), yb)
                    rotated, labels = rotate_batch(xb[:rp_n])
                    loss = loss + F.cross_entropy(aux.rp(ext(rotated)), labels)
                    target = to_dcc[yb]
                    keep = torch.nonzero(target >= 0).flatten()
                    loss = loss + F.cross_entropy(aux.dcc(feats[keep]), target[keep], reduction="sum") / len(yb)
                    opts[k].zero_grad(set_to_none=True)
                    aux_opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opts[k].step()
                    aux_opt.step()

        return loop, bare

    def multiarch_kind() -> tuple[Callable[[], None], Callable[[], None]]:
        from partsbin.parts.data import TaskData

        task = TaskData("a", train_x, test_x, DataSpec(source="fashion-mnist"), DataSpec(source="fashion-mnist"))
        nets = []
        for i, (arch, cfg) in enumerate(
            (
                ("resnet_cifar", {**ARCH, "junction_channels": 32}),
                ("wide_resnet", {"depth": 10, "widen": 1, "junction_channels": 32}),
            )
        ):
            m = net(100 + i, arch=arch, **cfg)
            nets.append(Network(task, m, 100 + i, arch, cfg, m.split))
        head = build(
            "mobilenetv2_cifar", in_chans=1, num_classes=10, width_mult=0.25, junction_channels=32, split="block11"
        ).head()
        settings = Settings(steps=steps, batch_size=batch)

        def loop() -> None:
            train_shared_head(nets, head, settings, device=torch.device("cpu"))

        def bare() -> None:
            exts = [n_.extractor for n_ in nets]
            opts = [_sgd(e.parameters()) for e in exts]
            head_opt = _sgd(head.parameters())
            idx = [_batches(n, batch, steps, n_.seed + 1) for n_ in nets]
            for s in range(steps):
                for k, e in enumerate(exts):
                    loss = F.cross_entropy(head(e(x[idx[k][s]])), y[idx[k][s]])
                    opts[k].zero_grad(set_to_none=True)
                    head_opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opts[k].step()
                    head_opt.step()

        return loop, bare

    def update_head_kind() -> tuple[Callable[[], None], Callable[[], None]]:
        extractor = frozen_reference(net(3).extractor(), "batch")
        head = net(4).head()
        settings = Settings(steps=steps, batch_size=batch, lr=0.01)

        def loop() -> None:
            fine_tune_head(extractor, head, train_x, torch.arange(10), settings, device=torch.device("cpu"))

        def bare() -> None:
            opt = _sgd(head.parameters(), 0.01)
            for idx in _batches(n, batch, steps, 1):
                with torch.no_grad():
                    feats = extractor(x[idx])
                loss = F.cross_entropy(head(feats), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        return loop, bare

    def adapt_kind() -> tuple[Callable[[], None], Callable[[], None]]:
        extractor = net(5).extractor()
        rp = net(6, num_classes=4).head()
        settings = Settings(
            steps=steps, batch_size=batch, lr=0.01, schedule="constant", weight_decay=0.0, rp_fraction=1.0
        )

        def loop() -> None:
            adapt_extractor(extractor, rp, x, settings, device=torch.device("cpu"))

        def bare() -> None:
            opt = make_optimizer(list(extractor.parameters()), settings)
            for idx in _batches(n, batch, steps, 1):
                rotated, labels = rotate_batch(x[idx])
                loss = F.cross_entropy(rp(extractor(rotated)), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        return loop, bare

    def transfer_kind() -> tuple[Callable[[], None], Callable[[], None]]:
        m = net(7)
        extractor, head = m.extractor(), m.head()
        settings = Settings(batch_size=batch, lr=0.01, schedule="constant")
        evaluation = EvalSettings()

        def loop() -> None:
            finetune_curve(
                extractor, head, train_x, test_x, classes, [steps], settings, evaluation, device=torch.device("cpu")
            )

        def bare() -> None:
            opt = _sgd([*extractor.parameters(), *head.parameters()], 0.01)
            for idx in _batches(n, batch, steps, 1):
                loss = F.cross_entropy(head(extractor(x[idx])), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            evaluate_heads(extractor, [(head, classes)], test_x, evaluation)  # the curve's one point

        return loop, bare

    def stitch_kind() -> tuple[Callable[[], None], Callable[[], None]]:
        feats = features(net(8).extractor().eval(), x[:2000])
        labels = y[:2000]
        head = net(9).head()
        adapter = build("stitch", in_chans=feats.shape[1], out_chans=feats.shape[1], batchnorm=True)
        settings = Settings(
            optimizer="adam", lr=0.01, schedule="constant", weight_decay=0.0, steps=steps, batch_size=batch
        )

        def loop() -> None:
            train_adapter(adapter, head, feats, labels, settings)

        def bare() -> None:
            from partsbin.parts.batchnorm import evaluating

            opt = _adam(adapter.parameters(), 0.01)
            gen = torch.Generator().manual_seed(0)
            with evaluating(head, "batch"):
                for _ in range(steps):
                    idx = torch.randint(0, len(feats), (batch,), generator=gen)
                    loss = F.cross_entropy(head(adapter(feats[idx])), labels[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()

        return loop, bare

    def fct_side_kind() -> tuple[Callable[[], None], Callable[[], None]]:
        def loop() -> None:
            train_side_info(x, steps=steps, batch_size=batch, seed=0)

        def bare() -> None:
            torch.manual_seed(0)
            side = build("side_info", in_chans=1, width=8, dim=16)
            rp = nn.Linear(16, 4)
            opt = _adam([*side.parameters(), *rp.parameters()], 3e-3)
            gen = torch.Generator().manual_seed(0)
            for _ in range(steps):
                rotated, labels = rotate_batch(x[torch.randint(0, n, (batch,), generator=gen)])
                loss = F.cross_entropy(rp(side(rotated).flatten(1)), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        return loop, bare

    def fct_transform_kind() -> tuple[Callable[[], None], Callable[[], None]]:
        old = features(net(10).extractor().eval(), x[:3000])
        new = features(net(11).extractor().eval(), x[:3000])
        settings = Settings(optimizer="adam", lr=3e-3, weight_decay=0.0, schedule="cosine", steps=steps, batch_size=128)

        def loop() -> None:
            train_transform(old, new, hidden=128, settings=settings)

        def bare() -> None:
            torch.manual_seed(0)
            t = build("fct_transform", in_chans=old.shape[1], side_chans=0, out_chans=new.shape[1], hidden=128)
            opt = _adam(t.parameters(), 3e-3)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
            gen = torch.Generator().manual_seed(0)
            for _ in range(steps):
                idx = torch.randint(0, len(old), (128,), generator=gen)
                loss = F.mse_loss(t(old[idx]), new[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()

        return loop, bare

    def evaluate_kind() -> tuple[Callable[[], None], Callable[[], None]]:
        m = net(12)
        extractor, heads = m.extractor(), [(net(13 + i).head(), classes) for i in range(4)]
        evaluation = EvalSettings(batch_size=256)

        def loop() -> None:
            evaluate_heads(extractor, heads, test_x, evaluation)

        def bare() -> None:
            from contextlib import ExitStack

            from partsbin.parts.batchnorm import evaluating
            from partsbin.parts.evaluation import select_eval_images
            from partsbin.parts.metrics import recombination_accuracy

            # The same work as the benchmark's: the images of the classes the heads share
            # with the data, every part with batch statistics (the paper's choice for
            # recombined parts, heads included), each head's logits, then its accuracy.
            chosen = select_eval_images(test_x, heads[0][1], evaluation)
            outs: list[list[torch.Tensor]] = [[] for _ in heads]
            with torch.no_grad(), ExitStack() as stack:
                for module in (extractor, *(h for h, _ in heads)):
                    stack.enter_context(evaluating(module, "batch"))
                for s in range(0, len(chosen), 256):
                    feats = extractor(chosen.x[s : s + 256])
                    for k, (h, _) in enumerate(heads):
                        outs[k].append(h(feats).float())
            for k, (_, labels) in enumerate(heads):
                recombination_accuracy(torch.cat(outs[k]), chosen.y, chosen.classes, labels)

        return loop, bare

    return {
        "train (joint RP+DCC, 2 networks)": train_kind,
        "train-multiarch (ResNet + WRN, shared head)": multiarch_kind,
        "update-head": update_head_kind,
        "adapt": adapt_kind,
        "transfer (+ its one measured point)": transfer_kind,
        "stitch (trained adapter)": stitch_kind,
        "fct side-info": fct_side_kind,
        "fct transform": fct_transform_kind,
        "evaluate (4 heads)": evaluate_kind,
    }


def _time(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="job_loop_cpu")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="re-measure only the kinds whose name starts with this (repeatable); the other rows of --out are kept",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    kept: dict[str, dict] = {}
    if args.only and (RESULTS / f"{args.out}.json").exists():
        kept = {r["kind"]: r for r in json.loads((RESULTS / f"{args.out}.json").read_text())["rows"]}
    for name, make in cases(args.steps, args.batch).items():
        if args.only and not any(name.startswith(prefix) for prefix in args.only):
            if name in kept:
                rows.append(kept[name])
            continue
        loop, bare = make()
        loop()  # warm-up: allocator, kernels, first-touch
        bare()
        best_loop = best_bare = float("inf")
        for _ in range(args.rounds):
            best_loop = min(best_loop, _time(loop))
            best_bare = min(best_bare, _time(bare))
        rows.append({"kind": name, "loop_s": best_loop, "bare_s": best_bare, "ratio": best_bare / best_loop})
        print(
            f"{name:48s} loop {best_loop:6.2f} s  bare {best_bare:6.2f} s  ratio {best_bare / best_loop:.3f}",
            flush=True,
        )
    meta = {
        "steps": args.steps,
        "batch": args.batch,
        "rounds": args.rounds,
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Every kind's training through the one loop against a bare PyTorch loop",
        "",
        f"`python bench/job_loop_bench.py` — Fashion-MNIST 28x28 (6,000 training images), ResNet-8 width 16 unless "
        f"named, {args.steps} steps of {args.batch}, best of {args.rounds} alternating rounds, {args.threads} CPU "
        f"threads, torch {torch.__version__}. Ratio: bare seconds / loop seconds (target ≥ 0.95).",
        "",
        "| kind | loop (s) | bare loop (s) | ratio |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r['kind']} | {r['loop_s']:.2f} | {r['bare_s']:.2f} | {r['ratio']:.3f} |" for r in rows]
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
