"""Recombining an extractor and a head into one module."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from partsbin.client.errors import Incompatible
from partsbin.parts.batchnorm import BNMode, set_bn_mode
from partsbin.parts.card import Card, Junction, junctions_compatible

__all__ = ["AssembledModel", "check_junctions", "describe_junction"]


def check_junctions(ext_ref: str, ext: Card, head_ref: str, head: Card) -> None:
    if ext.role != "extractor":
        raise Incompatible(f"{ext_ref} is a {ext.role}, not an extractor")
    if head.arch.part != "head":
        raise Incompatible(f"{head_ref} is a {head.role}, not a head")
    a, b = ext.interface.junction, head.interface.junction
    if a.layout != b.layout:
        raise Incompatible(
            f"feature interfaces differ: extractor {ext_ref} gives {describe_junction(a)}, head {head_ref} takes "
            f"{describe_junction(b)}; spatial features and tokens meet only through an adapter "
            f"(`partsbin stitch --extractor {ext_ref} --head {head_ref} --name NS/NAME`, then via=[adapter])"
        )
    if not junctions_compatible(a, b):
        raise Incompatible(
            f"feature interfaces differ: extractor {ext_ref} gives {describe_junction(a)}, "
            f"head {head_ref} takes {describe_junction(b)}"
        )


def describe_junction(j: Junction) -> str:
    """'64 channels at 8x8', '64 channels at any size', '32-dim tokens, 49 of them'."""
    if j.layout == "tokens":
        return f"{j.channels}-dim tokens, {'any number' if j.spatial == 'any' else j.spatial} of them"
    return f"{j.channels} channels at {'any size' if j.spatial == 'any' else f'{j.spatial}x{j.spatial}'}"


class AssembledModel(nn.Module):
    """``head(extractor(x))``.

    ``bn_mode="batch"`` normalises with each batch's statistics, in eval mode too: the
    paper's choice for recombined networks, whose stored running statistics belong to
    another task (§4). With it the output depends on the batch, so a batch of one
    example warns. ``"running"`` uses the stored running statistics, which reproduces
    the original network exactly when extractor and head were trained together.
    """

    def __init__(
        self,
        extractor: nn.Module,
        head: nn.Module,
        *,
        bn_mode: BNMode = "batch",
        extractor_ref: str = "",
        head_ref: str = "",
        labels: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.extractor = extractor
        self.head = head
        self.extractor_ref = extractor_ref
        self.head_ref = head_ref
        self.labels = labels
        #: The bridges between extractor and head, by ref (empty when direct).
        self.via: list[str] = []
        self.bn_mode: BNMode = bn_mode
        self.set_bn_mode(bn_mode)
        self.eval()

    def set_bn_mode(self, mode: BNMode) -> AssembledModel:
        set_bn_mode(self, mode)
        self.bn_mode = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn_mode == "batch" and x.shape[0] == 1:
            warnings.warn(
                "BatchNorm in batch-statistics mode with a batch of 1: outputs are unreliable; "
                "use larger batches or bn_mode='running'",
                RuntimeWarning,
                stacklevel=2,
            )
        return self.head(self.extractor(x))
