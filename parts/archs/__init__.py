"""Architectures that split into a feature extractor and a task head.

Importing this package registers ``resnet_cifar``, ``wide_resnet``, ``stitch``,
``mobilenetv2_cifar``, ``vit`` and the token bridges; :func:`build` rebuilds any of them from a card's ``arch``.
"""

from partsbin.parts.archs import bridges, mobilenetv2, resnet, token_bridges, vit, wide_resnet  # noqa: F401  (registration side effect)
from partsbin.parts.archs._registry import (
    ArchConfig,
    ArchError,
    FeatureInfo,
    Layout,
    PartLayout,
    SplitNetwork,
    build,
    build_part,
    junction_layout,
    junction_of,
    list_archs,
    part_layout,
    register,
    validate_config,
)

__all__ = [
    "ArchConfig",
    "ArchError",
    "FeatureInfo",
    "SplitNetwork",
    "build",
    "build_part",
    "junction_of",
    "junction_layout",
    "Layout",
    "list_archs",
    "part_layout",
    "PartLayout",
    "register",
    "validate_config",
]
