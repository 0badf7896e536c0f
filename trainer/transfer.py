"""The ``transfer`` job: recombine, then fine-tune (paper §5.3, faster transfer learning).

A source extractor and a target task head — compatible when both were trained against
the same frozen RP head — are recombined and fine-tuned together on the target task with
its task loss. Accuracy on the target test set is measured after each listed number of
steps (0 = directly after recombination) with the benchmark's routine, and each point is
posted as an evaluation carrying ``details.finetune_steps``. The point at 0 steps is the
pair's recombination accuracy (metric ``recombination_accuracy``, as ``partsbin bench``
posts it); later points measure fine-tuned weights that are not the stored parts, so they
are posted as ``finetuned_accuracy`` and never rank ``/compatible``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from partsbin.client.assemble import check_junctions
from partsbin.parts.card import REGISTRY_FIELDS
from partsbin.parts.data import Images, load_split
from partsbin.parts.evaluation import EvalSettings, evaluate_pair
from partsbin.parts.jobs.applications import CurvePoint, TransferResult, TransferSpec
from partsbin.parts.jobs.settings import Settings
from partsbin.parts.jobs.spec import TrainStats
from partsbin.parts.metrics import shared_classes
from partsbin.trainer.adapt import _check_input, target_test_spec
from partsbin.trainer.engine import task_loss
from partsbin.trainer.lease import current_lease
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

__all__ = ["finetune_curve", "run_transfer", "to_head_labels"]


def to_head_labels(images: Images, labels: list[str]) -> Images:
    """The images of classes ``labels`` knows, with their labels as indices into it
    (classes are matched by name, never by index)."""
    common = shared_classes(images.classes, labels)
    if not common:
        raise ValueError(
            f"the target data's classes ({', '.join(images.classes) or 'none: unlabelled'}) share none with the "
            f"head's ({', '.join(labels)})"
        )
    lookup = torch.tensor([labels.index(c) if c in labels else -1 for c in images.classes], dtype=torch.long)
    mapped = lookup[images.y]
    keep = mapped >= 0
    return Images(images.x[keep], mapped[keep], list(labels), images.source_digest, images.dataset_digest)


class _TaskLoss(nn.Module):
    def __init__(self, extractor: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        self.head = head

    def forward(self, i: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return task_loss(self.head, self.extractor(x), y)


def finetune_curve(
    extractor: nn.Module,
    head: nn.Module,
    train: Images,
    test: Images,
    head_labels: list[str],
    points: list[int],
    settings: Settings,
    evaluation: EvalSettings,
    *,
    device: torch.device,
    progress: Progress | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fine-tune ``head(extractor(x))`` on ``train`` (labels already indices into
    ``head_labels``) and measure it on ``test`` after each count of ``points``."""
    total = max(points)
    extractor.train()
    head.train()
    n = len(train)
    batch_size = min(settings.batch_size, n)
    gen = torch.Generator().manual_seed(settings.seed + 2)
    wanted = set(points)
    curve: list[dict[str, Any]] = []

    def measure(i: int, step: int) -> None:
        if step not in wanted or any(p["finetune_steps"] == step for p in curve):
            return
        acc = evaluate_pair(extractor, head, test, head_labels, evaluation, device=device)
        curve.append(
            {
                "finetune_steps": step,
                "accuracy": acc.restricted,
                "unrestricted": acc.unrestricted,
                "samples": acc.n,
                "ci95": list(acc.ci95),
                "epochs": step * batch_size / n,
            }
        )

    track = Track(
        name="extractor + head",
        batches=EpochBatches(train.x, train.y, batch_size=batch_size, seed=settings.seed + 1),
        optimizers=[(make_optimizer(list(extractor.parameters()) + list(head.parameters()), settings), 1.0)],
        steps=total,
        lr=lr_schedule(settings, horizon=max(1, total)),
        images_per_step=batch_size,
        before=augmenting(gen) if settings.augment else None,
    )
    stats = fit(
        _TaskLoss(extractor, head), [track], device=device, progress=progress, at_step=measure, phase="fine-tuning"
    )
    return curve, stats.as_dict()


def run_transfer(
    spec: TransferSpec, registry: Any, *, progress: Progress | None = None, job_id: str | None = None
) -> TransferResult:
    if registry is None:
        raise ValueError("a transfer job needs a registry to pull the extractor and the head from")
    progress = progress or Progress()
    s = spec.settings
    device = resolve_device(s)
    ext, hd = registry.pull(spec.extractor), registry.pull(spec.head)
    if ext.role != "extractor":
        raise ValueError(f"{ext.ref} is a {ext.role}, not an extractor")
    if hd.role != "head":
        raise ValueError(f"{hd.ref} is a {hd.role}; transfer recombines with a task head (role head)")
    check_junctions(ext.ref, ext.card, hd.ref, hd.card)
    labels = hd.card.labels
    progress.phase("loading data")
    train_raw = load_split(spec.data, "train")
    _check_input(ext.ref, ext.card, train_raw)
    train = to_head_labels(train_raw, labels)
    test_spec = target_test_spec(spec.data, spec.test)
    test = load_split(test_spec, "test")
    if s.test_limit is not None:
        test = test.subset(range(min(s.test_limit, len(test))))
    to_head_labels(test, labels)  # the same check, on the test data
    evaluation = EvalSettings(bn_mode=spec.bn_mode, batch_size=s.eval_batch_size)

    extractor, head = ext.build(), hd.build()
    curve, stats = finetune_curve(
        extractor, head, train, test, labels, spec.steps, s, evaluation, device=device, progress=progress
    )
    extractor.cpu()
    head.cpu()
    dataset = f"{test_spec.label}:{spec.name}:test"
    result = TransferResult(
        extractor=ext.ref,
        head=hd.ref,
        curve=[CurvePoint.model_validate(p) for p in curve],
        dataset=dataset,
        train=TrainStats(**stats, threads=torch.get_num_threads(), device=device.type),
    )
    if spec.post:
        common = len(shared_classes(test.classes, labels))
        digest = test.data_digest
        for p in curve:
            registry.post_evaluation(
                extractor=ext.ref,
                head=hd.ref,
                dataset=dataset,
                value=p["accuracy"],
                samples=p["samples"],
                bn_mode=spec.bn_mode,
                batch_size=evaluation.batch_size,
                metric="recombination_accuracy" if p["finetune_steps"] == 0 else "finetuned_accuracy",
                classes=common,
                finetune_steps=p["finetune_steps"],
                job=current_lease.get(),
                data_digest=digest,
                details={
                    "unrestricted": p["unrestricted"],
                    "ci95": p["ci95"],
                    "own_task": hd.card.compat.sibling == ext.ref,
                    "batch_composition": evaluation.batch_composition,
                    "shuffle_seed": evaluation.shuffle_seed,
                    "job": job_id,
                    "transfer": spec.name,
                    "lr": s.lr,
                    "batch": s.batch_size,
                    "source_digest": test.source_digest,
                    "dataset_digest": test.dataset_digest,
                },
            )
    if spec.publish:
        progress.phase("publishing")
        result.refs = _publish(spec, registry, ext, hd, extractor, head, train_raw, test_spec, test, stats, job_id)
    return result


def _publish(
    spec: TransferSpec,
    registry: Any,
    ext: Any,
    hd: Any,
    extractor: nn.Module,
    head: nn.Module,
    train: Images,
    test_spec: Any,
    test: Images,
    stats: dict[str, Any],
    job_id: str | None,
) -> list[str]:
    """The fine-tuned pair, as one new network: fine-tuned with the task loss alone, it no
    longer declares the source's anchors (nothing kept it in their groups)."""
    prov = provenance(
        job=job_id,
        seed=spec.settings.seed,
        settings=spec.settings.model_dump(mode="json"),
        dataset=data_provenance(
            spec.data, train, task=spec.name, test=test_spec, test_images=test, test_limit=spec.settings.test_limit
        ),
        transfer={"extractor": ext.ref, "head": hd.ref, "finetune_steps": stats["steps"]},
    )
    refs = []
    ext_card = ext.card.model_dump(mode="json", exclude=set(REGISTRY_FIELDS))
    ext_card.update(
        name=f"{spec.namespace}/{spec.name}-extractor",
        compat={"methods": [], "scheme": None, "init": None},
        provenance={**prov, "finetuned_from": ext.digest},
        metrics={},
        description=f"{ext.ref} recombined with {hd.ref} and fine-tuned for {stats['steps']} steps",
        tags=sorted({*ext_card.get("tags", []), "transfer"}),
    )
    new_ext = push(registry, extractor, ext_card)
    refs.append(new_ext.ref)
    head_card = hd.card.model_dump(mode="json", exclude=set(REGISTRY_FIELDS))
    head_card.update(
        name=f"{spec.namespace}/{spec.name}-head",
        compat={"methods": [], "scheme": None, "init": None, "sibling": new_ext.ref},
        provenance={**prov, "finetuned_from": hd.digest},
        metrics={},
        description=f"{hd.ref} fine-tuned on top of {ext.ref} for {stats['steps']} steps",
        tags=sorted({*head_card.get("tags", []), "transfer"}),
    )
    refs.append(push(registry, head, head_card).ref)
    return refs
