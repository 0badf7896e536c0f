"""Training throughput of the trainer against a bare hand-written PyTorch loop.

    python bench/trainer_bench.py       # writes bench/results/trainer.{json,md}

Same model (ResNet-20 CIFAR-style, width 16, 1 input channel), same batch (128),
same data (Fashion-MNIST task A of the two-domain pair, 28×28), same optimiser (SGD
with Nesterov momentum and weight decay), task loss only, in one process. Rounds
alternate between the two loops so both see the same load on a shared machine; the
figure for each is its best round. Target: trainer / bare >= 0.9 on CPU. On a GPU
the same script measures the CUDA path (bf16 autocast, channels_last) of both.
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
from partsbin.parts.data import load_task
from partsbin.parts.jobs.settings import Settings
from partsbin.parts.jobs.train import TaskSpec, TrainSpec
from partsbin.trainer.engine import AuxHeads, build_networks, train
from partsbin.trainer.loop import resolve_device

ROOT = Path(__file__).resolve().parents[1]

STEPS, BATCH, ROUNDS = 60, 128, 3
ARCH = {"name": "resnet_cifar", "config": {"depth": 20, "width": 16}}


def bare_loop(images: torch.Tensor, labels: torch.Tensor, num_classes: int, device: torch.device) -> float:
    """What a practitioner writes by hand: the same model, batches and optimiser."""
    torch.manual_seed(0)
    model = build("resnet_cifar", depth=20, width=16, in_chans=1, num_classes=num_classes).to(device).train()
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    x_all, y_all = images.to(device), labels.to(device)
    gen = torch.Generator().manual_seed(1)
    order = torch.randperm(len(y_all), generator=gen)
    start = time.perf_counter()
    for step in range(STEPS):
        idx = order[(step * BATCH) % (len(order) - BATCH) :][:BATCH].to(device)
        x, y = x_all[idx], y_all[idx]
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if cuda:
        torch.cuda.synchronize()
    return STEPS * BATCH / (time.perf_counter() - start)


def trainer_loop(spec: TrainSpec, tasks, device: torch.device) -> float:
    nets = build_networks(spec, tasks)
    stats = train(nets, AuxHeads(), spec.settings, joint=False, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return stats["images_per_s"]


def main() -> None:
    settings = Settings(steps=STEPS, batch_size=BATCH, lr=0.05, schedule="constant")
    spec = TrainSpec(
        name="bench",
        arch=ARCH,
        tasks=[TaskSpec(name="a", pair="fashion-mnist", pair_task="a")],
        scheme="independent",
        settings=settings,
        publish=False,
    )
    tasks = [load_task(t) for t in spec.tasks]
    device = resolve_device(settings)
    bare, ours = [], []
    # Warm-up both (allocator, kernels) before timing.
    bare_loop(tasks[0].train.x[:2048], tasks[0].train.y[:2048], len(tasks[0].classes), device)
    for _ in range(ROUNDS):
        bare.append(bare_loop(tasks[0].train.x, tasks[0].train.y, len(tasks[0].classes), device))
        ours.append(trainer_loop(spec, tasks, device))
    name = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    )
    result = {
        "device": name,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "steps": STEPS,
        "batch": BATCH,
        "rounds": ROUNDS,
        "arch": ARCH,
        "bare_images_per_s": max(bare),
        "trainer_images_per_s": max(ours),
        "ratio": max(ours) / max(bare),
        "all_bare": bare,
        "all_trainer": ours,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    tag = "gpu" if device.type == "cuda" else "cpu"
    (out / f"trainer_{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = f"""# Trainer throughput ({tag.upper()})

`python bench/trainer_bench.py` on {name}, torch {torch.__version__}.
ResNet-20 (width 16, 1 channel), batch {BATCH}, {STEPS} steps per round, Fashion-MNIST task A (28×28), task loss only; best of {ROUNDS} alternating rounds.

| loop | images/s |
|---|---|
| bare hand-written PyTorch loop | {max(bare):.0f} |
| partsbin trainer (`trainer.engine.train`) | {max(ours):.0f} |
| **ratio** | **{max(ours) / max(bare):.2f}** (target ≥ 0.9) |
"""
    (out / f"trainer_{tag}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
