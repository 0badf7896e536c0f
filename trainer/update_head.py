"""Updating one head for every extractor of its group (paper §5.2): the ``update-head`` job.

The head's classifier is extended to the new classes: the rows of the old classes are
kept, the new rows start from the layer's own (seeded) initialisation. Only the head is
fine-tuned, on the features of one **frozen reference extractor**: no gradient, no
optimiser state, never written. Its BatchNorm normalises with each batch's statistics
(``reference_bn="batch"``, the default) without reading or writing its running buffers:
that is the regime the head was trained in (the extractors were in training mode during
joint training) and the one the benchmark evaluates recombined parts in, and it keeps the
extractor bit-identical, buffers included. ``"running"`` uses its stored statistics.

The result is published as the next version of the head's own name. Its card records
``provenance.updated_from`` (the old version's digest), the reference extractor, the
classes before and after, and carries the old head's groups: ``compat.anchors`` keeps the
old anchors and, when the old head is itself an aux head (a shared DCC head, the group's
anchor), adds its digest, so ``/compatible?head=<new version>`` lists every extractor
trained against the old one. No extractor is retrained.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from partsbin.client.assemble import check_junctions
from partsbin.parts.archs import build_part
from partsbin.parts.batchnorm import use_batch_statistics
from partsbin.parts.card import AUX_ROLES, Card
from partsbin.parts.data import Images, in_memory, load_task
from partsbin.parts.evaluation import EvalSettings, evaluate_pair
from partsbin.parts.jobs.shared_head import UpdateHeadResult, UpdateHeadSpec
from partsbin.parts.jobs.spec import TrainStats
from partsbin.parts.jobs.train import TaskSpec
from partsbin.parts.safetensors_format import load_state_dict
from partsbin.trainer.loop import EpochBatches, Progress, Track, fit, lr_schedule, make_optimizer, resolve_device
from partsbin.trainer.publish import data_provenance, provenance, push

__all__ = ["extend_classifier", "updated_labels", "frozen_reference", "fine_tune_head", "run_update_head"]


def updated_labels(old: list[str], classes: list[str]) -> list[str]:
    """The old labels in their order, then the new ones in the order given."""
    missing = [c for c in old if c not in classes]
    if missing:
        raise ValueError(
            f"an update keeps the head's classes; 'classes' leaves out {missing}: list every class of the "
            f"updated head, old ones included ({old})"
        )
    return old + [c for c in classes if c not in old]


def extend_classifier(old_state: dict[str, torch.Tensor], new: nn.Module, n_old: int) -> list[str]:
    """Load ``old_state`` into ``new`` (built for more classes): equal tensors are copied,
    the classifier's first ``n_old`` rows come from the old one, its new rows keep ``new``'s init.
    Returns the names of the extended tensors (the classifier's)."""
    state = new.state_dict()
    merged, extended = {}, []
    for k, v in state.items():
        if k not in old_state:
            raise ValueError(f"the updated head has a tensor {k!r} the old head lacks: not the same architecture")
        o = old_state[k]
        if o.shape == v.shape:
            merged[k] = o
        elif o.dim() == v.dim() and o.shape[0] == n_old and o.shape[1:] == v.shape[1:]:
            row = v.clone()
            row[:n_old] = o
            merged[k] = row
            extended.append(k)
        else:
            raise ValueError(f"tensor {k!r} changes shape {tuple(o.shape)} -> {tuple(v.shape)}: not a classifier row")
    if not extended:
        raise ValueError("no classifier rows to extend: the head gained no output")
    new.load_state_dict(merged, strict=True)
    return extended


def frozen_reference(module: nn.Module, bn: str) -> nn.Module:
    """The reference extractor as the update uses it (see the module's docstring)."""
    module.requires_grad_(False)
    module.eval()  # dropout off; BatchNorm as chosen below
    if bn == "batch":
        use_batch_statistics(module)
    return module


class _HeadLoss(nn.Module):
    """The head's task loss on the frozen reference extractor's features (labels mapped
    to the head's outputs by ``to_head``)."""

    to_head: torch.Tensor

    def __init__(self, extractor: nn.Module, head: nn.Module, to_head: torch.Tensor) -> None:
        super().__init__()
        self.extractor = extractor
        self.head = head
        self.register_buffer("to_head", to_head, persistent=False)

    def forward(self, i: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = self.extractor(x)
        return F.cross_entropy(self.head(feats), self.to_head[y])


def fine_tune_head(
    extractor: nn.Module,
    head: nn.Module,
    train: Images,
    to_head: torch.Tensor,
    settings: Any,
    *,
    device: torch.device,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train ``head`` alone on ``extractor``'s features of ``train`` (labels mapped to the
    head's outputs by ``to_head``). The extractor runs under ``no_grad`` and is never
    stepped: prepare it with :func:`frozen_reference` so that its buffers stay as they are."""
    s = settings
    head.train()
    track = Track(
        name="head",
        batches=EpochBatches(train.x, train.y, batch_size=s.batch_size, seed=s.seed + 1),
        optimizers=[(make_optimizer([p for p in head.parameters() if p.requires_grad], s), 1.0)],
        steps=s.steps,
        lr=lr_schedule(s),
        images_per_step=min(s.batch_size, len(train)),
    )
    stats = fit(_HeadLoss(extractor, head, to_head.cpu()), [track], device=device, progress=progress)
    return stats.as_dict()


def run_update_head(
    spec: UpdateHeadSpec, registry: Any, *, progress: Progress | None = None, job_id: str | None = None
) -> UpdateHeadResult:
    if registry is None:
        raise ValueError("an update-head job needs a registry to pull the head and the reference extractor from")
    progress = progress or Progress()
    s = spec.settings
    device = resolve_device(s)
    old = registry.pull(spec.head)
    ref_ext = registry.pull(spec.reference_extractor)
    if old.card.arch.part != "head":
        raise ValueError(f"{old.ref} is a {old.role}, not a head: update-head extends a head's classes")
    check_junctions(ref_ext.ref, ref_ext.card, old.ref, old.card)
    if old.card.namespace != spec.namespace:
        raise ValueError(
            f"{old.ref} lives in namespace {old.card.namespace!r}, the job publishes into {spec.namespace!r}"
        )
    old_labels = list(old.card.labels)
    labels = updated_labels(old_labels, spec.classes)
    data = spec.data if spec.data.classes is not None else spec.data.model_copy(update={"classes": spec.classes})
    progress.phase("loading data")
    task = load_task(TaskSpec(name="update", data=data, test=spec.test), s.test_limit)
    train_images, test_images = in_memory(task.train), in_memory(task.test)
    unknown = [c for c in task.classes if c not in labels]
    if unknown:
        raise ValueError(f"the data has classes {unknown} that 'classes' does not list")
    to_head = torch.tensor([labels.index(c) for c in task.classes])

    a = old.card.arch
    torch.manual_seed(s.seed)
    head = build_part(a.name, {**a.config, "num_classes": len(labels)}, "head", a.split)
    extended = extend_classifier(load_state_dict(old.path), head, len(old_labels))
    if spec.train_layers == "classifier":
        # Only the classifier learns; the rest of the head stays bit-identical, buffers
        # included (batch statistics, the regime it was trained in, without updating them).
        for name, p in head.named_parameters():
            p.requires_grad_(name in extended)
        use_batch_statistics(head)
    extractor = frozen_reference(ref_ext.build(), spec.reference_bn).to(device)
    old_head = old.build()

    evaluation = EvalSettings(bn_mode=s.bn_eval, batch_size=s.eval_batch_size)
    progress.phase("evaluating the old head")
    before_old = evaluate_pair(
        extractor, old_head, _only(test_images, old_labels), old_labels, evaluation, device=device
    )

    stats = fine_tune_head(extractor, head, train_images, to_head, s, device=device, progress=progress)

    progress.phase("evaluating")
    after_all = evaluate_pair(extractor, head, test_images, labels, evaluation, device=device)
    after_old = evaluate_pair(extractor, head, _only(test_images, old_labels), labels, evaluation, device=device)
    result = UpdateHeadResult(
        head=old.ref,
        reference_extractor=ref_ext.ref,
        classes_before=len(old_labels),
        classes_after=len(labels),
        accuracy=after_all.restricted,
        test_images=after_all.n,
        old_classes_accuracy_before=before_old.restricted,
        old_classes_accuracy_after=after_old.restricted,
        old_classes_test_images=after_old.n,
        train=TrainStats(**stats, threads=torch.get_num_threads(), device=device.type),
    )
    if spec.publish:
        progress.phase("publishing")
        card = _updated_card(spec, old, ref_ext, labels, old_labels, task, result, evaluation.as_dict(), job_id)
        result.refs = [push(registry, head, card).ref]
    return result


def _only(images: Images, classes: list[str]) -> Images:
    """The images of ``classes``, with the class list untouched (so a head is judged over all its logits)."""
    keep = torch.tensor([c in classes for c in images.classes], dtype=torch.bool)
    return images.subset(torch.nonzero(keep[images.y]).flatten())


def _updated_card(
    spec: UpdateHeadSpec,
    old: Any,
    ref_ext: Any,
    labels: list[str],
    old_labels: list[str],
    task: Any,
    result: UpdateHeadResult,
    evaluation: dict[str, Any],
    job_id: str | None,
) -> Card:
    card = old.card.model_dump(mode="json", exclude={"version", "digest", "size"})
    card["arch"]["config"] = {**card["arch"]["config"], "num_classes": len(labels)}
    card["interface"]["output"] = {"labels": labels}
    anchors = set(card["compat"].get("anchors") or [])
    if old.role in AUX_ROLES:
        # The old head anchors a group: the new version stays in it.
        anchors.add(old.digest)
    card["compat"]["anchors"] = sorted(anchors)
    card["provenance"] = provenance(
        job=job_id,
        seed=spec.settings.seed,
        settings=spec.settings.model_dump(mode="json"),
        dataset=data_provenance(
            task.train_spec,
            task.train,
            task="update",
            test=task.test_spec,
            test_images=task.test,
            test_limit=spec.settings.test_limit,
            classes=task.classes,
        ),
        updated_from=old.digest,
        updated_from_ref=old.ref,
        reference_extractor={"ref": ref_ext.ref, "digest": ref_ext.digest, "bn": spec.reference_bn},
        train_layers=spec.train_layers,
        labels_before=old_labels,
        labels_added=labels[len(old_labels) :],
    )
    card["metrics"] = {
        **result.model_dump(mode="json", exclude={"kind", "refs", "seconds", "train", "head"}),
        "bn": spec.settings.bn_eval,
        "evaluation": evaluation,
    }
    card["description"] = (
        f"{old.card.name} updated from version {old.version} to the classes {', '.join(labels)}: classifier extended, "
        f"head fine-tuned on the frozen features of {ref_ext.ref}"
    )
    card["tags"] = sorted(set(card.get("tags") or []) | {"updated-head"})
    return Card.model_validate(card)
