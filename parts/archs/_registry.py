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
import inspect
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
    "ArchInfo",
    "Provider",
    "FeatureInfo",
    "SplitNetwork",
    "register",
    "validate_config",
    "build",
    "build_part",
    "list_archs",
    "arch_info",
    "provider_of",
    "missing_arch_message",
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


@dataclass(frozen=True)
class Provider:
    """The distribution whose code registered an architecture. A card records it, so that
    a registry or a client without the architecture can say what to install."""

    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version}"


_BUILDERS: dict[str, Callable[..., SplitNetwork]] = {}
_CONFIGS: dict[str, type[ArchConfig]] = {}
_PROVIDERS: dict[str, Provider | None] = {}
# The plugin whose entry point is being loaded (parts/archs/_plugins.py): what it
# registers is recorded as its distribution's.
_LOADING: list[Provider | None] = []


def _provider_for(fn: Callable[..., SplitNetwork]) -> Provider | None:
    if _LOADING:
        return _LOADING[-1]
    if fn.__module__.startswith("partsbin."):
        from partsbin import __version__

        return Provider("partsbin", __version__)
    from partsbin.parts.archs._plugins import provider_of_module

    return provider_of_module(fn.__module__)  # None: registered by a script or a test


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
        _PROVIDERS[name] = _provider_for(fn)
        return fn

    return decorator


def _unregister(names: set[str]) -> None:
    """Take back what a plugin that then failed had registered: a plugin loads whole or not at all."""
    for name in names:
        _BUILDERS.pop(name, None)
        _CONFIGS.pop(name, None)
        _PROVIDERS.pop(name, None)
    _default_network.cache_clear()


def validate_config(name: str, config: Mapping[str, Any]) -> None:
    """Raise :class:`ArchError` naming each bad key of ``config`` for architecture ``name``."""
    if name not in _CONFIGS:
        raise ArchError(missing_arch_message(name, None))
    if not isinstance(config, Mapping):
        raise ArchError(f"the configuration of {name!r} must be an object")
    try:
        _CONFIGS[name].model_validate(dict(config))
    except ValidationError as exc:
        raise ArchError(f"bad configuration for {name!r}: {describe_validation_error(exc, 'config')}") from None


def list_archs() -> list[str]:
    return sorted(_BUILDERS)


def provider_of(name: str) -> Provider | None:
    """The distribution that registered ``name`` (``None``: a script or a test did)."""
    if name not in _BUILDERS:
        raise ArchError(missing_arch_message(name, None))
    return _PROVIDERS[name]


def missing_arch_message(name: str, provider: Provider | None) -> str:
    """What to do about a card or spec naming an architecture not registered here."""
    if provider is not None:
        return (
            f"unknown architecture {name!r}: it comes from the distribution {provider.distribution!r} "
            f"(version {provider.version}), which is not installed here; install it with "
            f"`pip install {provider.distribution}=={provider.version}` and restart (the registry, its workers "
            "and partsbin's clients load plugins when they start)"
        )
    return (
        f"unknown architecture {name!r}; installed here: {', '.join(list_archs())} "
        "(an architecture from a plugin needs its distribution installed: see `partsbin archs`)"
    )


@dataclass(frozen=True)
class ArchInfo:
    """An architecture as data: who provides it, where it splits and what it accepts.

    ``split_points`` and ``default_split`` are those of the default configuration; both
    are ``None`` where the configuration has required fields (they may depend on them),
    except a default split the builder's signature names.
    """

    name: str
    distribution: str | None
    version: str | None
    split_points: tuple[str, ...] | None
    default_split: str | None
    config_schema: dict[str, Any]


def arch_info(name: str | None = None) -> list[ArchInfo]:
    """Every registered architecture (or only ``name``), sorted by name."""
    names = list_archs() if name is None else [name]
    out = []
    for n in names:
        provider = provider_of(n)
        net = _default_network(n)
        split_points: tuple[str, ...] | None = None
        default_split: str | None
        if net is not None:
            split_points, default_split = tuple(net.split_points), net.split
        else:
            param = inspect.signature(_BUILDERS[n]).parameters.get("split")
            default_split = param.default if param is not None and isinstance(param.default, str) else None
        out.append(
            ArchInfo(
                name=n,
                distribution=provider.distribution if provider else None,
                version=provider.version if provider else None,
                split_points=split_points,
                default_split=default_split,
                config_schema=_CONFIGS[n].model_json_schema(),
            )
        )
    return out


@functools.lru_cache(maxsize=64)
def _default_network(name: str) -> SplitNetwork | None:
    try:
        _CONFIGS[name].model_validate({})
    except ValidationError:
        return None
    try:
        return build(name, device="meta")
    except Exception:  # noqa: BLE001 - a plugin's builder may raise anything; its listing must not
        return None


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
