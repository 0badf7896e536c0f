"""The ``fct`` job: FCT's transformation from an old extractor to a new one, published as a
bridge (DESIGN.md, "Bridges"; :mod:`partsbin.parts.fct_spec` says what each field does).

What it measures on the test set, beside the transform it publishes:

- retrieval as FCT reports it (CMC top-1/top-5, mAP; leave-one-out, cosine on pooled
  features): old/old, new/new, and new queries against the transformed old gallery;
- for a transform of junction features, classification: the new model's head on the
  transformed old features, beside the new model itself and the old extractor fed to the
  new head directly (no bridge). That result is posted as the path's evaluation, so
  ``/paths`` ranks the way old extractor → transform → new head by it.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from partsbin.parts.archs.bridges import WithSideInfo
from partsbin.parts.card import junctions_compatible
from partsbin.parts.data import Images, load_split
from partsbin.parts.data.spec import DataSpec
from partsbin.parts.describe import card_for
from partsbin.parts.evaluation import EvalSettings, evaluate_pair
from partsbin.parts.jobs.bridges import FCTResult, FCTSpec
from partsbin.parts.retrieval import pooled, retrieval_metrics
from partsbin.trainer.fct import embeddings, side_vectors, train_side_info, train_transform
from partsbin.trainer.lease import current_lease
from partsbin.trainer.loop import Progress, resolve_device
from partsbin.trainer.publish import data_provenance, provenance, push
from partsbin.trainer.stitch import BRIDGED_METRIC, features, recorded_data

__all__ = ["run_fct"]


def _fit_images(spec: FCTSpec, data: DataSpec) -> Images:
    images = load_split(data, "train")
    if spec.fit_images < len(images):
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(spec.settings.seed))[
            : spec.fit_images
        ]
        images = images.subset(pick)
    return images


def _side_model(
    spec: FCTSpec, registry: Any, old: Any, progress: Progress, device: torch.device
) -> tuple[nn.Module | None, Any, Any]:
    """(model, stored component or None, how it was made) for ``spec.side_info``."""
    if spec.side_info is False:
        return None, None, None
    if isinstance(spec.side_info, str):
        comp = registry.pull(spec.side_info)
        if comp.card.role != "side-info":
            raise ValueError(f"side_info names {comp.ref}, which is a {comp.card.role}, not a side-info model")
        return comp.build().eval(), comp, None
    data = spec.side_data or recorded_data(old.card, "train", job="fct", field="side_data")
    x = load_split(data, "train").x
    net = train_side_info(
        x,
        width=spec.side_width,
        dim=spec.side_dim,
        steps=spec.side_steps,
        batch_size=64,
        seed=spec.settings.seed,
        device=device,
        progress=progress,
    )
    return net, None, (data, x)


def _space_features(net: nn.Module, x: torch.Tensor, space: str) -> torch.Tensor:
    return embeddings(net, x) if space == "embedding" else features(net, x)


def run_fct(spec: FCTSpec, registry: Any, *, progress: Progress | None = None, job_id: str | None = None) -> FCTResult:
    if registry is None:
        raise ValueError("an fct job needs a registry to pull the old and new extractors from")
    progress = progress or Progress()
    s = spec.settings
    device = resolve_device(s)
    old, new = registry.pull(spec.old_extractor), registry.pull(spec.new_extractor)
    for comp, which in ((old, "old_extractor"), (new, "new_extractor")):
        if comp.card.role != "extractor":
            raise ValueError(f"{which} names {comp.ref}, which is a {comp.card.role}, not an extractor")
    i_old, i_new = old.card.interface.input, new.card.interface.input
    if i_old is not None and i_new is not None and (i_old.channels, i_old.size) != (i_new.channels, i_new.size):
        raise ValueError(
            f"the old extractor {old.ref} takes {i_old.channels}-channel {i_old.size}x{i_old.size} images and the new "
            f"one {new.ref} {i_new.channels}-channel {i_new.size}x{i_new.size}: FCT maps features of the same images"
        )
    src_j, dst_j = old.card.interface.junction, new.card.interface.junction
    if spec.space == "junction" and src_j.spatial != dst_j.spatial:
        raise ValueError(
            f"a transform of junction features maps each position: {old.ref} gives them at "
            f"{src_j.spatial}x{src_j.spatial} and {new.ref} at {dst_j.spatial}x{dst_j.spatial}; use space 'embedding'"
        )
    head = None
    if spec.new_head is not None:
        head = registry.pull(spec.new_head)
        if head.card.arch.part != "head":
            raise ValueError(f"new_head names {head.ref}, which is a {head.card.role}, not a head")
        if not junctions_compatible(dst_j, head.card.interface.junction):
            hj = head.card.interface.junction
            raise ValueError(
                f"new_head {head.ref} takes {hj.channels} channels at {hj.spatial}; the new extractor {new.ref} "
                f"gives {dst_j.channels} at {dst_j.spatial}x{dst_j.spatial}: name the head trained with it"
            )
    old_net, new_net = old.build().eval(), new.build().eval()
    progress.phase("side-information")
    side_net, side_comp, side_made = _side_model(spec, registry, old, progress, device)
    if side_net is not None and i_old is not None:
        side_in = side_comp.card.interface.input if side_comp is not None else None
        if side_in is not None and (side_in.channels, side_in.size) != (i_old.channels, i_old.size):
            raise ValueError(f"the side-info model {side_comp.ref} takes other images than {old.ref}")

    started = time.perf_counter()
    data = spec.data or recorded_data(new.card, "train", job="fct", field="data")
    progress.phase("loading data")
    fit_images = _fit_images(spec, data)
    progress.phase("computing features")
    old_tr = _space_features(old_net, fit_images.x, spec.space)
    new_tr = _space_features(new_net, fit_images.x, spec.space)
    side_tr = side_vectors(side_net, fit_images.x) if side_net is not None else None
    transform = train_transform(
        old_tr, new_tr, side_tr, hidden=spec.hidden, settings=s, device=device, progress=progress
    )
    seconds = time.perf_counter() - started
    del old_tr, new_tr, side_tr

    test_spec = spec.test or recorded_data(new.card, "test", job="fct", field="test")
    progress.phase("evaluating")
    test = load_split(test_spec, "test")
    if s.test_limit:
        test = test.subset(range(min(s.test_limit, len(test))))
    retrieval = _retrieval(old_net, new_net, side_net, transform, test, spec.space)
    result = FCTResult(
        old_extractor=old.ref,
        new_extractor=new.ref,
        space=spec.space,
        side_info=side_net is not None,
        fit_images=len(fit_images),
        test_images=len(test),
        retrieval=retrieval["retrieval"],
        top1_gap_closed=retrieval["top1_gap_closed"],
        classification=(
            _classification(old_net, new_net, side_net, transform, head, old, test) if head is not None else None
        ),
        seconds=seconds,
    )
    if not spec.publish:
        return result
    progress.phase("publishing")
    metrics = {**result.model_dump(mode="json", exclude={"kind", "refs", "train"}), "seconds": seconds}
    if side_net is not None and side_comp is None:
        side_comp = _publish_side_info(spec, registry, side_net, old, side_made, job_id)
        result.refs.append(side_comp.ref)
    pushed = _publish_transform(spec, registry, transform, old, new, side_comp, data, fit_images, metrics, job_id)
    result.refs.append(pushed.ref)
    if head is not None:
        c = result.classification
        assert c is not None
        registry.post_evaluation(
            extractor=old.ref,
            head=head.ref,
            dataset=f"{test_spec.label}:test",
            value=c["transformed_old"],
            samples=c["samples"],
            bn_mode="batch",
            batch_size=c["evaluation"]["batch_size"],
            metric=BRIDGED_METRIC,
            details={
                "via": [pushed.digest],
                "job": job_id,
                "unrestricted": c["unrestricted"],
                "source_digest": test.source_digest,
                "dataset_digest": test.dataset_digest,
                **c["evaluation"],
            },
            classes=c["classes"],
            job=current_lease.get(),
            data_digest=test.data_digest,
        )
    return result


@torch.no_grad()
def _retrieval(
    old_net: nn.Module,
    new_net: nn.Module,
    side_net: nn.Module | None,
    transform: nn.Module,
    test: Images,
    space: str,
) -> dict[str, Any]:
    """FCT's rows on pooled features; a junction transform's output is pooled after it."""
    from partsbin.client.bridges import transform_embeddings

    y = test.y
    old_f, new_f = _space_features(old_net, test.x, space), _space_features(new_net, test.x, space)
    side = side_vectors(side_net, test.x) if side_net is not None else None
    moved = pooled(transform_embeddings(transform, old_f, side))
    old_e, new_e = pooled(old_f), pooled(new_f)
    rows = {
        "old/old": retrieval_metrics(old_e, y, old_e, y, exclude_self=True).as_dict(),
        "new/new": retrieval_metrics(new_e, y, new_e, y, exclude_self=True).as_dict(),
        "new/transformed old": retrieval_metrics(new_e, y, moved, y, exclude_self=True).as_dict(),
    }
    gap = rows["new/new"]["top1"] - rows["old/old"]["top1"]
    closed = (rows["new/transformed old"]["top1"] - rows["old/old"]["top1"]) / gap if gap > 0 else None
    return {"retrieval": rows, "top1_gap_closed": closed}


def _classification(
    old_net: nn.Module,
    new_net: nn.Module,
    side_net: nn.Module | None,
    transform: nn.Module,
    head: Any,
    old: Any,
    test: Images,
) -> dict[str, Any]:
    """The new head on transformed old features, measured like any recombined pair."""
    settings = EvalSettings()
    labels = head.card.labels
    head_net = head.build().eval()
    bridged: nn.Module = (
        nn.Sequential(old_net, transform) if side_net is None else WithSideInfo(old_net, side_net, transform)
    )
    moved = evaluate_pair(bridged, head_net, test, labels, settings)
    own = evaluate_pair(new_net, head_net, test, labels, settings)
    direct = None
    if junctions_compatible(old.card.interface.junction, head.card.interface.junction):
        direct = evaluate_pair(old_net, head_net, test, labels, settings).restricted
    return {
        "head": head.ref,
        "transformed_old": moved.restricted,
        "unrestricted": moved.unrestricted,
        "new": own.restricted,
        "no_bridge": direct,
        "samples": moved.n,
        "classes": len(set(test.classes) & set(labels)),
        "evaluation": settings.as_dict(),
    }


def _publish_side_info(
    spec: FCTSpec, registry: Any, net: nn.Module, old: Any, made: tuple[DataSpec, torch.Tensor], job_id: str | None
) -> Any:
    data, x = made  # the images it was trained on say what it takes
    card = card_for(
        name=f"{spec.namespace}/{spec.name}-side-info",
        role="side-info",
        arch="side_info",
        config={"in_chans": int(x.shape[1]), "width": spec.side_width, "dim": spec.side_dim},
        split="embed",
        input_size=int(x.shape[-1]),
        description=f"FCT side-information for {old.ref}'s gallery: rotation prediction on the old training data",
        provenance=provenance(
            job=job_id,
            seed=spec.settings.seed,
            settings={"objective": "rotation prediction", "steps": spec.side_steps, "dim": spec.side_dim},
            dataset=data_provenance(data, None, classes=data.classes),
        ),
        tags=["partsbin-trainer", "fct", "side-info"],
    )
    return push(registry, net, card)


def _publish_transform(
    spec: FCTSpec,
    registry: Any,
    transform: nn.Module,
    old: Any,
    new: Any,
    side: Any,
    data: DataSpec,
    images: Images,
    metrics: dict[str, Any],
    job_id: str | None,
) -> Any:
    src, dst = old.card.interface.junction, new.card.interface.junction
    side_dim = int(side.card.interface.junction.channels) if side is not None else 0
    card = card_for(
        name=f"{spec.namespace}/{spec.name}",
        role="transform",
        arch="fct_transform",
        config={"in_chans": src.channels, "side_chans": side_dim, "out_chans": dst.channels, "hidden": spec.hidden},
        split="transform",
        # Pooled embeddings are 1x1; junction features keep the old extractor's size.
        input_size=1 if spec.space == "embedding" else int(src.spatial),
        bridge={
            "from": old.digest,
            "to": new.digest,
            "side_info": side.digest if side is not None else None,
            # Written only where it differs from a transform's default, so that clients
            # from before the field existed still read embedding transforms.
            **({"space": "junction"} if spec.space == "junction" else {}),
        },
        description=(
            f"FCT transformation of {old.ref}'s {spec.space} features"
            f"{' + side-information' if side is not None else ''} into {new.ref}'s"
        ),
        provenance=provenance(
            job=job_id,
            seed=spec.settings.seed,
            settings={
                **spec.settings.model_dump(mode="json"),
                "loss": "L2",
                "space": spec.space,
                "hidden": spec.hidden,
                "images": metrics["fit_images"],
                "old_extractor": old.ref,
                "new_extractor": new.ref,
                "side_info": side.ref if side is not None else None,
            },
            dataset=data_provenance(data, images, classes=data.classes),
        ),
        metrics=metrics,
        tags=["partsbin-trainer", "fct", spec.space],
    )
    return push(registry, transform, card)
