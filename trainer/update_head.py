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

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from partsbin.client.assemble import check_junctions
from partsbin.parts.archs import build_part
from partsbin.parts.batchnorm import use_batch_statistics
from partsbin.parts.card import AUX_ROLES, Card
from partsbin.parts.cpus import use_threads
from partsbin.parts.data import Images, load_task
from partsbin.parts.evaluation import EvalSettings, evaluate_pair
from partsbin.parts.safetensors_format import load_state_dict
from partsbin.parts.shared_head_spec import UpdateHeadSpec
from partsbin.parts.training_spec import TaskSpec
from partsbin.trainer.engine import Progress, StopRequested, _Batches, _optimizer, get_lr, resolve_device
from partsbin.trainer.run import RunResult, _library_versions

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
    progress = progress or Progress()
    s = settings
    head.to(device).train()
    opt = _optimizer([p for p in head.parameters() if p.requires_grad], s)
    batches = _Batches(train, s.batch_size, s.seed + 1, device)
    started, last_loss = time.perf_counter(), float("nan")
    for step in range(s.steps):
        if progress.should_stop():
            raise StopRequested()
        for group in opt.param_groups:
            group["lr"] = get_lr(s, step)
        x, y = batches.next()
        with torch.no_grad():
            feats = extractor(x)
        loss = F.cross_entropy(head(feats), to_head[y])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last_loss = float(loss.detach())
        if (step + 1) % progress.every == 0 or step + 1 == s.steps:
            elapsed = time.perf_counter() - started
            progress.on_step(
                {"step": step + 1, "total": s.steps, "loss": last_loss, "images_per_s": (step + 1) * len(x) / elapsed}
            )
    return {"seconds": time.perf_counter() - started, "final_loss": last_loss}


def run_update_head(
    spec: UpdateHeadSpec, registry: Any, *, progress: Progress | None = None, job_id: str | None = None
) -> RunResult:
    if registry is None:
        raise ValueError("an update-head job needs a registry to pull the head and the reference extractor from")
    progress = progress or Progress()
    s = spec.settings
    use_threads(s.threads)
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
    task = load_task(TaskSpec(name="update", train=data, test=spec.test, test_limit=spec.test_limit))
    unknown = [c for c in task.classes if c not in labels]
    if unknown:
        raise ValueError(f"the data has classes {unknown} that 'classes' does not list")
    to_head = torch.tensor([labels.index(c) for c in task.classes], device=device)

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
    before_old = evaluate_pair(extractor, old_head, _only(task.test, old_labels), old_labels, evaluation, device=device)

    stats = fine_tune_head(extractor, head, task.train, to_head, s, device=device, progress=progress)
    seconds, last_loss = stats["seconds"], stats["final_loss"]

    after_all = evaluate_pair(extractor, head, task.test, labels, evaluation, device=device)
    after_old = evaluate_pair(extractor, head, _only(task.test, old_labels), labels, evaluation, device=device)
    metrics = {
        "reference_extractor": ref_ext.ref,
        "accuracy": after_all.restricted,
        "test_examples": after_all.n,
        "old_classes_accuracy_before": before_old.restricted,
        "old_classes_accuracy_after": after_old.restricted,
        "old_classes_test_examples": after_old.n,
        "bn": s.bn_eval,
        "evaluation": evaluation.as_dict(),
        "train": {"steps": s.steps, "seconds": seconds, "final_loss": last_loss, "threads": torch.get_num_threads()},
    }
    result = RunResult(metrics=metrics)
    result.lines = [
        f"{old.ref} extended from {len(old_labels)} to {len(labels)} classes on {ref_ext.ref}'s features "
        f"({s.steps} steps, {seconds:.0f} s)",
        f"with {ref_ext.ref}: {after_all.restricted:.1%} on {after_all.n} test images of all classes; old classes "
        f"{before_old.restricted:.1%} before (over the old classes' logits) -> {after_old.restricted:.1%} after "
        "(over all classes' logits)",
    ]
    if spec.publish:
        card = _updated_card(spec, old, ref_ext, labels, old_labels, task, metrics, job_id)
        pushed = registry.push(head.cpu(), card)
        result.refs = [pushed.ref]
        result.lines.append(f"published {pushed.ref} (updated from {old.ref})")
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
    metrics: dict[str, Any],
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
    card["provenance"] = {
        "updated_from": old.digest,
        "updated_from_ref": old.ref,
        "reference_extractor": {"ref": ref_ext.ref, "digest": ref_ext.digest, "bn": spec.reference_bn},
        "train_layers": spec.train_layers,
        "labels_before": old_labels,
        "labels_added": labels[len(old_labels) :],
        "dataset": {
            "name": task.train_spec.source,
            "split": "train",
            "classes": task.classes,
            "transform": [t.model_dump(mode="json") for t in task.train_spec.transforms],
            "indices": task.train_spec.indices,
            "task": "update",
            "source_digest": task.train.source_digest,
            "test": {
                **task.test_spec.model_dump(mode="json"),
                "test_limit": spec.test_limit,
                "source_digest": task.test.source_digest,
            },
        },
        "settings": spec.settings.model_dump(mode="json"),
        "seed": spec.settings.seed,
        "job": job_id,
        "libraries": _library_versions(),
    }
    card["metrics"] = {k: v for k, v in metrics.items() if k != "train"}
    card["description"] = (
        f"{old.card.name} updated from version {old.version} to the classes {', '.join(labels)}: classifier extended, "
        f"head fine-tuned on the frozen features of {ref_ext.ref}"
    )
    card["tags"] = sorted(set(card.get("tags") or []) | {"updated-head"})
    return Card.model_validate(card)
