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

import time
from typing import Any

import torch
from torch import nn

from partsbin.client.assemble import check_junctions
from partsbin.parts.application_specs import TransferSpec
from partsbin.parts.card import REGISTRY_FIELDS
from partsbin.parts.cpus import use_threads
from partsbin.parts.data import Images, augment_batch, load_split
from partsbin.parts.evaluation import EvalSettings, evaluate_pair
from partsbin.parts.metrics import shared_classes
from partsbin.parts.training_spec import Settings
from partsbin.trainer.adapt import _check_input, data_provenance, target_test_spec
from partsbin.trainer.engine import Progress, StopRequested, _optimizer, get_lr, resolve_device, task_loss
from partsbin.trainer.lease import current_lease
from partsbin.trainer.run import RunResult, _library_versions

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
    return Images(images.x[keep], mapped[keep], list(labels), images.source_digest)


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
    progress = progress or Progress()
    total = max(points)
    run_settings = settings.model_copy(update={"steps": max(1, total)})
    extractor.to(device).train()
    head.to(device).train()
    opt = _optimizer(list(extractor.parameters()) + list(head.parameters()), run_settings)
    n = len(train)
    batch_size = min(settings.batch_size, n)
    gen = torch.Generator().manual_seed(settings.seed + 1)
    aug_gen = torch.Generator().manual_seed(settings.seed + 2)
    order, pos = torch.randperm(n, generator=gen), 0
    x_all, y_all = train.x.to(device), train.y.to(device)
    curve: list[dict[str, Any]] = []
    started, seen, last_loss = time.perf_counter(), 0, float("nan")
    wanted = set(points)
    for step in range(total + 1):
        if step in wanted:
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
        if step == total:
            break
        if progress.should_stop():
            raise StopRequested()
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + batch_size].to(device)
        pos += batch_size
        x, y = x_all[idx], y_all[idx]
        if settings.augment:
            x = augment_batch(x.cpu(), aug_gen).to(device)
        lr = get_lr(run_settings, step)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = task_loss(head, extractor(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += x.shape[0]
        last_loss = float(loss.detach())
        if (step + 1) % progress.every == 0 or step + 1 == total:
            progress.on_step(
                {
                    "step": step + 1,
                    "total": total,
                    "loss": last_loss,
                    "lr": lr,
                    "images_per_s": seen / max(time.perf_counter() - started, 1e-9),
                }
            )
    seconds = time.perf_counter() - started
    return curve, {
        "steps": total,
        "seconds": seconds,
        "images_per_s": seen / max(seconds, 1e-9),
        "final_loss": last_loss,
    }


def run_transfer(
    spec: TransferSpec, registry: Any, *, progress: Progress | None = None, job_id: str | None = None
) -> RunResult:
    if registry is None:
        raise ValueError("a transfer job needs a registry to pull the extractor and the head from")
    s = spec.settings
    use_threads(s.threads)
    device = resolve_device(s)
    ext, hd = registry.pull(spec.extractor), registry.pull(spec.head)
    if ext.role != "extractor":
        raise ValueError(f"{ext.ref} is a {ext.role}, not an extractor")
    if hd.role != "head":
        raise ValueError(f"{hd.ref} is a {hd.role}; transfer recombines with a task head (role head)")
    check_junctions(ext.ref, ext.card, hd.ref, hd.card)
    labels = hd.card.labels
    train_raw = load_split(spec.data, "train")
    _check_input(ext.ref, ext.card, train_raw)
    train = to_head_labels(train_raw, labels)
    test_spec = target_test_spec(spec.data, spec.test)
    test = load_split(test_spec, "test")
    to_head_labels(test, labels)  # the same check, on the test data
    evaluation = EvalSettings(bn_mode=spec.bn_mode, batch_size=s.eval_batch_size)

    extractor, head = ext.build(), hd.build()
    curve, stats = finetune_curve(
        extractor, head, train, test, labels, spec.steps, s, evaluation, device=device, progress=progress
    )
    extractor.cpu()
    head.cpu()
    dataset = f"{test_spec.source}:{spec.name}:test"
    result = RunResult(
        metrics={
            "train": {**stats, "threads": torch.get_num_threads()},
            "curve": curve,
            "evaluation": evaluation.as_dict(),
            "dataset": dataset,
        }
    )
    result.lines = [
        f"{ext.ref} + {hd.ref} after {p['finetune_steps']} steps ({p['epochs']:.2f} epochs): "
        f"{p['accuracy']:.1%} on {p['samples']} target test images"
        for p in curve
    ]
    if spec.post:
        common = len(shared_classes(test.classes, labels))
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
                },
            )
    if spec.publish:
        result.refs = _publish(spec, registry, ext, hd, extractor, head, train_raw, test_spec, test, stats, job_id)
        result.lines += [f"published {r}" for r in result.refs]
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
    provenance = {
        "dataset": data_provenance(spec.name, spec.data, train, test_spec, test),
        "settings": spec.settings.model_dump(mode="json"),
        "seed": spec.settings.seed,
        "job": job_id,
        "libraries": _library_versions(),
        "transfer": {"extractor": ext.ref, "head": hd.ref, "finetune_steps": stats["steps"]},
    }
    refs = []
    ext_card = ext.card.model_dump(mode="json", exclude=set(REGISTRY_FIELDS))
    ext_card.update(
        name=f"{spec.namespace}/{spec.name}-extractor",
        compat={"methods": [], "scheme": None, "init": None},
        provenance={**provenance, "finetuned_from": ext.digest},
        metrics={},
        description=f"{ext.ref} recombined with {hd.ref} and fine-tuned for {stats['steps']} steps",
        tags=sorted({*ext_card.get("tags", []), "transfer"}),
    )
    new_ext = registry.push(extractor, ext_card)
    refs.append(new_ext.ref)
    head_card = hd.card.model_dump(mode="json", exclude=set(REGISTRY_FIELDS))
    head_card.update(
        name=f"{spec.namespace}/{spec.name}-head",
        compat={"methods": [], "scheme": None, "init": None, "sibling": new_ext.ref},
        provenance={**provenance, "finetuned_from": hd.digest},
        metrics={},
        description=f"{hd.ref} fine-tuned on top of {ext.ref} for {stats['steps']} steps",
        tags=sorted({*head_card.get("tags", []), "transfer"}),
    )
    refs.append(registry.push(head, head_card).ref)
    return refs
