"""CIFAR-style ResNet (He et al. 2016, §4.2): depth 6n+2, three stages of n basic blocks.

The paper analyses ResNet-56 split after the second stage. Shortcuts that change
shape use a 1x1 projection (option B) rather than zero padding (option A): it is the
form every framework ships and costs <1% more parameters.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator
from torch import nn

from partsbin.parts.archs._layers import LayerStack, classifier, conv_bn
from partsbin.parts.archs._registry import ArchConfig, SplitNetwork, register

# Bounds: He et al. go to ResNet-1202; channel and class counts far beyond any use.
MAX_CLASSES = 100_000
MAX_CHANNELS = 8192


class ResNetConfig(ArchConfig):
    depth: int = Field(default=56, ge=8, le=1202, description="6n+2")
    width: int = Field(default=16, ge=1, le=1024, description="channels of the first stage")
    in_chans: int = Field(default=3, ge=1, le=256)
    num_classes: int = Field(default=10, ge=1, le=MAX_CLASSES)
    junction_channels: int | None = Field(default=None, ge=1, le=MAX_CHANNELS)

    @field_validator("depth")
    @classmethod
    def _six_n_plus_two(cls, v: int) -> int:
        if (v - 2) % 6:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110...), got {v}")
        return v


class BasicBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_chs, out_chs, stride=stride)
        self.conv2 = conv_bn(out_chs, out_chs, relu=False)
        self.shortcut = (
            conv_bn(in_chs, out_chs, kernel=1, stride=stride, relu=False)
            if stride != 1 or in_chs != out_chs
            else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


def _stage(in_chs: int, out_chs: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        *(BasicBlock(in_chs if i == 0 else out_chs, out_chs, stride if i == 0 else 1) for i in range(blocks))
    )


@register("resnet_cifar", ResNetConfig)
def resnet_cifar(
    depth: int = 56,
    width: int = 16,
    in_chans: int = 3,
    num_classes: int = 10,
    split: str = "stage2",
    junction_channels: int | None = None,
) -> SplitNetwork:
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110...), got {depth}")
    n = (depth - 2) // 6
    stack = LayerStack(split, junction_channels)
    chs = stack.add("stem", conv_bn(in_chans, width), width, 1)
    chs = stack.add("stage1", _stage(chs, width, n, 1), width, 1)
    chs = stack.add("stage2", _stage(chs, 2 * width, n, 2), 2 * width, 2)
    chs = stack.add("stage3", _stage(chs, 4 * width, n, 2), 4 * width, 4)
    for name, module in classifier(chs, num_classes).items():
        stack.add(name, module, num_classes if name == "fc" else chs, 4)
    # After stage 3 the head is global pooling and the linear classifier only: the latest
    # split the paper's split-point analysis can ask about.
    return SplitNetwork(stack.layers, stack.info, split, split_points=("stage1", "stage2", "stage3"))
