"""Several architectures, one shared head (paper §5.2): the ``train-multiarch`` job.

Each network's extractor ends in a 1×1 junction projection to ``junction_channels``
(declared in its arch config), so extractors of different widths and resolutions all
give that many channels; the shared head (by default MobileNetV2's, after inverted-residual
block 11) pools globally, which absorbs their different spatial sizes. The networks train
jointly: minibatches alternate between them, each step updates that network's extractor
and the shared head. The shared head is a DCC head over all of the task's classes, so it
is also the task head; it is published first, as the group's anchor, and every extractor
names it in ``compat.anchors``.

The networks train in :func:`partsbin.trainer.loop.fit`, alternating, each step updating
that network's extractor and the shared head.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from partsbin.parts.archs import build
from partsbin.parts.data import TaskData, load_task
from partsbin.parts.describe import card_for
from partsbin.parts.evaluation import EvalSettings, evaluate_pair
from partsbin.parts.jobs.shared_head import MultiArchResult, MultiArchSpec, NetworkScore
from partsbin.parts.jobs.spec import TrainStats
from partsbin.trainer.engine import Network
from partsbin.trainer.loop import (
    EpochBatches,
    Progress,
    Track,
    augmenting,
    fit,
    lr_schedule,
    make_optimizer,
    resolve_device,
)
from partsbin.trainer.publish import data_provenance, provenance, push

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


class _SharedHeadLoss(nn.Module):
    """Network ``i``'s step: its extractor's features through the shared head."""

    def __init__(self, extractors: Sequence[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.extractors = nn.ModuleList(extractors)
        self.head = head

    def forward(self, i: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.head(self.extractors[i](x)), y)


def train_shared_head(
    nets: list[Network],
    head: nn.Module,
    settings: Any,
    *,
    device: torch.device,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Joint training: one optimiser step per network in turn, each also stepping the shared head."""
    extractors = [n.extractor.train() for n in nets]
    head.train()
    # Only the extractor part of each network trains: its own head layers are never used.
    head_opt = make_optimizer(list(head.parameters()), settings)
    tracks = []
    for net, ext in zip(nets, extractors, strict=True):
        gen = torch.Generator().manual_seed(net.seed + 2)
        tracks.append(
            Track(
                name=net.task.name,
                batches=EpochBatches(
                    net.task.train.x, net.task.train.y, batch_size=settings.batch_size, seed=net.seed + 1
                ),
                optimizers=[(make_optimizer(list(ext.parameters()), settings), 1.0), (head_opt, 1.0)],
                steps=settings.steps,
                lr=lr_schedule(settings),
                images_per_step=settings.batch_size,
                before=augmenting(gen) if settings.augment else None,
            )
        )
    stats = fit(_SharedHeadLoss(extractors, head), tracks, device=device, progress=progress, alternate_every=1)
    return {**stats.as_dict(), "history": stats.history}


def run_multiarch(
    spec: MultiArchSpec, registry: Any = None, *, progress: Progress | None = None, job_id: str | None = None
) -> MultiArchResult:
    s = spec.settings
    progress = progress or Progress()
    device = resolve_device(s)
    if spec.publish and registry is None:
        raise ValueError("this spec publishes its components: it needs a registry")
    progress.phase("loading data")
    task = load_task(spec.task, s.test_limit)
    nets, head, head_arch = build_multiarch(spec, task)
    stats = train_shared_head(nets, head, s, device=device, progress=progress)

    result = MultiArchResult(
        train=TrainStats(
            **{k: stats[k] for k in ("steps", "seconds", "images_per_s", "final_loss")},
            threads=torch.get_num_threads(),
            device=device.type,
        )
    )
    evaluation = EvalSettings(bn_mode=s.bn_eval, batch_size=s.eval_batch_size)
    progress.phase("evaluating")
    for net in nets:
        acc = evaluate_pair(net.extractor, head, task.test, task.classes, evaluation, device=device)
        result.networks[net.task.name] = NetworkScore(
            arch=net.arch, own_task_accuracy=acc.restricted, test_images=acc.n
        )
    if spec.publish:
        progress.phase("publishing")
        result.refs = _publish(spec, registry, task, nets, head, head_arch, result, job_id)
    return result


def _publish(
    spec: MultiArchSpec,
    registry: Any,
    task: TaskData,
    nets: list[Network],
    head: nn.Module,
    head_arch: dict[str, Any],
    result: MultiArchResult,
    job_id: str | None,
) -> list[str]:
    ns, run_name = spec.namespace, spec.name
    settings = spec.settings.model_dump(mode="json")
    common: dict[str, Any] = {"license": None, "tags": ["partsbin-trainer", "shared-head", "joint"]}
    prov = provenance(
        job=job_id,
        seed=spec.settings.seed,
        settings=settings,
        dataset=data_provenance(
            task.train_spec,
            task.train,
            task=spec.task.name,
            test=task.test_spec,
            test_images=task.test,
            test_limit=spec.settings.test_limit,
            classes=task.classes,
        ),
        networks=[{"name": n.task.name, "arch": n.arch, "config": n.config, "split": n.split} for n in nets],
    )
    scores = result.networks
    head_card = card_for(
        name=f"{ns}/{run_name}-shared-head",
        role="aux-dcc",
        arch=head_arch["arch"],
        config=head_arch["config"],
        split=head_arch["split"],
        labels=task.classes,
        compat={"methods": ["DCC"], "scheme": "joint"},
        provenance=prov,
        metrics={
            "accuracy_by_extractor": {n.task.name: scores[n.task.name].own_task_accuracy for n in nets},
            "test_examples": scores[nets[0].task.name].test_images,
            "bn": spec.settings.bn_eval,
        },
        description=(
            f"shared DCC head of run {run_name} (also its task head): one head for "
            f"{', '.join(f'{n.task.name} ({n.arch})' for n in nets)}, meeting each through a "
            f"{spec.junction_channels}-channel 1x1 junction projection (paper §5.2)"
        ),
        **common,
    )
    shared = push(registry, head, head_card)
    refs = [shared.ref]
    size = int(task.train.x.shape[-1])
    for net in nets:
        m = scores[net.task.name]
        ext = push(
            registry,
            net.extractor,
            card_for(
                name=f"{ns}/{run_name}-{net.task.name}-extractor",
                role="extractor",
                arch=net.arch,
                config=net.config,
                split=net.model.split,
                input_size=size,
                compat={"anchors": [shared.digest], "methods": ["DCC"], "scheme": "joint"},
                provenance={**prov, "seed": net.seed},
                metrics={
                    "own_task_accuracy": m.own_task_accuracy,
                    "test_examples": m.test_images,
                    "bn": spec.settings.bn_eval,
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
