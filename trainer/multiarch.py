"""Several architectures, one shared head (paper §5.2): the ``train-multiarch`` job.

Each network's extractor ends in a 1×1 junction projection to ``junction_channels``
(declared in its arch config), so extractors of different widths and resolutions all
give that many channels; the shared head (by default MobileNetV2's, after inverted-residual
block 11) pools globally, which absorbs their different spatial sizes. The networks train
jointly: minibatches alternate between them, each step updates that network's extractor
and the shared head. The shared head is a DCC head over all of the task's classes, so it
is also the task head; it is published first, as the group's anchor, and every extractor
names it in ``compat.anchors``.

The loop is a sibling of :func:`partsbin.trainer.engine.train` (kept apart so that the
engine's loop stays one scheme family) and reuses its helpers.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from partsbin.parts.archs import build
from partsbin.parts.cpus import use_threads
from partsbin.parts.data import TaskData, augment_batch, load_task
from partsbin.parts.describe import card_for
from partsbin.parts.evaluation import EvalSettings, evaluate_pair
from partsbin.parts.shared_head_spec import MultiArchSpec
from partsbin.trainer.engine import (
    Network,
    Progress,
    StopRequested,
    _Batches,
    _optimizer,
    get_lr,
    resolve_device,
)
from partsbin.trainer.run import RunResult, _library_versions

__all__ = ["build_multiarch", "train_shared_head", "run_multiarch"]


def build_multiarch(spec: MultiArchSpec, task: TaskData) -> tuple[list[Network], nn.Module, dict[str, Any]]:
    """The networks (each with its junction projection) and the shared head with its config."""
    in_chans, n_classes, j = int(task.train.x.shape[1]), len(task.classes), spec.junction_channels
    nets = []
    for i, choice in enumerate(spec.networks):
        seed = spec.settings.seed + 1000 * (i + 1)
        torch.manual_seed(seed)
        cfg = {**choice.arch.config, "in_chans": in_chans, "num_classes": n_classes, "junction_channels": j}
        model = build(choice.arch.name, split=choice.arch.split, **cfg)
        nets.append(
            Network(dataclasses.replace(task, name=choice.name), model, seed, choice.arch.name, cfg, model.split)
        )
    torch.manual_seed(spec.settings.seed + 7)
    head_cfg = {**spec.head.config, "in_chans": in_chans, "num_classes": n_classes, "junction_channels": j}
    head_net = build(spec.head.name, split=spec.head.split, **head_cfg)
    return nets, head_net.head(), {"arch": spec.head.name, "config": head_cfg, "split": head_net.split}


def train_shared_head(
    nets: list[Network],
    head: nn.Module,
    settings: Any,
    *,
    device: torch.device,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Joint training: one optimiser step per network in turn, each also stepping the shared head."""
    progress = progress or Progress()
    cuda = device.type == "cuda"
    extractors = [n.extractor.to(device).train() for n in nets]
    head.to(device).train()
    # Only the extractor part of each network trains: its own head layers are never used.
    opts = [_optimizer(list(e.parameters()), settings) for e in extractors]
    head_opt = _optimizer(list(head.parameters()), settings)
    batches = [_Batches(n.task.train, settings.batch_size, n.seed + 1, device) for n in nets]
    gens = [torch.Generator().manual_seed(n.seed + 2) for n in nets]
    total = settings.steps * len(nets)
    images, started, last_loss, it = 0, time.perf_counter(), float("nan"), 0
    history: list[dict[str, Any]] = []
    for step in range(settings.steps):
        lr = get_lr(settings, step)
        for i, net in enumerate(nets):
            if progress.should_stop():
                raise StopRequested()
            for opt in (opts[i], head_opt):
                for group in opt.param_groups:
                    group["lr"] = lr
            x, y = batches[i].next()
            if settings.augment:
                x = augment_batch(x.cpu(), gens[i]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(head(extractors[i](x)), y)
            opts[i].zero_grad(set_to_none=True)
            head_opt.zero_grad(set_to_none=True)
            loss.backward()
            opts[i].step()
            head_opt.step()
            it += 1
            images += x.shape[0]
            last_loss = float(loss.detach())
            if it % progress.every == 0 or it == total:
                elapsed = time.perf_counter() - started
                info = {
                    "step": it,
                    "total": total,
                    "task": net.task.name,
                    "loss": last_loss,
                    "lr": lr,
                    "images_per_s": images / max(elapsed, 1e-9),
                }
                history.append(info)
                progress.on_step(info)
    elapsed = time.perf_counter() - started
    return {
        "steps": total,
        "seconds": elapsed,
        "images_per_s": images / max(elapsed, 1e-9),
        "final_loss": last_loss,
        "history": history,
    }


def run_multiarch(
    spec: MultiArchSpec, registry: Any = None, *, progress: Progress | None = None, job_id: str | None = None
) -> RunResult:
    s = spec.settings
    use_threads(s.threads)
    device = resolve_device(s)
    if spec.publish and registry is None:
        raise ValueError("this spec publishes its components: it needs a registry")
    task = load_task(spec.task)
    nets, head, head_arch = build_multiarch(spec, task)
    stats = train_shared_head(nets, head, s, device=device, progress=progress)

    result = RunResult(networks=nets)
    result.metrics = {
        "train": {**{k: v for k, v in stats.items() if k != "history"}, "threads": torch.get_num_threads()}
    }
    evaluation = EvalSettings(bn_mode=s.bn_eval, batch_size=s.eval_batch_size)
    for net in nets:
        acc = evaluate_pair(net.extractor, head, task.test, task.classes, evaluation, device=device)
        result.metrics[net.task.name] = {
            "arch": net.arch,
            "own_task_accuracy": acc.restricted,
            "n": acc.n,
            "bn": s.bn_eval,
            "evaluation": evaluation.as_dict(),
        }
    result.lines = [
        f"{net.task.name} ({net.arch}) + shared head: {result.metrics[net.task.name]['own_task_accuracy']:.1%} "
        f"on {result.metrics[net.task.name]['n']} test images"
        for net in nets
    ] + [f"{stats['images_per_s']:.0f} images/s over {stats['seconds']:.0f} s"]
    if spec.publish:
        result.refs = _publish(spec, registry, task, nets, head, head_arch, result.metrics, job_id)
    return result


def _dataset(spec: MultiArchSpec, task: TaskData) -> dict[str, Any]:
    return {
        "name": task.train_spec.source,
        "split": "train",
        "classes": task.classes,
        "transform": [t.model_dump(mode="json") for t in task.train_spec.transforms],
        "indices": task.train_spec.indices,
        "task": spec.task.name,
        "source_digest": task.train.source_digest,
        # How to rebuild the task's test set: the client benchmark reads it.
        "test": {
            **task.test_spec.model_dump(mode="json"),
            "test_limit": spec.task.test_limit,
            "source_digest": task.test.source_digest,
        },
    }


def _publish(
    spec: MultiArchSpec,
    registry: Any,
    task: TaskData,
    nets: list[Network],
    head: nn.Module,
    head_arch: dict[str, Any],
    metrics: dict[str, Any],
    job_id: str | None,
) -> list[str]:
    ns, run_name = spec.namespace, spec.name
    settings = spec.settings.model_dump(mode="json")
    common: dict[str, Any] = {"license": None, "tags": ["partsbin-trainer", "shared-head", "joint"]}
    provenance = {
        "dataset": _dataset(spec, task),
        "settings": settings,
        "seed": spec.settings.seed,
        "job": job_id,
        "libraries": _library_versions(),
        "networks": [{"name": n.task.name, "arch": n.arch, "config": n.config, "split": n.split} for n in nets],
    }
    head_card = card_for(
        name=f"{ns}/{run_name}-shared-head",
        role="aux-dcc",
        arch=head_arch["arch"],
        config=head_arch["config"],
        split=head_arch["split"],
        labels=task.classes,
        compat={"methods": ["DCC"], "scheme": "joint"},
        provenance=provenance,
        metrics={
            "accuracy_by_extractor": {n.task.name: metrics[n.task.name]["own_task_accuracy"] for n in nets},
            "test_examples": metrics[nets[0].task.name]["n"],
            "bn": spec.settings.bn_eval,
        },
        description=(
            f"shared DCC head of run {run_name} (also its task head): one head for "
            f"{', '.join(f'{n.task.name} ({n.arch})' for n in nets)}, meeting each through a "
            f"{spec.junction_channels}-channel 1x1 junction projection (paper §5.2)"
        ),
        **common,
    )
    shared = registry.push(head, head_card)
    refs = [shared.ref]
    size = int(task.train.x.shape[-1])
    for net in nets:
        m = metrics[net.task.name]
        ext = registry.push(
            net.extractor,
            card_for(
                name=f"{ns}/{run_name}-{net.task.name}-extractor",
                role="extractor",
                arch=net.arch,
                config=net.config,
                split=net.model.split,
                input_size=size,
                compat={"anchors": [shared.digest], "methods": ["DCC"], "scheme": "joint"},
                provenance={**provenance, "seed": net.seed},
                metrics={
                    "own_task_accuracy": m["own_task_accuracy"],
                    "test_examples": m["n"],
                    "bn": m["bn"],
                    "head": shared.ref,
                },
                description=(
                    f"{net.arch} feature extractor of run {run_name} with a {spec.junction_channels}-channel junction "
                    f"projection; its task head is the shared head {shared.ref}"
                ),
                **common,
            ),
        )
        refs.append(ext.ref)
    return refs
