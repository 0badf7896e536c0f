"""Architectures that split into a feature extractor and a task head.

Importing this package registers ``resnet_cifar``, ``wide_resnet``, ``stitch``,
``mobilenetv2_cifar``, ``vit`` and the token bridges, then the architectures of every
installed plugin (the ``partsbin.archs`` entry-point group, :mod:`partsbin.parts.archs._plugins`);
:func:`build` rebuilds any of them from a card's ``arch``.
"""

from partsbin.parts.archs import bridges, mobilenetv2, resnet, token_bridges, vit, wide_resnet  # noqa: F401  (registration side effect)
from partsbin.parts.archs._registry import (
    ArchConfig,
    ArchError,
    ArchInfo,
    FeatureInfo,
    Layout,
    PartLayout,
    Provider,
    SplitNetwork,
    arch_info,
    build,
    build_part,
    junction_layout,
    junction_of,
    list_archs,
    missing_arch_message,
    part_layout,
    provider_of,
    register,
    validate_config,
)

__all__ = [
    "ArchConfig",
    "ArchError",
    "ArchInfo",
    "FeatureInfo",
    "Provider",
    "SplitNetwork",
    "arch_info",
    "build",
    "build_part",
    "junction_of",
    "junction_layout",
    "Layout",
    "list_archs",
    "load_plugins",
    "missing_arch_message",
    "part_layout",
    "PartLayout",
    "provider_of",
    "register",
    "validate_config",
]

# Last: a plugin imports the names above from this package while it loads.
from partsbin.parts.archs._plugins import load_plugins

load_plugins()
