"""Feature cross-correlation between extractors (Li et al. 2016): the mean over channels
of the per-channel correlation, without permutation and with the best one."""

from __future__ import annotations

import torch
from torch import nn

from partsbin.parts.batchnorm import evaluating
from partsbin.parts.extras import require

__all__ = ["cross_correlation", "extractor_features"]


@torch.no_grad()
def extractor_features(extractor: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with evaluating(extractor, "batch"):
        return torch.cat([extractor(x[s : s + batch_size]) for s in range(0, len(x), batch_size)])


@torch.no_grad()
def cross_correlation(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(without permutation, with the best permutation) — Li et al. 2016: each channel's
    activations over all images and positions, Pearson correlation channel to channel,
    averaged over channels."""
    if a.shape != b.shape:
        raise ValueError(f"feature shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    c = a.shape[1]
    fa = a.transpose(0, 1).reshape(c, -1).double()
    fb = b.transpose(0, 1).reshape(c, -1).double()
    fa = (fa - fa.mean(1, keepdim=True)) / (fa.std(1, keepdim=True) + 1e-12)
    fb = (fb - fb.mean(1, keepdim=True)) / (fb.std(1, keepdim=True) + 1e-12)
    corr = (fa @ fb.T) / (fa.shape[1] - 1)  # c × c
    direct = float(corr.diagonal().mean())
    linear_sum_assignment = require(
        "scipy.optimize", "train", "feature correlation with the best permutation"
    ).linear_sum_assignment

    rows, cols = linear_sum_assignment(corr.numpy(), maximize=True)
    return direct, float(corr[rows, cols].mean())
