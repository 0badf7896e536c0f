"""Throughput of the ``adapt`` and ``transfer`` loops against bare hand-written PyTorch loops.

    flock /tmp/heavy.lock python bench/applications_bench.py   # writes bench/results/applications_cpu.{json,md}

Like ``bench/trainer_bench.py``: the same model (ResNet-8 CIFAR-style, width 16, 1 input
channel, split at stage 2), the same images (Fashion-MNIST, 28×28), the same optimiser,
in one process; rounds alternate between the loops so both see the same load on a shared
machine, and each figure is its best round. Target: ours / bare >= 0.9 on CPU.

- adapt: the RP loss of every image at four rotations through a frozen RP head (no
  gradient; BatchNorm with batch statistics and buffers untouched), extractor only;
  images/s counts rotated images. Ours: :func:`partsbin.trainer.adapt.adapt_extractor`.
- transfer: extractor + head fine-tuned with the task loss. Ours:
  :func:`partsbin.trainer.transfer.finetune_curve` measured once, at the end, on 256 test
  images (inside its timing; about 1% of the work).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from partsbin.parts.archs import build
from partsbin.parts.batchnorm import use_batch_statistics
from partsbin.parts.data import load_split
from partsbin.parts.data.spec import DataSpec
from partsbin.parts.evaluation import EvalSettings
from partsbin.parts.jobs.settings import Settings
from partsbin.trainer.adapt import adapt_extractor
from partsbin.trainer.transfer import finetune_curve

ROOT = Path(__file__).resolve().parents[1]
STEPS, BATCH, ROUNDS = 30, 64, 3
CFG = {"depth": 8, "width": 16, "in_chans": 1}
SETTINGS = Settings(steps=STEPS, batch_size=BATCH, lr=0.01, schedule="constant", weight_decay=0.0)


def _parts(num_classes: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    net = build("resnet_cifar", **CFG, num_classes=num_classes)
    return net.extractor(), net.head()


def _sgd(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    s = SETTINGS
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=True)


def bare_adapt(x_all: torch.Tensor) -> float:
    extractor, rp_head = _parts(4)
    rp_head.requires_grad_(False)
    use_batch_statistics(rp_head)
    extractor.train()
    opt = _sgd(list(extractor.parameters()))
    order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    for step in range(STEPS):
        x = x_all[order[step * BATCH : (step + 1) * BATCH]]
        rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
        labels = torch.arange(4).repeat_interleave(x.shape[0])
        loss = F.cross_entropy(rp_head(extractor(rotated)), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return STEPS * BATCH * 4 / (time.perf_counter() - start)


def ours_adapt(x_all: torch.Tensor) -> float:
    extractor, rp_head = _parts(4)
    return adapt_extractor(extractor, rp_head, x_all, SETTINGS, device=torch.device("cpu"))["images_per_s"]


def bare_transfer(x_all: torch.Tensor, y_all: torch.Tensor) -> float:
    extractor, head = _parts(10)
    extractor.train(), head.train()
    opt = _sgd(list(extractor.parameters()) + list(head.parameters()))
    order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    for step in range(STEPS):
        idx = order[step * BATCH : (step + 1) * BATCH]
        loss = F.cross_entropy(head(extractor(x_all[idx])), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return STEPS * BATCH / (time.perf_counter() - start)


def ours_transfer(train, test) -> float:  # type: ignore[no-untyped-def]
    extractor, head = _parts(10)
    _, stats = finetune_curve(
        extractor,
        head,
        train,
        test,
        train.classes,
        [STEPS],
        SETTINGS,
        EvalSettings(batch_size=256),
        device=torch.device("cpu"),
    )
    return float(stats["images_per_s"])


def main() -> None:
    train = load_split(DataSpec(source="fashion-mnist", limit=8192), "train")
    test = load_split(DataSpec(source="fashion-mnist", limit=256), "test")
    bare_adapt(train.x[:256])  # warm-up
    rows: dict[str, dict[str, list[float]]] = {"adapt": {"bare": [], "ours": []}, "transfer": {"bare": [], "ours": []}}
    for _ in range(ROUNDS):
        rows["adapt"]["bare"].append(bare_adapt(train.x))
        rows["adapt"]["ours"].append(ours_adapt(train.x))
        rows["transfer"]["bare"].append(bare_transfer(train.x, train.y))
        rows["transfer"]["ours"].append(ours_transfer(train, test))
    name = f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    result = {
        "device": name,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "steps": STEPS,
        "batch": BATCH,
        "rounds": ROUNDS,
        "arch": {"name": "resnet_cifar", "config": CFG},
        **{
            loop: {"bare": max(r["bare"]), "ours": max(r["ours"]), "ratio": max(r["ours"]) / max(r["bare"]), "all": r}
            for loop, r in rows.items()
        },
    }
    out = ROOT / "bench" / "results"
    (out / "applications_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# adapt and transfer loop throughput (CPU)",
        "",
        f"`flock /tmp/heavy.lock python bench/applications_bench.py` on {name}, torch {torch.__version__}. "
        f"ResNet-8 (width 16, 1 channel, split at stage 2), {STEPS} steps of batch {BATCH} per round, Fashion-MNIST "
        f"28×28; best of {ROUNDS} alternating rounds. adapt counts rotated images (4 per image).",
        "",
        "| loop | bare PyTorch (images/s) | partsbin (images/s) | ratio (target ≥ 0.9) |",
        "|---|---|---|---|",
    ]
    for loop in ("adapt", "transfer"):
        r = result[loop]
        md.append(f"| {loop} | {r['bare']:.0f} | {r['ours']:.0f} | **{r['ratio']:.2f}** |")
    (out / "applications_cpu.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
