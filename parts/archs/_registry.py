"""Registry of splittable architectures, in the manner of timm's ``register_model``.

A builder returns a :class:`SplitNetwork`: the whole network as a sequence of named
layers plus the name of the layer after which it is split. Slicing the sequence at
that point gives the feature extractor and the task head; their composition is the
network, so ``head(extractor(x)) == network(x)`` exactly.

Each layer's output is described as data (``num_chs`` and ``reduction``, as timm's
feature info), so the registry and ``assemble`` compare feature interfaces without
running a model. A layer's output is laid out ``spatial`` (N, C, H, W: a CNN's) or as
``tokens`` (N, T, D: a vision transformer's, ``num_chs`` = D); a layout-changing bridge
also says what it takes (``SplitNetwork.input_layout``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from partsbin.parts.messages import describe_validation_error

__all__ = [
    "ArchError",
    "ArchConfig",
    "FeatureInfo",
    "SplitNetwork",
    "register",
    "validate_config",
    "build",
    "build_part",
    "list_archs",
    "junction_of",
    "junction_layout",
    "Layout",
    "PartLayout",
    "part_layout",
]

Part = Literal["extractor", "head", "full"]
Layout = Literal["spatial", "tokens"]


class ArchError(ValueError):
    """An unknown architecture, split point or configuration."""


@dataclass(frozen=True)
class FeatureInfo:
    """A layer's output: ``num_chs`` channels (a token's dimension for ``tokens``) at
    ``reduction`` of the input's side; ``size``, when set, is the output's size whatever
    the input's (a token count fixed by a position embedding, or a bridge's fixed grid)."""

    name: str
    num_chs: int
    reduction: int
    layout: Layout = "spatial"
    size: int | None = None


class SplitNetwork(nn.Sequential):
    """A network as ordered named layers with a chosen split point."""

    def __init__(
        self,
        layers: OrderedDict[str, nn.Module],
        feature_info: list[FeatureInfo],
        split: str,
        split_points: tuple[str, ...],
        head_spatial_any: bool = True,
        input_layout: Layout = "spatial",
        input_size: int | None = None,
    ) -> None:
        super().__init__(layers)
        names = list(layers)
        if split not in split_points:
            raise ArchError(f"unknown split point {split!r}; this architecture splits at {', '.join(split_points)}")
        # A junction projection belongs to the extractor: it sits right after the split layer.
        self.split_index = names.index(split) + 1 + (names[names.index(split) + 1] == "junction")
        self.feature_info = feature_info
        self.split = split
        self.split_points = split_points
        self.head_spatial_any = head_spatial_any
        # What the first layer takes: images and CNN features are spatial; a bridge from a
        # transformer's junction takes tokens.
        self.input_layout = input_layout
        # Set where the network takes one input size only (a learnt position embedding).
        self.input_size = input_size

    def extractor(self) -> nn.Sequential:
        # nn.Sequential's own slicing would call this class's constructor; the parts are
        # plain Sequentials that share the layers (and so the parameters) of the network.
        return nn.Sequential(OrderedDict(list(self._modules.items())[: self.split_index]))

    def head(self) -> nn.Sequential:
        return nn.Sequential(OrderedDict(list(self._modules.items())[self.split_index :]))

    @property
    def junction_info(self) -> FeatureInfo:
        return self.feature_info[self.split_index - 1]


class ArchConfig(BaseModel):
    """The configuration a builder accepts, with bounds: every config is checked against
    its builder's model before anything is built (a card may come from anyone, and
    ``depth=10**6`` would build a million layers inside a request)."""

    model_config = ConfigDict(extra="forbid", strict=True)


_BUILDERS: dict[str, Callable[..., SplitNetwork]] = {}
_CONFIGS: dict[str, type[ArchConfig]] = {}


def register(
    name: str, config: type[ArchConfig]
) -> Callable[[Callable[..., SplitNetwork]], Callable[..., SplitNetwork]]:
    def decorator(fn: Callable[..., SplitNetwork]) -> Callable[..., SplitNetwork]:
        # timm only warns on a duplicate; a silent override here would rebuild the
        # wrong module from a stored card, so it is an error.
        if name in _BUILDERS:
            raise ArchError(f"architecture {name!r} is already registered")
        _BUILDERS[name] = fn
        _CONFIGS[name] = config
        return fn

    return decorator


def validate_config(name: str, config: Mapping[str, Any]) -> None:
    """Raise :class:`ArchError` naming each bad key of ``config`` for architecture ``name``."""
    if name not in _CONFIGS:
        raise ArchError(f"unknown architecture {name!r}; registered: {', '.join(list_archs())}")
    if not isinstance(config, Mapping):
        raise ArchError(f"the configuration of {name!r} must be an object")
    try:
        _CONFIGS[name].model_validate(dict(config))
    except ValidationError as exc:
        raise ArchError(f"bad configuration for {name!r}: {describe_validation_error(exc, 'config')}") from None


def list_archs() -> list[str]:
    return sorted(_BUILDERS)


def build(
    name: str, *, split: str | None = None, device: str | torch.device | None = None, **config: Any
) -> SplitNetwork:
    """Build the whole network ``name`` with ``config``, split at ``split`` (default: the builder's)."""
    validate_config(name, config)
    fn = _BUILDERS[name]
    kwargs = dict(config)
    if split is not None:
        kwargs["split"] = split
    with torch.device(device) if device is not None else contextlib.nullcontext():
        try:
            return fn(**kwargs)
        except TypeError as exc:
            raise ArchError(f"bad configuration for {name!r}: {exc}") from None


def build_part(
    name: str, config: dict[str, Any], part: Part, split: str | None, device: str | torch.device | None = None
) -> nn.Module:
    net = build(name, split=split, device=device, **config)
    if part == "full":
        return net
    if part == "extractor":
        return net.extractor()
    if part == "head":
        return net.head()
    raise ArchError(f"unknown part {part!r}: expected extractor, head or full")


@dataclass(frozen=True)
class PartLayout:
    """What a part of ``arch(config)`` holds, without its weights: the shape and dtype
    of every tensor of its state dict, and the feature interface at the split."""

    tensors: Mapping[str, tuple[tuple[int, ...], torch.dtype]]
    junction: FeatureInfo
    input_layout: Layout = "spatial"
    input_size: int | None = None


def part_layout(name: str, config: dict[str, Any], part: Part, split: str | None) -> PartLayout:
    """The layout of a part, from one build on the ``meta`` device per (arch, config, split).

    Even on ``meta`` a WRN-28-10 takes ~16 ms to construct; the registry checks every
    upload against its card's layout, and uploads of one architecture repeat.
    """
    layouts = _network_layouts(name, _config_key(name, config), split)
    if part not in layouts:
        raise ArchError(f"unknown part {part!r}: expected extractor, head or full")
    return layouts[part]


def _config_key(name: str, config: dict[str, Any]) -> str:
    validate_config(name, config)
    try:
        return json.dumps(config, sort_keys=True)
    except TypeError as exc:
        raise ArchError(f"bad configuration for {name!r}: {exc}") from None


@functools.lru_cache(maxsize=256)
def _network_layouts(name: str, config_json: str, split: str | None) -> dict[str, PartLayout]:
    net = build(name, split=split, device="meta", **json.loads(config_json))
    modules = {"full": net, "extractor": net.extractor(), "head": net.head()}
    return {
        part: PartLayout(
            tensors={k: (tuple(v.shape), v.dtype) for k, v in m.state_dict().items()},
            junction=net.junction_info,
            input_layout=net.input_layout,
            input_size=net.input_size,
        )
        for part, m in modules.items()
    }


def junction_of(name: str, config: dict[str, Any], split: str | None, input_size: int | None) -> tuple[int, int | None]:
    """Channels and spatial size at the junction (for tokens: the token count); spatial is
    None when no input size is given."""
    layout = part_layout(name, config, "full", split)
    info = layout.junction
    if input_size is not None and layout.input_size is not None and input_size != layout.input_size:
        raise ArchError(f"{name} with this config takes inputs of size {layout.input_size} only, not {input_size}")
    if input_size is None:
        return info.num_chs, None
    return info.num_chs, info.size if info.size is not None else math.ceil(input_size / info.reduction)


def junction_layout(name: str, config: dict[str, Any], split: str | None) -> Layout:
    """'spatial' or 'tokens': how the junction of ``name(config)`` split at ``split`` is laid out."""
    return part_layout(name, config, "full", split).junction.layout
