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

from typing import Any

import torch
from torch import nn

from partsbin.client.assemble import check_junctions
from partsbin.client.bench import measure_row, post_cells
from partsbin.client.bench_result import Cell
from partsbin.parts.card import REGISTRY_FIELDS
from partsbin.parts.data import Images, default_test, load_split
from partsbin.parts.data.spec import DataSpec
from partsbin.parts.evaluation import EvalSettings, evaluate_pair
from partsbin.parts.jobs.applications import AdaptResult, AdaptSpec
from partsbin.parts.jobs.settings import Settings
from partsbin.parts.jobs.spec import TrainStats
from partsbin.trainer.engine import AuxHeads, freeze, rp_loss
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

__all__ = ["adapt_extractor", "run_adapt", "target_test_spec"]


class _RotationLoss(nn.Module):
    """Eq. 1's RP term alone, through the frozen RP head: adaptation's only loss."""

    def __init__(self, extractor: nn.Module, rp_head: nn.Module, rp_n: int) -> None:
        super().__init__()
        self.extractor = extractor
        self.rp_head = rp_head
        self.rp_n = rp_n

    def forward(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return rp_loss(self.extractor, self.rp_head, x[: self.rp_n])


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
    freeze(AuxHeads(rp=rp_head))
    extractor.train()
    rp_head.train()  # frozen: its BatchNorm uses batch statistics either way
    n = int(images.shape[0])
    if n == 0:
        raise ValueError("the target data has no images")
    batch_size = min(settings.batch_size, n)
    rp_n = max(1, round(batch_size * settings.rp_fraction))
    gen = torch.Generator().manual_seed(settings.seed + 2)
    track = Track(
        name="extractor",
        batches=EpochBatches(images, batch_size=batch_size, seed=settings.seed + 1),
        optimizers=[(make_optimizer(list(extractor.parameters()), settings), 1.0)],
        steps=settings.steps,
        lr=lr_schedule(settings),
        images_per_step=4 * rp_n,
        before=augmenting(gen) if settings.augment else None,
    )
    stats = fit(_RotationLoss(extractor, rp_head, rp_n), [track], device=device, progress=progress, phase="adapting")
    return {**stats.as_dict(), "history": stats.history}


def target_test_spec(data: DataSpec, test: DataSpec | None) -> DataSpec:
    """The target's test data: ``test``, or ``data`` without its index and size selections
    (how a task's test set is derived from its training spec)."""
    return test if test is not None else default_test(data)


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
) -> AdaptResult:
    if registry is None:
        raise ValueError("an adapt job needs a registry to pull the extractor and its RP head from")
    progress = progress or Progress()
    s = spec.settings
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
    progress.phase("loading data")
    target = load_split(spec.data, "train")
    _check_input(ext.ref, ext.card, target)

    extractor, rp_head = ext.build(), rp.build()
    stats = adapt_extractor(extractor, rp_head, target.x, s, device=device, progress=progress)
    extractor.cpu()
    result = AdaptResult(
        source=ext.ref,
        target_images=len(target),
        train=TrainStats(
            **{k: stats[k] for k in ("steps", "seconds", "images_per_s", "final_loss")},
            threads=torch.get_num_threads(),
            device=device.type,
        ),
    )
    test_spec = target_test_spec(spec.data, spec.test)
    test = _labelled_test(test_spec, s.test_limit) if spec.evaluate else None
    adapted = None
    if spec.publish:
        progress.phase("publishing")
        adapted = _publish(spec, registry, ext, rp, extractor, target, test_spec, test, stats, job_id)
        result.refs = [adapted.ref]
        result.adapted = adapted.ref
    if test is None:
        if spec.evaluate:
            result.note = "not evaluated: the target test data has no labels"
        return result
    head_ref = spec.head or _sibling_head(registry, ext)
    if head_ref is None:
        result.note = f"not evaluated: give the source task head (no stored head names {ext.ref} as sibling)"
        return result
    head = registry.pull(head_ref)
    check_junctions(ext.ref, ext.card, head.ref, head.card)
    progress.phase("evaluating")
    result.rows = _measure(spec, registry, ext, head, adapted, extractor, test_spec, test, job_id)
    result.head, result.test_images = head.ref, len(test)
    return result


def _labelled_test(spec: DataSpec, limit: int | None) -> Images | None:
    test = load_split(spec, "test")
    if limit is not None:
        test = test.subset(range(min(limit, len(test))))
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
    dataset = f"{test_spec.label}:{spec.name}:test"
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
    card["provenance"] = provenance(
        job=job_id,
        seed=spec.settings.seed,
        settings=spec.settings.model_dump(mode="json"),
        dataset=data_provenance(
            spec.data, target, task=spec.name, test=test_spec, test_images=test, test_limit=spec.settings.test_limit
        ),
        adapted_from=ext.digest,
        adaptation={
            "method": "RP",
            "source": ext.ref,
            "rp_head": rp.digest,
            "rp_head_ref": rp.ref,
            "steps": stats["steps"],
            "target_images": len(target),
            "labels_read": False,
        },
    )
    card["metrics"] = {"adaptation_final_rp_loss": stats["final_loss"]}
    card["description"] = (
        f"{ext.ref} adapted without labels to {spec.data.label} "
        f"({', '.join(t.op for t in spec.data.transforms) or 'no shift'}) through its frozen RP head"
    )
    card["tags"] = sorted({*card.get("tags", []), "adapted"})
    return registry.pull(push(registry, extractor, card).ref)
