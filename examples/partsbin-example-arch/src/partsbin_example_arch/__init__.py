"""An example partsbin architecture plugin: ``example_cnn``, a small CNN.

Three 3×3 convolution blocks, global pooling and a linear classifier, split after
``block1`` or ``block2`` (the default). Installing this distribution is all it takes:
partsbin finds it through the ``partsbin.archs`` entry point in ``pyproject.toml``.
"""

from __future__ import annotations

from collections import OrderedDict

from pydantic import Field
from torch import nn

from partsbin.parts.archs import ArchConfig, FeatureInfo, SplitNetwork, register

__all__ = ["ExampleCNNConfig", "example_cnn"]


class ExampleCNNConfig(ArchConfig):
    # Bounds: a card may come from anyone, and the registry builds what it names (on the
    # meta device) to check an upload. in_chans and num_classes are set by the trainer.
    width: int = Field(default=16, ge=4, le=512, description="channels of the stem and block1; block2 has twice")
    in_chans: int = Field(default=3, ge=1, le=64)
    num_classes: int = Field(default=10, ge=1, le=100_000)


def _conv_bn(in_chs: int, out_chs: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.ReLU(inplace=True),
    )


@register("example_cnn", ExampleCNNConfig)
def example_cnn(width: int = 16, in_chans: int = 3, num_classes: int = 10, split: str = "block2") -> SplitNetwork:
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        stem=_conv_bn(in_chans, width, 1),
        block1=_conv_bn(width, width, 2),
        block2=_conv_bn(width, 2 * width, 2),
        # Global pooling lets the head take features of any spatial size.
        pool=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        fc=nn.Linear(2 * width, num_classes),
    )
    # Feature info as data: channels and reduction after each layer, so the registry
    # compares interfaces without running the network.
    info = [
        FeatureInfo("stem", width, 1),
        FeatureInfo("block1", width, 2),
        FeatureInfo("block2", 2 * width, 4),
        FeatureInfo("pool", 2 * width, 4),
        FeatureInfo("fc", num_classes, 4),
    ]
    return SplitNetwork(layers, info, split, split_points=("block1", "block2"))
