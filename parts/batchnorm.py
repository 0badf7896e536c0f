"""BatchNorm behaviour for recombined and frozen components.

The paper evaluates recombined networks with the statistics of the test batch (§4):
compatibility is trained in the regime of per-batch statistics, which differ between
tasks, so running averages gathered on one task are wrong for another task's
extractor. Frozen aux heads are trained in that same regime but must never change,
running buffers included.

:func:`use_batch_statistics` makes every BatchNorm layer of a module normalise with
the current batch's statistics, in train and eval mode alike, without reading or
writing its running buffers.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BNMode", "use_batch_statistics", "use_running_statistics", "set_bn_mode", "batchnorm_layers", "evaluating"]

BNMode = Literal["batch", "running"]


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _batch_stats_forward(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    self._check_input_dim(x)
    return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


def use_batch_statistics(module: nn.Module) -> nn.Module:
    for bn in batchnorm_layers(module):
        # An instance attribute shadows the class's forward; deleting it restores it.
        bn.forward = types.MethodType(_batch_stats_forward, bn)  # type: ignore[method-assign]
    return module


def use_running_statistics(module: nn.Module) -> nn.Module:
    for bn in batchnorm_layers(module):
        bn.__dict__.pop("forward", None)
    return module


def set_bn_mode(module: nn.Module, mode: BNMode) -> nn.Module:
    if mode == "batch":
        return use_batch_statistics(module)
    if mode == "running":
        return use_running_statistics(module)
    raise ValueError(f"unknown BatchNorm mode {mode!r}: expected 'batch' or 'running'")


@contextmanager
def evaluating(module: nn.Module, mode: BNMode) -> Iterator[nn.Module]:
    """``module`` in eval mode with BatchNorm in ``mode``; afterwards each BatchNorm layer
    and the module are as they were (a frozen aux head keeps its batch statistics)."""
    layers = batchnorm_layers(module)
    patched = ["forward" in bn.__dict__ for bn in layers]
    training = module.training
    module.eval()
    set_bn_mode(module, mode)
    try:
        yield module
    finally:
        for bn, was_batch in zip(layers, patched, strict=True):
            set_bn_mode(bn, "batch" if was_batch else "running")
        module.train(training)
