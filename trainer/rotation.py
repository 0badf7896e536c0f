"""Rotation prediction (RP, paper §3.1; Gidaris et al. 2018)."""

from __future__ import annotations

import torch

__all__ = ["ANGLES", "ROTATION_LABELS", "rotate_batch"]

ANGLES = (0, 90, 180, 270)
ROTATION_LABELS = [str(a) for a in ANGLES]


def rotate_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image at all four angles (counter-clockwise), with the angle's index as label.

    Feeding all four rotations of each image and averaging the loss over them is the
    ``1/|S| Σ_s`` of Eq. 1: every image contributes each rotation once, so the head
    cannot lean on the prior that upright images are more common.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError("rotation prediction needs square images")
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(len(ANGLES))])
    labels = torch.arange(len(ANGLES), device=x.device).repeat_interleave(x.shape[0])
    return rotated, labels
