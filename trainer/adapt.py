"""The ``adapt`` job: unsupervised domain adaptation through the frozen RP head (paper §5.1).

The source extractor was trained against a frozen RP aux head (its compatibility anchor).
Minimising the RP loss alone on unlabelled target-domain images, through that same head
frozen exactly as in incremental training (:func:`partsbin.trainer.engine.freeze`: no
gradient, no optimiser state, the batch's BatchNorm statistics, running buffers never
written), moves the extractor's features toward the target domain while they stay in the
space the head — and hence the source task head — reads. The result is published as a
new extractor of the same group, with ``provenance.adapted_from``.

Labels never reach the loop: :func:`adapt_extractor` takes the images' tensor alone.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from partsbin.client.assemble import check_junctions
from partsbin.client.bench import Cell, measure_row, post_cells
from partsbin.parts.application_specs import AdaptSpec
from partsbin.parts.card import REGISTRY_FIELDS
from partsbin.parts.cpus import use_threads
from partsbin.parts.data import Images, augment_batch, load_split
from partsbin.parts.evaluation import EvalSettings, evaluate_pair
from partsbin.parts.training_spec import DataSpec, Settings
from partsbin.trainer.engine import (
    AuxHeads,
    Progress,
    StopRequested,
    _optimizer,
    freeze,
    get_lr,
    resolve_device,
    rp_loss,
)
from partsbin.trainer.lease import current_lease
from partsbin.trainer.run import RunResult, _library_versions

__all__ = ["adapt_extractor", "run_adapt", "target_test_spec", "data_provenance"]


def adapt_extractor(
    extractor: nn.Module,
    rp_head: nn.Module,
    images: torch.Tensor,
    settings: Settings,
    *,
    device: torch.device,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fine-tune ``extractor`` in place to minimise the RP loss of ``images`` (N×C×H×W,
    no labels) through ``rp_head``, which is frozen here and never changes."""
    progress = progress or Progress()
    freeze(AuxHeads(rp=rp_head))
    extractor.to(device).train()
    rp_head.to(device).train()  # frozen: its BatchNorm uses batch statistics either way
    opt = _optimizer(list(extractor.parameters()), settings)
    n = int(images.shape[0])
    if n == 0:
        raise ValueError("the target data has no images")
    batch_size = min(settings.batch_size, n)
    rp_n = max(1, round(batch_size * settings.rp_fraction))
    gen = torch.Generator().manual_seed(settings.seed + 1)
    aug_gen = torch.Generator().manual_seed(settings.seed + 2)
    order, pos = torch.randperm(n, generator=gen), 0
    x_all = images.to(device)
    started, seen, last_loss = time.perf_counter(), 0, float("nan")
    history: list[dict[str, Any]] = []
    for step in range(settings.steps):
        if progress.should_stop():
            raise StopRequested()
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        x = x_all[order[pos : pos + batch_size].to(device)]
        pos += batch_size
        if settings.augment:
            x = augment_batch(x.cpu(), aug_gen).to(device)
        lr = get_lr(settings, step)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = rp_loss(extractor, rp_head, x[:rp_n])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += 4 * rp_n
        last_loss = float(loss.detach())
        if (step + 1) % progress.every == 0 or step + 1 == settings.steps:
            info = {
                "step": step + 1,
                "total": settings.steps,
                "loss": last_loss,
                "lr": lr,
                "images_per_s": seen / max(time.perf_counter() - started, 1e-9),
            }
            history.append(info)
            progress.on_step(info)
    seconds = time.perf_counter() - started
    return {
        "steps": settings.steps,
        "seconds": seconds,
        "images_per_s": seen / max(seconds, 1e-9),
        "final_loss": last_loss,
        "history": history,
    }


def target_test_spec(data: DataSpec, test: DataSpec | None) -> DataSpec:
    """The target's test data: ``test``, or ``data`` without its index and size selections
    (how a task's test set is derived from its training spec)."""
    return test if test is not None else data.model_copy(update={"indices": None, "limit": None})


def data_provenance(task: str, data: DataSpec, images: Images, test: DataSpec, test_images: Images | None) -> dict:
    """A card's ``provenance.dataset`` for target data: what it was, and how the benchmark
    rebuilds its test set (``test``, as trainer-published cards record it)."""
    return {
        "name": data.source,
        "split": "train",
        "classes": images.classes or None,
        "transform": [t.model_dump(mode="json") for t in data.transforms],
        "indices": data.indices,
        "task": task,
        "source_digest": images.source_digest,
        "test": {
            **test.model_dump(mode="json"),
            "source_digest": test_images.source_digest if test_images is not None else None,
        },
    }


def _check_input(ref: str, card: Any, images: Images) -> None:
    want = card.interface.input
    got = tuple(images.x.shape[1:])
    if want is not None and got != (want.channels, want.size, want.size):
        raise ValueError(
            f"the target images are {got[0]}×{got[1]}×{got[2]} (channels × height × width), but {ref} takes "
            f"{want.channels}×{want.size}×{want.size}: add resize or grey_to_rgb transforms to the data spec"
        )


def _sibling_head(registry: Any, ext: Any) -> str | None:
    """The task head trained with ``ext`` (its card names it as sibling), if stored."""
    for item in registry.compatible(extractor=ext.ref):
        comp = item["component"]
        if comp.role == "head" and comp.card.compat.sibling == ext.ref:
            return str(comp.ref)
    return None


def run_adapt(
    spec: AdaptSpec, registry: Any, *, progress: Progress | None = None, job_id: str | None = None
) -> RunResult:
    if registry is None:
        raise ValueError("an adapt job needs a registry to pull the extractor and its RP head from")
    s = spec.settings
    use_threads(s.threads)
    device = resolve_device(s)
    ext = registry.pull(spec.extractor)
    rp = registry.pull(spec.rp_head)
    if ext.role != "extractor":
        raise ValueError(f"{ext.ref} is a {ext.role}, not an extractor")
    if rp.role != "aux-rp":
        raise ValueError(f"{rp.ref} is a {rp.role}; adaptation goes through an RP aux head (role aux-rp)")
    if rp.digest not in ext.card.compat.anchors:
        anchors = ", ".join(ext.card.compat.anchors) or "none"
        raise ValueError(
            f"{ext.ref} was not trained against {rp.ref} ({rp.digest}); adapting through a head it does not share "
            f"would break compatibility. Its anchors: {anchors}"
        )
    check_junctions(ext.ref, ext.card, rp.ref, rp.card)
    target = load_split(spec.data, "train")
    _check_input(ext.ref, ext.card, target)

    extractor, rp_head = ext.build(), rp.build()
    stats = adapt_extractor(extractor, rp_head, target.x, s, device=device, progress=progress)
    extractor.cpu()

    result = RunResult(
        metrics={
            "train": {**{k: v for k, v in stats.items() if k != "history"}, "threads": torch.get_num_threads()},
            "target_images": len(target),
        }
    )
    result.lines = [
        f"adapted {ext.ref} on {len(target)} target images through {rp.ref}: {stats['steps']} steps, "
        f"final RP loss {stats['final_loss']:.3f}, {stats['images_per_s']:.0f} images/s"
    ]
    test_spec = target_test_spec(spec.data, spec.test)
    test = _labelled_test(test_spec) if spec.evaluate else None
    adapted = None
    if spec.publish:
        adapted = _publish(spec, registry, ext, rp, extractor, target, test_spec, test, stats, job_id)
        result.refs = [adapted.ref]
        result.lines.append(f"published {adapted.ref} (adapted from {ext.ref})")
    if test is None:
        if spec.evaluate:
            result.lines.append("not evaluated: the target test data has no labels")
        return result
    head_ref = spec.head or _sibling_head(registry, ext)
    if head_ref is None:
        result.lines.append(f"not evaluated: give the source task head (no stored head names {ext.ref} as sibling)")
        return result
    head = registry.pull(head_ref)
    check_junctions(ext.ref, ext.card, head.ref, head.card)
    rows = _measure(spec, registry, ext, head, adapted, extractor, test_spec, test, job_id)
    result.metrics["evaluation"] = {"head": head.ref, "rows": rows, "samples": len(test)}
    result.lines += [f"{row}: {acc:.1%} on the target test set" for row, acc in rows.items()]
    return result


def _labelled_test(spec: DataSpec) -> Images | None:
    test = load_split(spec, "test")
    return test if test.classes else None


def _measure(
    spec: AdaptSpec,
    registry: Any,
    ext: Any,
    head: Any,
    adapted: Any,
    adapted_module: nn.Module,
    test_spec: DataSpec,
    test: Images,
    job_id: str | None,
) -> dict[str, float]:
    """The rows of Table 2 through the benchmark's routines, posted as evaluations that
    say which row they are (``details.uda``) when the adapted extractor was published."""
    s = spec.settings
    dataset = f"{test_spec.source}:{spec.name}:test"
    batch = EvalSettings(bn_mode="batch", batch_size=s.eval_batch_size)
    running = EvalSettings(bn_mode="running", batch_size=s.eval_batch_size)
    rows: dict[str, float] = {}
    for row in spec.bn_modes:
        settings = running if row in ("as-is", "recalibrated") else batch
        cells: list[Cell]
        if row == "adapted":
            if adapted is None:
                acc = evaluate_pair(adapted_module, head.build(), test, head.card.labels, batch)
                rows[row] = acc.restricted
                continue
            cells = measure_row(adapted, [head], (dataset, test), batch)
        else:
            cells = measure_row(ext, [head], (dataset, test), settings, recalibrate=row == "recalibrated")
        rows[row] = cells[0].accuracy
        if spec.publish:
            error = post_cells(
                registry,
                cells,
                settings,
                recalibrated=row == "recalibrated",
                details={"job": job_id, "uda": row, "adapted_from": ext.ref if row == "adapted" else None},
                job=current_lease.get(),
            )
            if error:
                raise RuntimeError(error)
    return rows


def _publish(
    spec: AdaptSpec,
    registry: Any,
    ext: Any,
    rp: Any,
    extractor: nn.Module,
    target: Images,
    test_spec: DataSpec,
    test: Images | None,
    stats: dict[str, Any],
    job_id: str | None,
) -> Any:
    card = ext.card.model_dump(mode="json", exclude=set(REGISTRY_FIELDS))
    card["name"] = f"{spec.namespace}/{spec.name}-extractor"
    # Same arch, interface and compat (anchors included): the adapted extractor is in the
    # source's groups, so /compatible lists it for the source head.
    card["provenance"] = {
        "dataset": data_provenance(spec.name, spec.data, target, test_spec, test),
        "settings": spec.settings.model_dump(mode="json"),
        "seed": spec.settings.seed,
        "job": job_id,
        "libraries": _library_versions(),
        "adapted_from": ext.digest,
        "adaptation": {
            "method": "RP",
            "source": ext.ref,
            "rp_head": rp.digest,
            "rp_head_ref": rp.ref,
            "steps": stats["steps"],
            "target_images": len(target),
            "labels_read": False,
        },
    }
    card["metrics"] = {"adaptation_final_rp_loss": stats["final_loss"]}
    card["description"] = (
        f"{ext.ref} adapted without labels to {spec.data.source} "
        f"({', '.join(t.op for t in spec.data.transforms) or 'no shift'}) through its frozen RP head"
    )
    card["tags"] = sorted({*card.get("tags", []), "adapted"})
    return registry.pull(registry.push(extractor, card).ref)
