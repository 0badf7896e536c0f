"""Bridges between representation spaces (DESIGN.md, "Using compatible parts").

``stitch`` is a stitching layer (Lenc & Vedaldi 2015; Bansal et al. 2021): a 1×1
convolution, with BatchNorm by default, from one extractor's junction to the junction a
head expects. It is stored as a whole network (``part: full``) split after its only layer,
so the registry checks its tensors like any other part's.
"""

from __future__ import annotations

from collections import OrderedDict

from pydantic import Field
from torch import nn

from partsbin.parts.archs._registry import ArchConfig, FeatureInfo, SplitNetwork, register

__all__ = ["StitchConfig", "stitch"]

MAX_CHANNELS = 8192


class StitchConfig(ArchConfig):
    in_chans: int = Field(ge=1, le=MAX_CHANNELS, description="channels of the extractor's junction")
    out_chans: int = Field(ge=1, le=MAX_CHANNELS, description="channels of the junction the head takes")
    batchnorm: bool = Field(default=True, description="BatchNorm after the 1×1 convolution (Bansal et al.)")


@register("stitch", StitchConfig)
def stitch(in_chans: int, out_chans: int, batchnorm: bool = True, split: str = "adapter") -> SplitNetwork:
    layers: list[nn.Module] = [nn.Conv2d(in_chans, out_chans, 1, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_chans))
    # The empty "out" layer only marks the end: a split network needs a layer after its split.
    net = OrderedDict(adapter=nn.Sequential(*layers), out=nn.Identity())
    info = [FeatureInfo("adapter", out_chans, 1), FeatureInfo("out", out_chans, 1)]
    return SplitNetwork(net, info, split, split_points=("adapter",))
