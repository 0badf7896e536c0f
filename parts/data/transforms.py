"""Selections, domain shifts and augmentation on image tensors (plain torch; there is
no CPU build of torchvision here)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from partsbin.parts.data.sources import Images
from partsbin.parts.training_spec import DataSpec, Transform

__all__ = ["select", "apply_transforms", "prepare", "augment_batch"]


def select(images: Images, spec: DataSpec) -> Images:
    """Index subsets, then class subsets by label name with labels remapped to the
    order given, then a fixed-size prefix."""
    out = images
    if spec.indices is not None:
        start = 0 if spec.indices == "even" else 1
        out = out.subset(torch.arange(start, len(out), 2))
    if spec.classes is not None:
        unknown = [c for c in spec.classes if c not in out.classes]
        if unknown:
            raise ValueError(f"classes {unknown} are not in this data set; it has: {', '.join(out.classes)}")
        old = torch.tensor([out.classes.index(c) for c in spec.classes])
        keep = torch.isin(out.y, old)
        lookup = torch.full((len(out.classes),), -1, dtype=torch.long)
        lookup[old] = torch.arange(len(old))
        out = Images(out.x[keep], lookup[out.y[keep]], list(spec.classes))
    if spec.limit is not None:
        out = out.subset(torch.arange(min(spec.limit, len(out))))
    return out


def _one(x: torch.Tensor, t: Transform) -> torch.Tensor:
    if t.op == "resize":
        assert t.size is not None  # Transform's validator requires it for resize
        x = F.interpolate(x, size=(t.size, t.size), mode="bilinear", align_corners=False, antialias=True)
        if t.back_to is not None:
            x = F.interpolate(x, size=(t.back_to, t.back_to), mode="bilinear", align_corners=False)
        return x.clamp_(0, 1)
    if t.op == "invert":
        return 1.0 - x
    if t.op == "grey_to_rgb":
        return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x
    if t.op == "normalize":
        mean = torch.tensor(t.mean).view(1, -1, 1, 1)
        std = torch.tensor(t.std).view(1, -1, 1, 1)
        return (x - mean) / std
    raise ValueError(f"unknown transform {t.op!r}")


def apply_transforms(images: Images, transforms: list[Transform]) -> Images:
    x = images.x
    for t in transforms:
        x = _one(x, t)
    return Images(x.contiguous(), images.y, images.classes)


def prepare(images: Images, spec: DataSpec) -> Images:
    return apply_transforms(select(images, spec), spec.transforms)


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
