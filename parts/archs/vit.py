"""A vision transformer (Dosovitskiy et al. 2021) in plain PyTorch, split after a block.

``patch_embed`` (a strided convolution that patchifies, then a learnt position embedding
and an optional class token) gives tokens (N, T, D); ``block1..blockN`` are pre-norm
transformer blocks; the head is the blocks after the split, then ``norm``, ``pool``
(mean over tokens, or the class token) and ``fc``. The junction is a token interface
(``FeatureInfo.layout == "tokens"``, ``num_chs`` = D, ``size`` = T). The head has no
position embedding, so it takes any number of tokens (its junction is ``any``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from partsbin.parts.archs._registry import ArchConfig, FeatureInfo, SplitNetwork, register

__all__ = ["ViTConfig", "vit", "PatchEmbed", "Block", "TokenPool"]

MAX_CLASSES = 100_000
# A globally pooled output has spatial size 1 whatever the input's (as in bridges.POOLED).
POOLED = 65536


class ViTConfig(ArchConfig):
    img_size: int = Field(default=32, ge=4, le=1024, description="side of the square input images, in pixels")
    patch_size: int = Field(default=4, ge=1, le=64, description="side of a patch; must divide img_size")
    dim: int = Field(default=64, ge=8, le=2048, description="token dimension")
    depth: int = Field(default=4, ge=2, le=48, description="transformer blocks")
    heads: int = Field(default=4, ge=1, le=64, description="attention heads; must divide dim")
    mlp_ratio: int = Field(default=2, ge=1, le=8, description="hidden width of each block's MLP, times dim")
    in_chans: int = Field(default=3, ge=1, le=256)
    num_classes: int = Field(default=10, ge=1, le=MAX_CLASSES)
    class_token: bool = Field(default=False, description="prepend a class token and pool it (else: mean of tokens)")

    @model_validator(mode="after")
    def _shapes(self) -> ViTConfig:
        if self.img_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} must divide img_size {self.img_size}")
        if (self.img_size // self.patch_size) ** 2 > 65536:
            raise ValueError("more than 65,536 patches: use a larger patch_size")
        if self.dim % self.heads:
            raise ValueError(f"heads {self.heads} must divide dim {self.dim}")
        return self


class PatchEmbed(nn.Module):
    """Images (N, C, H, W) to tokens (N, T, D), position embedding added."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, dim: int, class_token: bool) -> None:
        super().__init__()
        self.img_size = img_size
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)
        n = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        self.pos_embed = nn.Parameter(torch.randn(1, n + int(class_token), dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            # The position embedding is learnt for one grid: say so rather than fail on a shape.
            raise ValueError(f"this ViT takes {self.img_size}x{self.img_size} images, got {tuple(x.shape[-2:])}")
        t = self.proj(x).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            t = torch.cat([self.cls_token.expand(len(t), -1, -1), t], 1)
        return t + self.pos_embed


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-norm: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TokenPool(nn.Module):
    """(N, T, D) to (N, D): the class token (the first), or the mean over tokens."""

    def __init__(self, class_token: bool) -> None:
        super().__init__()
        self.class_token = class_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] if self.class_token else x.mean(1)


@register("vit", ViTConfig)
def vit(
    img_size: int = 32,
    patch_size: int = 4,
    dim: int = 64,
    depth: int = 4,
    heads: int = 4,
    mlp_ratio: int = 2,
    in_chans: int = 3,
    num_classes: int = 10,
    class_token: bool = False,
    split: str | None = None,
) -> SplitNetwork:
    cfg = ViTConfig(
        img_size=img_size,
        patch_size=patch_size,
        dim=dim,
        depth=depth,
        heads=heads,
        mlp_ratio=mlp_ratio,
        in_chans=in_chans,
        num_classes=num_classes,
        class_token=class_token,
    )
    tokens = (img_size // patch_size) ** 2 + int(class_token)
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        patch_embed=PatchEmbed(img_size, patch_size, in_chans, dim, class_token)
    )
    info = [FeatureInfo("patch_embed", dim, patch_size, "tokens", tokens)]
    for i in range(1, cfg.depth + 1):
        layers[f"block{i}"] = Block(dim, heads, mlp_ratio)
        info.append(FeatureInfo(f"block{i}", dim, patch_size, "tokens", tokens))
    layers["norm"] = nn.LayerNorm(dim)
    info.append(FeatureInfo("norm", dim, patch_size, "tokens", tokens))
    layers["pool"] = TokenPool(class_token)
    info.append(FeatureInfo("pool", dim, POOLED))
    layers["fc"] = nn.Linear(dim, num_classes)
    info.append(FeatureInfo("fc", num_classes, POOLED))
    split_points = tuple(f"block{i}" for i in range(1, depth))
    return SplitNetwork(layers, info, split or f"block{depth // 2}", split_points=split_points, input_size=img_size)
