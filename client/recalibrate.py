"""BatchNorm recalibration: running statistics recomputed on the evaluation images
(Li et al. 2016a, AdaBN)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from partsbin.parts.batchnorm import batchnorm_layers, set_bn_mode

__all__ = ["recalibrate_bn", "recalibrate_bn_on"]


def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Replace the running statistics with those of ``x`` (Li et al. 2016a, AdaBN)."""
    recalibrate_bn_on(model, (x[start : start + batch_size] for start in range(0, len(x), batch_size)))


@torch.no_grad()
def recalibrate_bn_on(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """:func:`recalibrate_bn` over ``batches`` (a streamed test set, decoded as it goes)."""
    layers = batchnorm_layers(model)
    saved = [(bn.momentum, bn.training) for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
        bn.train()
    set_bn_mode(model, "running")
    for batch in batches:
        model(batch)
    for bn, (momentum, training) in zip(layers, saved, strict=False):
        bn.momentum = momentum
        bn.train(training)
