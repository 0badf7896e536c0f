"""Selections, domain shifts and augmentation on image tensors (plain torch; there is
no CPU build of torchvision here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

import torch
import torch.nn.functional as F

from partsbin.parts.data.sources import Images
from partsbin.parts.data.spec import DataSpec, Transform

if TYPE_CHECKING:
    from partsbin.parts.data.stream import StreamedImages

__all__ = ["select", "apply_transforms", "apply_one", "prepare", "augment_batch"]


@overload
def select(images: Images, spec: DataSpec) -> Images: ...
@overload
def select(images: StreamedImages, spec: DataSpec) -> StreamedImages: ...
@overload
def select(images: Images | StreamedImages, spec: DataSpec) -> Images | StreamedImages: ...
def select(images: Images | StreamedImages, spec: DataSpec) -> Images | StreamedImages:
    """Index subsets, then class subsets by label name with labels remapped to the
    order given, then a fixed-size prefix (in memory or streamed alike)."""
    out = images
    if spec.indices is not None:
        start = 0 if spec.indices == "even" else 1
        out = out.subset(torch.arange(start, len(out), 2))
    if spec.classes is not None:
        if not out.classes:
            raise ValueError("these images have no labels: a class selection needs labelled data")
        unknown = [c for c in spec.classes if c not in out.classes]
        if unknown:
            raise ValueError(f"classes {unknown} are not in this data set; it has: {', '.join(out.classes)}")
        old = torch.tensor([out.classes.index(c) for c in spec.classes])
        keep = torch.isin(out.y, old)
        lookup = torch.full((len(out.classes),), -1, dtype=torch.long)
        lookup[old] = torch.arange(len(old))
        out = out.select_classes(keep, lookup[out.y[keep]], list(spec.classes))
    if spec.limit is not None:
        out = out.subset(torch.arange(min(spec.limit, len(out))))
    return out


def _given(value: float | None) -> float:
    # Transform's validator requires each op's parameter; this only narrows the type.
    if value is None:
        raise ValueError("a transform is missing its parameter")
    return value


def apply_one(x: torch.Tensor, t: Transform) -> torch.Tensor:
    """One transform on a batch N×C×H×W."""
    if t.op == "resize":
        size = int(_given(t.size))
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        if t.back_to is not None:
            x = F.interpolate(x, size=(t.back_to, t.back_to), mode="bilinear", align_corners=False)
        return x.clamp_(0, 1)
    if t.op == "invert":
        return 1.0 - x
    if t.op == "contrast":
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return ((x - mean) * _given(t.factor) + mean).clamp_(0, 1)
    if t.op == "brightness":
        return (x + _given(t.delta)).clamp_(0, 1)
    if t.op == "noise":
        # Seeded, and drawn for the whole set at once: the same selection of images gets
        # the same noise on every machine and in every run.
        gen = torch.Generator().manual_seed(t.seed)
        return (x + torch.randn(x.shape, generator=gen, dtype=x.dtype) * _given(t.sigma)).clamp_(0, 1)
    if t.op == "blur":
        return _gaussian_blur(x, _given(t.sigma))
    if t.op == "grey_to_rgb":
        return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x
    if t.op == "normalize":
        mean = torch.tensor(t.mean).view(1, -1, 1, 1)
        std = torch.tensor(t.std).view(1, -1, 1, 1)
        return (x - mean) / std
    raise ValueError(f"unknown transform {t.op!r}")


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders (torchvision's ``gaussian_blur``
    is not available here: there is no CPU build of torchvision)."""
    # Three standard deviations each side, but never wider than reflection allows.
    radius = min(max(1, int(3 * sigma + 0.5)), x.shape[-1] - 1, x.shape[-2] - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), horizontal, groups=c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), vertical, groups=c)
    return x.clamp_(0, 1)


def apply_transforms(images: Images, transforms: list[Transform]) -> Images:
    x = images.x
    for t in transforms:
        x = apply_one(x, t)
    return Images(x.contiguous(), images.y, images.classes, images.source_digest, images.dataset_digest)


def prepare(images: Images, spec: DataSpec) -> Images:
    out = apply_transforms(select(images, spec), spec.transforms)
    out.recipe = {
        "classes": spec.classes,
        "indices": spec.indices,
        "transforms": [t.model_dump(mode="json") for t in spec.transforms],
    }
    return out


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per example."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).view(n, 1, h, 1).expand(n, x.shape[1], h, w)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    # Gather rows then columns (two cheap gathers instead of a per-example loop).
    out = padded.gather(2, rows[..., :1].expand(n, x.shape[1], h, padded.shape[3]))
    out = out.gather(3, cols)
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(3)
    return out
