"""Wide ResNet WRN-d-k (Zagoruyko & Komodakis 2016): depth 6n+4, widths 16k/32k/64k.

Pre-activation blocks as in the original; the final BatchNorm and ReLU belong to the
head, so the junction after a stage carries the raw residual sum.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator
from torch import nn

from partsbin.parts.archs._layers import LayerStack, classifier
from partsbin.parts.archs._registry import ArchConfig, SplitNetwork, register
from partsbin.parts.archs.resnet import MAX_CHANNELS, MAX_CLASSES


class WideResNetConfig(ArchConfig):
    # Zagoruyko & Komodakis go to WRN-40 and k=12; the bounds leave room beyond.
    depth: int = Field(default=28, ge=10, le=202, description="6n+4")
    widen: int = Field(default=10, ge=1, le=32)
    in_chans: int = Field(default=3, ge=1, le=256)
    num_classes: int = Field(default=10, ge=1, le=MAX_CLASSES)
    dropout: float = Field(default=0.0, ge=0, lt=1, strict=False, allow_inf_nan=False)
    junction_channels: int | None = Field(default=None, ge=1, le=MAX_CHANNELS)

    @field_validator("depth")
    @classmethod
    def _six_n_plus_four(cls, v: int) -> int:
        if (v - 4) % 6:
            raise ValueError(f"depth must be 6n+4 with n >= 1 (16, 22, 28, 40...), got {v}")
        return v


class PreActBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.act = nn.ReLU(inplace=False)
        self.shortcut = (
            nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False) if stride != 1 or in_chs != out_chs else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.act(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(self.drop(self.act(self.bn2(y))))
        return y + (self.shortcut(o) if self.shortcut is not None else x)


@register("wide_resnet", WideResNetConfig)
def wide_resnet(
    depth: int = 28,
    widen: int = 10,
    in_chans: int = 3,
    num_classes: int = 10,
    dropout: float = 0.0,
    split: str = "stage2",
    junction_channels: int | None = None,
) -> SplitNetwork:
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"depth must be 6n+4 with n >= 1 (16, 22, 28, 40...), got {depth}")
    n = (depth - 4) // 6
    widths = (16 * widen, 32 * widen, 64 * widen)
    stack = LayerStack(split, junction_channels)
    chs = stack.add("stem", nn.Conv2d(in_chans, 16, 3, padding=1, bias=False), 16, 1)
    for i, (w, stride) in enumerate(zip(widths, (1, 2, 2), strict=False), start=1):
        blocks = nn.Sequential(
            *(PreActBlock(chs if b == 0 else w, w, stride if b == 0 else 1, dropout) for b in range(n))
        )
        chs = stack.add(f"stage{i}", blocks, w, 2 ** (i - 1))
    chs = stack.add("final", nn.Sequential(nn.BatchNorm2d(chs), nn.ReLU(inplace=True)), chs, 4)
    for name, module in classifier(chs, num_classes).items():
        stack.add(name, module, num_classes if name == "fc" else chs, 4)
    return SplitNetwork(stack.layers, stack.info, split, split_points=("stage1", "stage2"))
