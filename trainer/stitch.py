"""The ``stitch`` job: an adapter (a 1×1 convolution + BatchNorm) from an extractor to a
head that were trained apart, published as a bridge.

Two ways to make the same edge:

- **trained** (Bansal et al. 2021): the extractor and the head stay frozen; the adapter
  learns with the head's task loss on labelled images of the classes the head knows.
- **closed form** (Maiorca et al. 2023): least squares, or orthogonal Procrustes, fitted
  per spatial position on the features both sides give for the same images: the
  extractor's, and those of the extractor the head expects (its sibling). No gradient.

A stitch with enough capacity can hide an incompatibility, so the result reports the
adapter-free recombination, the adapter's and the adapter's parameter count side by side.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from partsbin.parts.archs import SplitNetwork, build
from partsbin.parts.batchnorm import evaluating
from partsbin.parts.cancel import checkpoint
from partsbin.parts.card import Junction, junctions_compatible
from partsbin.parts.data import Images, load_raw
from partsbin.parts.data.spec import RECORDED_TEST_EXTRAS, DataSpec, Transform
from partsbin.parts.data.transforms import apply_transforms, select
from partsbin.parts.describe import card_for
from partsbin.parts.evaluation import EvalSettings, evaluate_pair
from partsbin.parts.jobs.bridges import StitchResult, StitchSpec
from partsbin.parts.jobs.kinds import InvalidSpec, job_kind
from partsbin.parts.jobs.settings import Settings
from partsbin.parts.jobs.spec import TrainStats
from partsbin.trainer.lease import current_lease
from partsbin.trainer.loop import Progress, RandomBatches, Track, fit, lr_schedule, make_optimizer, resolve_device
from partsbin.trainer.publish import data_provenance, provenance, push

__all__ = [
    "StitchData",
    "recorded_data",
    "features",
    "fit_closed_form",
    "adapter_from_linear",
    "feature_mse",
    "train_adapter",
    "adapter_arch",
    "run_stitch",
]

FEATURE_BATCH = 256
#: The metric of a measured path through bridges (registry/crud/paths.py).
BRIDGED_METRIC = "bridged_recombination_accuracy"


# -- data ---------------------------------------------------------------------------------
def recorded_data(card: Any, split: str, *, job: str = "stitch", field: str | None = None) -> DataSpec:
    """The data spec a trainer-published card records: its training data, or its test set.
    ``job`` and ``field`` name what to give instead when the card records none (a part
    published by hand usually does not): that is the spec's to fix, so :class:`InvalidSpec`."""
    field = field or ("test" if split == "test" else "data")
    ds = card.provenance.dataset
    what = "test set" if split == "test" else "training data"
    flags = [o.flags[0] for o in job_kind(job).options if o.field == field]
    how = f"{flags[0]} DATASPEC" if flags else "in a spec file, --spec FILE"
    missing = InvalidSpec(
        f"{card.name}'s card does not record its {what}, so the {job} job cannot take it from there: "
        f"give the job '{field}', a data spec ({how})"
    )
    if ds is None:
        raise missing
    if split == "test":
        test = getattr(ds, "test", None)
        if test is None:
            raise missing
        return DataSpec.model_validate({k: v for k, v in test.items() if k not in RECORDED_TEST_EXTRAS})
    recorded = getattr(ds, "spec", None)
    if isinstance(recorded, dict):
        return DataSpec.model_validate(recorded)
    return DataSpec(
        source=ds.name,
        classes=ds.classes,
        indices=getattr(ds, "indices", None),
        transforms=[Transform.model_validate(t) for t in (ds.transform or [])],
    )


@dataclass
class StitchData:
    """The extractor's images of the classes the head knows, labelled with the head's
    indices; ``target`` holds the same images seen as the head's own extractor saw its data."""

    images: Images
    target: Images | None = None


def _paired(
    spec: DataSpec, split: str, head_labels: list[str], target_transforms: list[Transform] | None
) -> StitchData:
    classes = [c for c in (spec.classes or []) if c in head_labels] if spec.classes else None
    raw_spec = spec.model_copy(update={"transforms": [], "classes": classes})
    raw = select(load_raw(spec, split), raw_spec)
    keep = [c for c in raw.classes if c in head_labels]
    if not keep:
        raise ValueError(f"the data has none of the head's classes ({', '.join(head_labels[:10])})")
    raw = select(raw, raw_spec.model_copy(update={"indices": None, "limit": None, "classes": keep}))
    # The head's indices, by label name (never by position).
    raw = Images(
        raw.x,
        torch.tensor([head_labels.index(c) for c in keep])[raw.y],
        list(head_labels),
        raw.source_digest,
        raw.dataset_digest,
    )
    target = apply_transforms(raw, target_transforms) if target_transforms is not None else None
    return StitchData(apply_transforms(raw, spec.transforms), target)


# -- features and closed-form fits -------------------------------------------------------------
@torch.no_grad()
def features(extractor: nn.Module, x: torch.Tensor, batch_size: int = FEATURE_BATCH) -> torch.Tensor:
    """The junction features, with batch statistics (the regime of recombined parts)."""
    out = []
    with evaluating(extractor, "batch"):
        for s in range(0, len(x), batch_size):
            checkpoint()
            out.append(extractor(x[s : s + batch_size]))
    return torch.cat(out)


def _rows(a: torch.Tensor, size: int) -> torch.Tensor:
    if a.shape[-1] != size:
        a = F.adaptive_avg_pool2d(a, size)
    return a.permute(0, 2, 3, 1).reshape(-1, a.shape[1]).double()


@torch.no_grad()
def fit_closed_form(source: torch.Tensor, target: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b)`` with ``target ≈ W·source + b`` at every spatial position (a 1×1 convolution).

    ``least-squares``: the minimum-norm solution over all linear maps plus a bias.
    ``procrustes``: after centring both sides, an orthogonal map times one scale (the
    optimal isotropic scale; the map itself only rotates), so it cannot stretch the source
    space to fit noise; it needs equal channel counts. Where the spatial sizes differ,
    both sides are average-pooled to the smaller one first.
    """
    size = min(source.shape[-1], target.shape[-1])
    x, y = _rows(source, size), _rows(target, size)
    mx, my = x.mean(0), y.mean(0)
    if method == "least-squares":
        ones = torch.ones(len(x), 1, dtype=x.dtype)
        sol = torch.linalg.lstsq(torch.cat([x - mx, ones], 1), y, driver="gelsd").solution
        w = sol[:-1].T
        b = sol[-1] - w @ mx
    elif method == "procrustes":
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"procrustes needs equal channel counts ({x.shape[1]} vs {y.shape[1]}): use least-squares")
        xc, yc = x - mx, y - my
        u, s, vt = torch.linalg.svd(xc.T @ yc)
        r = u @ vt  # argmin ||xc r - yc|| over orthogonal r
        scale = s.sum() / xc.pow(2).sum().clamp_min(1e-12)
        w = (scale * r).T
        b = my - w @ mx
    else:
        raise ValueError(f"unknown closed-form method {method!r}: least-squares or procrustes")
    return w.float(), b.float()


@torch.no_grad()
def adapter_from_linear(
    w: torch.Tensor, b: torch.Tensor, *, batchnorm: bool, source: torch.Tensor | None = None
) -> SplitNetwork:
    """A ``stitch`` network computing ``W·x + b``. With BatchNorm, its running statistics
    and affine parameters are set so that it computes exactly that in running mode and,
    for batches like ``source``, approximately that with batch statistics."""
    out_chans, in_chans = w.shape
    net = build("stitch", in_chans=in_chans, out_chans=out_chans, batchnorm=batchnorm)
    layers: Any = net.adapter
    conv = layers[0]
    conv.weight.copy_(w[:, :, None, None])
    if not batchnorm:
        conv.bias.copy_(b)
        return net.eval()
    if source is None:
        raise ValueError("a BatchNorm adapter needs the source features to set its statistics")
    z = F.conv2d(source, conv.weight)
    mean, var = z.mean((0, 2, 3)), z.var((0, 2, 3), unbiased=False)
    bn = layers[1]
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    bn.weight.copy_(torch.sqrt(var + bn.eps))
    bn.bias.copy_(mean + b)
    return net.eval()


@torch.no_grad()
def feature_mse(adapter: nn.Module, source: torch.Tensor, target: torch.Tensor, bn_mode: str = "batch") -> float:
    """Mean squared error between the adapted source features and the target features
    (pooled to a common spatial size where they differ)."""
    with evaluating(adapter, bn_mode):  # type: ignore[arg-type]
        out = adapter(source)
    size = min(out.shape[-1], target.shape[-1])
    return float(F.mse_loss(F.adaptive_avg_pool2d(out, size), F.adaptive_avg_pool2d(target, size)))


# -- training ------------------------------------------------------------------------------------
class _StitchLoss(nn.Module):
    def __init__(self, adapter: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.adapter = adapter
        self.head = head

    def forward(self, i: int, feats: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.head(self.adapter(feats)), y)


def train_adapter(
    adapter: nn.Module,
    head: nn.Module,
    feats: torch.Tensor,
    labels: torch.Tensor,
    settings: Settings,
    *,
    device: torch.device | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train ``adapter`` with ``head``'s task loss on the frozen extractor's ``feats``.

    The head is frozen (no gradient, no optimiser state) and normalises with the batch's
    statistics, as recombined parts are evaluated; only the adapter learns. Features
    are computed once: the extractor is frozen, so they are the same every epoch.
    """
    for p in head.parameters():
        p.requires_grad_(False)
    adapter.train()
    track = Track(
        name="adapter",
        batches=RandomBatches(feats, labels, batch_size=settings.batch_size, seed=settings.seed),
        optimizers=[(make_optimizer(list(adapter.parameters()), settings), 1.0)],
        steps=settings.steps,
        lr=lr_schedule(settings),
        images_per_step=min(settings.batch_size, len(feats)),
    )
    with evaluating(head, "batch"):
        stats = fit(_StitchLoss(adapter, head), [track], device=device or torch.device("cpu"), progress=progress)
    adapter.cpu().eval()
    head.cpu()
    return stats.as_dict()


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- the job -------------------------------------------------------------------------------------
def adapter_arch(
    src: Junction, dst: Junction, *, batchnorm: bool = True, out_size: int | None = None
) -> tuple[str, dict[str, Any]]:
    """The adapter (arch name, config) from junction ``src`` to ``dst``: ``stitch`` between
    spatial ones, the token bridges where either end is tokens (DESIGN.md, "Bridges").
    ``out_size`` is the grid (or, for tokens, the token count) to give where ``dst`` takes
    any: the size the head was trained at, when known."""
    if not isinstance(src.spatial, int):
        raise ValueError("an adapter starts at an extractor's junction, which has a size")
    size = dst.spatial if isinstance(dst.spatial, int) else out_size
    if src.layout == "spatial" and dst.layout == "spatial":
        return "stitch", {"in_chans": src.channels, "out_chans": dst.channels, "batchnorm": batchnorm}
    if src.layout == "tokens" and dst.layout == "tokens":
        return "token_stitch", {"in_chans": src.channels, "tokens": src.spatial, "out_dim": dst.channels}
    if src.layout == "tokens":
        grid = math.isqrt(src.spatial)
        # A token count one above a square is a grid of patches after a class token.
        config: dict[str, Any] = {
            "in_chans": src.channels,
            "tokens": src.spatial,
            "class_token": grid * grid != src.spatial,
            "out_chans": dst.channels,
            "batchnorm": batchnorm,
        }
        return "tokens_to_spatial", {**config, **({"out_size": size} if size is not None else {})}
    config = {"in_chans": src.channels, "in_size": src.spatial, "out_dim": dst.channels}
    return "spatial_to_tokens", {**config, **({"tokens": size} if size is not None else {})}


def _head_grid(registry: Any, head: Any) -> int | None:
    """The junction size the head's own extractor (its card's sibling) gives, if known: the
    grid a bridge into a globally pooling head should give it."""
    sibling = head.card.compat.sibling
    if sibling is None or head.card.interface.junction.spatial != "any":
        return None
    from partsbin.client.errors import NotFound

    try:
        j = registry.info(sibling).card.interface.junction
    except NotFound:  # a sibling not in this registry: the bridge's own grid
        return None
    if j.layout != head.card.interface.junction.layout or not isinstance(j.spatial, int):
        return None
    if j.layout == "tokens" and math.isqrt(j.spatial) ** 2 != j.spatial:
        # A class token is not a grid position: the patch tokens the sibling gives.
        return j.spatial - 1
    return j.spatial


def run_stitch(
    spec: StitchSpec, registry: Any, *, progress: Progress | None = None, job_id: str | None = None
) -> StitchResult:
    if registry is None:
        raise ValueError("a stitch job needs a registry to pull the extractor and the head from")
    progress = progress or Progress()
    s = spec.settings
    device = resolve_device(s)
    torch.manual_seed(s.seed)
    ext = registry.pull(spec.extractor)
    head = registry.pull(spec.head)
    if ext.card.role != "extractor":
        raise ValueError(f"{ext.ref} is a {ext.card.role}, not an extractor")
    if head.card.arch.part != "head":
        raise ValueError(f"{head.ref} is a {head.card.role}, not a head")
    labels = head.card.labels
    src_j, dst_j = ext.card.interface.junction, head.card.interface.junction

    target_ext = None
    if spec.method != "trained":
        ref = spec.target_extractor or head.card.compat.sibling
        if ref is None:
            raise ValueError(
                f"a closed-form fit needs the features {head.ref} expects: its card names no sibling extractor, "
                "so give target_extractor"
            )
        target_ext = registry.pull(ref)
    train_spec = spec.data or recorded_data(ext.card, "train")
    test_spec = spec.test or recorded_data(ext.card, "test")
    target_tf = None
    if target_ext is not None:
        # The same images, as the head's own extractor saw its data (a domain shift).
        target_tf = recorded_data(target_ext.card, "train").transforms
    progress.phase("loading data")
    train = _paired(train_spec, "train", labels, target_tf)
    test = _paired(test_spec, "test", labels, None).images
    if s.test_limit:
        test = test.subset(range(min(s.test_limit, len(test))))

    if spec.method != "trained" and (src_j.layout, dst_j.layout) != ("spatial", "spatial"):
        raise InvalidSpec(
            f"a closed-form fit maps spatial features position by position; {ext.ref} gives {src_j.layout} and "
            f"{head.ref} takes {dst_j.layout}: use method 'trained'"
        )
    arch, arch_config = adapter_arch(src_j, dst_j, batchnorm=spec.batchnorm, out_size=_head_grid(registry, head))

    extractor, head_net = ext.build().eval(), head.build().eval()
    for p in [*extractor.parameters(), *head_net.parameters()]:
        p.requires_grad_(False)
    started = time.perf_counter()
    progress.phase("computing features")
    feats = features(extractor, train.images.x)
    extra: dict[str, Any] = {}
    stats = None
    if spec.method == "trained":
        adapter: nn.Module = build(arch, **arch_config)
        stats = train_adapter(adapter, head_net, feats, train.images.y, s, device=device, progress=progress)
        steps = s.steps
    else:
        assert target_ext is not None and train.target is not None
        n = min(spec.fit_images, len(train.images))
        tgt = features(target_ext.build().eval(), train.target.x[:n])
        w, b = fit_closed_form(feats[:n], tgt, spec.method)
        adapter = adapter_from_linear(w, b, batchnorm=spec.batchnorm, source=feats[:n])
        extra = {"fit_images": n, "feature_mse": feature_mse(adapter, feats[:n], tgt)}
        steps = 0
    seconds = time.perf_counter() - started

    progress.phase("evaluating")
    settings = EvalSettings(batch_size=s.eval_batch_size)
    with_adapter = evaluate_pair(nn.Sequential(extractor, adapter), head_net, test, labels, settings)
    without = None
    if junctions_compatible(src_j, dst_j):
        without = evaluate_pair(extractor, head_net, test, labels, settings)
    result = StitchResult(
        extractor=ext.ref,
        head=head.ref,
        method=spec.method,
        recombination_accuracy=with_adapter.restricted,
        adapter_free_accuracy=without.restricted if without is not None else None,
        adapter_parameters=_params(adapter),
        extractor_parameters=_params(extractor),
        head_parameters=_params(head_net),
        test_images=with_adapter.n,
        chance=1 / len(set(test.classes) & set(labels)),
        train=TrainStats(**stats, threads=torch.get_num_threads(), device=device.type) if stats else None,
        seconds=seconds,
        **extra,
    )
    if spec.publish:
        progress.phase("publishing")
        metrics = {
            **result.model_dump(mode="json", exclude={"kind", "refs", "train", "extractor", "head"}),
            "evaluation": settings.as_dict(),
            "train_loss": {"last": stats["final_loss"]} if stats else None,
        }
        pushed = _publish(
            spec, registry, adapter, (arch, arch_config), ext, head, train_spec, train.images, metrics, steps, job_id
        )
        result.refs = [pushed.ref]
        # The path through this adapter is measured: /paths ranks it by this evaluation.
        # A bridged metric, so that it never ranks /compatible as a direct pair.
        registry.post_evaluation(
            extractor=ext.ref,
            head=head.ref,
            dataset=f"{test_spec.label}:test",
            value=with_adapter.restricted,
            samples=with_adapter.n,
            bn_mode="batch",
            batch_size=settings.batch_size,
            metric=BRIDGED_METRIC,
            details={
                "via": [pushed.digest],
                "job": job_id,
                "adapter_free_accuracy": result.adapter_free_accuracy,
                "unrestricted": with_adapter.unrestricted,
                "evaluation": settings.as_dict(),
                "source_digest": test.source_digest,
                "dataset_digest": test.dataset_digest,
            },
            classes=len(set(test.classes) & set(labels)),
            job=current_lease.get(),
            data_digest=test.data_digest,
        )
    return result


def _publish(
    spec: StitchSpec,
    registry: Any,
    adapter: nn.Module,
    arch: tuple[str, dict[str, Any]],
    ext: Any,
    head: Any,
    data: DataSpec,
    images: Images,
    metrics: dict[str, Any],
    steps: int,
    job_id: str | None,
) -> Any:
    if spec.bridge_to == "group":
        if not head.card.compat.anchors:
            raise ValueError(f"{head.ref} belongs to no group (its card names no anchors): use bridge_to='head'")
        to = head.card.compat.anchors[0]
    else:
        to = head.digest
    src = ext.card.interface.junction
    card = card_for(
        name=f"{spec.namespace}/{spec.name}",
        role="adapter",
        arch=arch[0],
        config=arch[1],
        split="adapter",
        input_size=int(src.spatial),  # an extractor's junction always has a size
        bridge={"from": ext.digest, "to": to},
        description=(
            f"{spec.method} stitching adapter from {ext.ref} to {head.ref}"
            f"{' (its group)' if spec.bridge_to == 'group' else ''}"
        ),
        provenance=provenance(
            job=job_id,
            seed=spec.settings.seed,
            settings={
                **spec.settings.model_dump(mode="json"),
                "method": spec.method,
                "steps": steps,
                "batchnorm": spec.batchnorm,
                "fit_images": spec.fit_images,
                "extractor": ext.ref,
                "head": head.ref,
                "target_extractor": spec.target_extractor or head.card.compat.sibling,
            },
            dataset=data_provenance(data, images, classes=data.classes),
        ),
        metrics=metrics,
        tags=["partsbin-trainer", "stitch", spec.method],
    )
    return push(registry, adapter, card)
