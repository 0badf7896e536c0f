"""MobileNetV2 (Sandler et al. 2018), CIFAR variant: stride 1 in the stem and the
second group, so 32x32 inputs end at 4x4 rather than 1x1.

The paper (§5.2) splits after the 11th of the 17 inverted-residual blocks.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from partsbin.parts.archs._layers import LayerStack, classifier
from partsbin.parts.archs._registry import ArchConfig, SplitNetwork, register
from partsbin.parts.archs.resnet import MAX_CHANNELS, MAX_CLASSES


class MobileNetV2Config(ArchConfig):
    width_mult: float = Field(default=1.0, gt=0, le=8, strict=False, allow_inf_nan=False)
    in_chans: int = Field(default=3, ge=1, le=256)
    num_classes: int = Field(default=10, ge=1, le=MAX_CLASSES)
    junction_channels: int | None = Field(default=None, ge=1, le=MAX_CHANNELS)


# (expansion t, channels c, repeats n, first stride s) — Table 2 of the paper, with the
# CIFAR strides.
_CFG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _round(chs: float, divisor: int = 8) -> int:
    return max(divisor, int(chs + divisor / 2) // divisor * divisor)


def _cbr(in_chs: int, out_chs: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_chs, out_chs, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_chs),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_chs * expand
        layers: list[nn.Module] = [] if expand == 1 else [_cbr(in_chs, hidden, 1)]
        layers += [_cbr(hidden, hidden, 3, stride=stride, groups=hidden), _cbr(hidden, out_chs, 1, act=False)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


@register("mobilenetv2_cifar", MobileNetV2Config)
def mobilenetv2_cifar(
    width_mult: float = 1.0,
    in_chans: int = 3,
    num_classes: int = 10,
    split: str = "block11",
    junction_channels: int | None = None,
) -> SplitNetwork:
    stack = LayerStack(split, junction_channels)
    stem = _round(32 * width_mult)
    chs = stack.add("stem", _cbr(in_chans, stem, 3), stem, 1)
    reduction, index = 1, 0
    for t, c, n, s in _CFG:
        out = _round(c * width_mult)
        for i in range(n):
            index += 1
            stride = s if i == 0 else 1
            reduction *= stride
            chs = stack.add(f"block{index}", InvertedResidual(chs, out, stride, t), out, reduction)
    last = _round(1280 * max(1.0, width_mult))
    chs = stack.add("last", _cbr(chs, last, 1), last, reduction)
    for name, module in classifier(chs, num_classes).items():
        stack.add(name, module, num_classes if name == "fc" else chs, reduction)
    return SplitNetwork(stack.layers, stack.info, split, split_points=tuple(f"block{i}" for i in range(1, 18)))
