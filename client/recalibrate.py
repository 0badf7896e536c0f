"""BatchNorm recalibration: running statistics recomputed on the evaluation images
(Li et al. 2016a, AdaBN)."""

from __future__ import annotations

import torch
from torch import nn

from partsbin.parts.batchnorm import batchnorm_layers, set_bn_mode

__all__ = ["recalibrate_bn"]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Replace the running statistics with those of ``x`` (Li et al. 2016a, AdaBN)."""
    layers = batchnorm_layers(model)
    saved = [(bn.momentum, bn.training) for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
        bn.train()
    set_bn_mode(model, "running")
    for start in range(0, len(x), batch_size):
        model(x[start : start + batch_size])
    for bn, (momentum, training) in zip(layers, saved, strict=False):
        bn.momentum = momentum
        bn.train(training)
