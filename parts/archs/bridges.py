"""Bridges between representation spaces (DESIGN.md, "Using compatible parts").

``stitch`` is a stitching layer (Lenc & Vedaldi 2015; Bansal et al. 2021): a 1×1
convolution, with BatchNorm by default, from one extractor's junction to the junction a
head expects. It is stored as a whole network (``part: full``) split after its only layer,
so the registry checks its tensors like any other part's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from pydantic import Field
from torch import nn

from partsbin.parts.archs._registry import ArchConfig, FeatureInfo, SplitNetwork, register

__all__ = [
    "StitchConfig",
    "stitch",
    "FCTTransformConfig",
    "fct_transform",
    "SideInfoConfig",
    "side_info",
    "with_side_info",
    "WithSideInfo",
]

MAX_CHANNELS = 8192
# A globally pooled output has spatial size 1 whatever the input's: a reduction as large
# as any input size (the card's bound) says so in the terms feature info uses.
POOLED = 65536


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


class FCTTransformConfig(ArchConfig):
    in_chans: int = Field(ge=1, le=MAX_CHANNELS, description="the old embedding's channels")
    side_chans: int = Field(default=0, ge=0, le=MAX_CHANNELS, description="side-information channels (0: none)")
    out_chans: int = Field(ge=1, le=MAX_CHANNELS, description="the new embedding's channels")
    hidden: int = Field(default=256, ge=1, le=MAX_CHANNELS, description="width of the projections and the MLP")


class _FCTMix(nn.Module):
    """FCT's transformation: the old feature and the side-information each go through a
    1×1-convolution projection; the two are concatenated and mixed by a small 1×1-conv MLP
    with BatchNorm. The input is the old feature and the side-information concatenated
    along channels (one tensor, so that the transform is a plain module in a chain)."""

    def __init__(self, in_chans: int, side_chans: int, out_chans: int, hidden: int) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.old = nn.Sequential(nn.Conv2d(in_chans, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU())
        self.side = (
            nn.Sequential(nn.Conv2d(side_chans, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU())
            if side_chans
            else None
        )
        width = hidden * (2 if side_chans else 1)
        self.mix = nn.Sequential(
            nn.Conv2d(width, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, out_chans, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.old(x[:, : self.in_chans])
        if self.side is not None:
            h = torch.cat([h, self.side(x[:, self.in_chans :])], 1)
        return self.mix(h)


@register("fct_transform", FCTTransformConfig)
def fct_transform(
    in_chans: int, out_chans: int, side_chans: int = 0, hidden: int = 256, split: str = "transform"
) -> SplitNetwork:
    net = OrderedDict(transform=_FCTMix(in_chans, side_chans, out_chans, hidden), out=nn.Identity())
    info = [FeatureInfo("transform", out_chans, 1), FeatureInfo("out", out_chans, 1)]
    return SplitNetwork(net, info, split, split_points=("transform",))


def with_side_info(features: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """Features and side-information as one tensor, the input of a transform: the (N, D, 1, 1)
    side vector is repeated at every position of (N, C, H, W) features (for pooled
    embeddings, H = W = 1 and nothing is repeated)."""
    return torch.cat([features, side.expand(-1, -1, *features.shape[2:])], 1)


class WithSideInfo(nn.Module):
    """``transform(features(x) ++ side_info(x))``: a transform that takes side-information,
    composed with the extractor it follows into one module from images. The side-info
    model always normalises with its running statistics, whatever mode the whole module is
    evaluated in: that is how the stored vectors the transform was fitted on were made
    (one image's vector never depends on its batch)."""

    def __init__(self, features: nn.Module, side_info: nn.Module, transform: nn.Module) -> None:
        super().__init__()
        self.features, self.side_info, self.transform = features, side_info, transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from partsbin.parts.batchnorm import evaluating

        with evaluating(self.side_info, "running"):
            side = self.side_info(x)
        return self.transform(with_side_info(self.features(x), side))


class SideInfoConfig(ArchConfig):
    in_chans: int = Field(default=1, ge=1, le=256)
    width: int = Field(default=8, ge=1, le=256)
    dim: int = Field(default=16, ge=1, le=4096, description="the side-information vector's length")


@register("side_info", SideInfoConfig)
def side_info(in_chans: int = 1, width: int = 8, dim: int = 16, split: str = "embed") -> SplitNetwork:
    """A small network from an image to a low-dimensional vector (N, dim, 1, 1): FCT's
    side-information, stored beside each old embedding."""
    from partsbin.parts.archs._layers import conv_bn

    net = OrderedDict(
        stem=conv_bn(in_chans, width),
        stage1=conv_bn(width, 2 * width, stride=2),
        stage2=conv_bn(2 * width, 4 * width, stride=2),
        pool=nn.AdaptiveAvgPool2d(1),
        embed=nn.Conv2d(4 * width, dim, 1),
        out=nn.Identity(),
    )
    info = [
        FeatureInfo("stem", width, 1),
        FeatureInfo("stage1", 2 * width, 2),
        FeatureInfo("stage2", 4 * width, 4),
        FeatureInfo("pool", 4 * width, POOLED),
        FeatureInfo("embed", dim, POOLED),
        FeatureInfo("out", dim, POOLED),
    ]
    return SplitNetwork(net, info, split, split_points=("embed",))
