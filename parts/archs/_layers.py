"""Small layers shared by the architectures."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from partsbin.parts.archs._registry import FeatureInfo


def conv_bn(in_chs: int, out_chs: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_chs, out_chs, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_chs),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def classifier(in_chs: int, num_classes: int) -> OrderedDict[str, nn.Module]:
    # Global pooling makes the head accept any spatial size at its input, which is
    # what lets extractors with different resolutions share one head (paper §5.2).
    return OrderedDict(pool=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), fc=nn.Linear(in_chs, num_classes))


class LayerStack:
    """Collects named layers and their feature info, inserting the junction projection."""

    def __init__(self, split: str, junction_channels: int | None) -> None:
        if junction_channels is not None and junction_channels < 1:
            raise ValueError("junction_channels must be a positive integer")
        self.split = split
        self.junction_channels = junction_channels
        self.layers: OrderedDict[str, nn.Module] = OrderedDict()
        self.info: list[FeatureInfo] = []

    def add(self, name: str, module: nn.Module, num_chs: int, reduction: int) -> int:
        """Append a layer; returns the channel count the next layer receives."""
        self.layers[name] = module
        self.info.append(FeatureInfo(name, num_chs, reduction))
        if name == self.split and self.junction_channels is not None:
            # §5.2: a 1x1 convolution maps each extractor to a fixed channel count so
            # that extractors of different widths meet one shared head.
            self.layers["junction"] = conv_bn(num_chs, self.junction_channels, kernel=1, relu=False)
            self.info.append(FeatureInfo("junction", self.junction_channels, reduction))
            return self.junction_channels
        return num_chs
