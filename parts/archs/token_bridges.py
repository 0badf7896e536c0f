"""Adapters between a token junction (a ViT's, N×T×D) and a spatial one (a CNN's, N×C×H×W).

Stored like ``stitch`` (``part: full``, split after their only layer) and trained by the
stitching job, which picks the one the two ends need:

- ``tokens_to_spatial``: drop the class token if there is one, lay the T patch tokens
  out on their √T×√T grid, a 1×1 convolution (+ BatchNorm) to the head's channels, and a
  bilinear resize where the head expects another grid size;
- ``spatial_to_tokens``: a bilinear resize to √T×√T where the head expects another token
  count, each position a token, a linear map (+ LayerNorm) to the head's dimension;
- ``token_stitch``: tokens to tokens of another dimension (a linear map + LayerNorm),
  the ``stitch`` of two transformers.

For a token end, a card's ``size`` (``interface.input.size``, ``junction.spatial``) is
the token count.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from partsbin.parts.archs._registry import ArchConfig, FeatureInfo, SplitNetwork, register

__all__ = [
    "TokensToSpatialConfig",
    "tokens_to_spatial",
    "SpatialToTokensConfig",
    "spatial_to_tokens",
    "TokenStitchConfig",
    "token_stitch",
]

MAX_CHANNELS = 8192
MAX_SIDE = 256


def _side(tokens: int, what: str) -> int:
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"{what} must be a square number of tokens (a √T×√T grid), got {tokens}")
    return side


class TokensToSpatialConfig(ArchConfig):
    in_chans: int = Field(ge=1, le=MAX_CHANNELS, description="token dimension of the extractor's junction")
    tokens: int = Field(ge=1, le=MAX_SIDE * MAX_SIDE + 1, description="tokens per image, the class token included")
    class_token: bool = Field(default=False, description="the first token is a class token (dropped)")
    out_chans: int = Field(ge=1, le=MAX_CHANNELS, description="channels of the junction the head takes")
    out_size: int | None = Field(default=None, ge=1, le=MAX_SIDE, description="grid side the head takes (default √T)")
    batchnorm: bool = Field(default=True, description="BatchNorm after the 1×1 convolution (as stitch)")

    @model_validator(mode="after")
    def _grid(self) -> TokensToSpatialConfig:
        _side(self.tokens - int(self.class_token), "tokens (less the class token)")
        return self


class _TokensToGrid(nn.Module):
    def __init__(self, class_token: bool, side: int, out_size: int, proj: nn.Module) -> None:
        super().__init__()
        self.class_token, self.side, self.out_size = class_token, side, out_size
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.class_token:
            x = x[:, 1:]
        grid = x.transpose(1, 2).reshape(len(x), x.shape[2], self.side, self.side)
        out: torch.Tensor = self.proj(grid)
        if self.out_size != self.side:
            out = F.interpolate(out, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False)
        return out


@register("tokens_to_spatial", TokensToSpatialConfig)
def tokens_to_spatial(
    in_chans: int,
    tokens: int,
    out_chans: int,
    class_token: bool = False,
    out_size: int | None = None,
    batchnorm: bool = True,
    split: str = "adapter",
) -> SplitNetwork:
    side = _side(tokens - int(class_token), "tokens (less the class token)")
    size = out_size or side
    proj: list[nn.Module] = [nn.Conv2d(in_chans, out_chans, 1, bias=not batchnorm)]
    if batchnorm:
        proj.append(nn.BatchNorm2d(out_chans))
    net = OrderedDict(adapter=_TokensToGrid(class_token, side, size, nn.Sequential(*proj)), out=nn.Identity())
    info = [FeatureInfo("adapter", out_chans, 1, size=size), FeatureInfo("out", out_chans, 1, size=size)]
    return SplitNetwork(net, info, split, split_points=("adapter",), input_layout="tokens", input_size=tokens)


class SpatialToTokensConfig(ArchConfig):
    in_chans: int = Field(ge=1, le=MAX_CHANNELS, description="channels of the extractor's junction")
    in_size: int = Field(ge=1, le=MAX_SIDE, description="its spatial side")
    out_dim: int = Field(ge=1, le=MAX_CHANNELS, description="token dimension the head takes")
    tokens: int | None = Field(
        default=None, ge=1, le=MAX_SIDE * MAX_SIDE, description="tokens to give (a square; default in_size²)"
    )

    @model_validator(mode="after")
    def _grid(self) -> SpatialToTokensConfig:
        if self.tokens is not None:
            _side(self.tokens, "tokens")
        return self


class _GridToTokens(nn.Module):
    def __init__(self, side: int, proj: nn.Module) -> None:
        super().__init__()
        self.side = side
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.side or x.shape[-2] != self.side:
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False)
        out: torch.Tensor = self.proj(x.flatten(2).transpose(1, 2))
        return out


@register("spatial_to_tokens", SpatialToTokensConfig)
def spatial_to_tokens(
    in_chans: int, in_size: int, out_dim: int, tokens: int | None = None, split: str = "adapter"
) -> SplitNetwork:
    side = _side(tokens, "tokens") if tokens is not None else in_size
    proj = nn.Sequential(nn.Linear(in_chans, out_dim), nn.LayerNorm(out_dim))
    net = OrderedDict(adapter=_GridToTokens(side, proj), out=nn.Identity())
    t = side * side
    info = [FeatureInfo("adapter", out_dim, 1, "tokens", t), FeatureInfo("out", out_dim, 1, "tokens", t)]
    return SplitNetwork(net, info, split, split_points=("adapter",), input_size=in_size)


class TokenStitchConfig(ArchConfig):
    in_chans: int = Field(ge=1, le=MAX_CHANNELS, description="token dimension of the extractor's junction")
    tokens: int = Field(ge=1, le=MAX_SIDE * MAX_SIDE + 1, description="tokens per image (kept as they are)")
    out_dim: int = Field(ge=1, le=MAX_CHANNELS, description="token dimension the head takes")


@register("token_stitch", TokenStitchConfig)
def token_stitch(in_chans: int, tokens: int, out_dim: int, split: str = "adapter") -> SplitNetwork:
    net = OrderedDict(adapter=nn.Sequential(nn.Linear(in_chans, out_dim), nn.LayerNorm(out_dim)), out=nn.Identity())
    info = [FeatureInfo("adapter", out_dim, 1, "tokens", tokens), FeatureInfo("out", out_dim, 1, "tokens", tokens)]
    return SplitNetwork(net, info, split, split_points=("adapter",), input_layout="tokens", input_size=tokens)
