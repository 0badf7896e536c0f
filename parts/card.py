"""The component card: what a stored ``.safetensors`` file is and how it was made.

The card travels twice: as JSON beside the file, and inside the file's
``__metadata__`` under :data:`CARD_METADATA_KEY`, so that a file is self-describing
outside the registry. The embedded copy leaves out what the registry assigns
(:data:`REGISTRY_FIELDS`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    field_validator,
    model_serializer,
    model_validator,
)

from partsbin.parts.names import InvalidName, parse_digest, parse_ref, validate_name
from partsbin.parts.roles import Role  # one list of roles, shared with the CLI

__all__ = [
    "CARD_METADATA_KEY",
    "REGISTRY_FIELDS",
    "Role",
    "ArchSpec",
    "InputSpec",
    "Junction",
    "Interface",
    "Compat",
    "Dataset",
    "Provenance",
    "Card",
    "Bridge",
    "BRIDGE_ROLES",
    "bridge_space",
    "junctions_compatible",
]

CARD_METADATA_KEY = "partsbin.card"
REGISTRY_FIELDS = frozenset({"version", "digest", "size"})


HEAD_ROLES: frozenset[str] = frozenset({"head", "aux-rp", "aux-dcc"})
AUX_ROLES: frozenset[str] = frozenset({"aux-rp", "aux-dcc"})
#: Bridges join parts trained apart (DESIGN.md, "Using compatible parts"): their card names both ends.
BRIDGE_ROLES: frozenset[str] = frozenset({"adapter", "transform"})
_PART_OF_ROLE = {
    "extractor": "extractor",
    "head": "head",
    "aux-rp": "head",
    "aux-dcc": "head",
    "init": "full",
    "adapter": "full",
    "transform": "full",
    "side-info": "full",
}


class _Model(BaseModel):
    # Unknown keys are refused rather than dropped: a typo in a card must not vanish
    # silently into a registry that then claims the card was accepted.
    model_config = ConfigDict(extra="forbid")


class ArchProvider(_Model):
    """The distribution whose code builds the arch (``partsbin``, or a plugin's): what a
    registry or client without the arch must install (README: "Your own architectures")."""

    distribution: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$",
        description="as pip names it",
    )
    version: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")


class ArchSpec(_Model):
    """Enough to rebuild the module from code: ``partsbin.parts.archs.build_part(name, config, part, split)``."""

    name: str
    config: dict[str, Any] = Field(default_factory=dict)
    part: Literal["extractor", "head", "full"]
    split: str
    provider: ArchProvider | None = Field(default=None, description="the distribution that provides the arch")

    @field_validator("config")
    @classmethod
    def _no_split_in_config(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "split" in v:
            raise ValueError("put the split point in arch.split, not in arch.config")
        return v

    @model_serializer(mode="wrap")
    def _without_empty_provider(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Cards made before providers were recorded keep their exact JSON, and so the
        # bytes embedded in their files.
        out = handler(self)
        if isinstance(out, dict) and out.get("provider", 0) is None:
            del out["provider"]
        return out


class Normalization(_Model):
    mean: list[float]
    std: list[float]


# Bounds far beyond any image model, and inside every database integer column.
MAX_SIZE = 65536
MAX_CHANNELS = 1 << 20


class InputSpec(_Model):
    channels: int = Field(ge=1, le=MAX_CHANNELS)
    size: int = Field(ge=1, le=MAX_SIZE)
    normalization: Normalization | None = None


class Junction(_Model):
    """The feature interface where extractor meets head.

    ``layout`` is ``spatial`` (a CNN's N×C×H×W: ``channels`` C, ``spatial`` H = W) or
    ``tokens`` (a transformer's N×T×D: ``channels`` D, ``spatial`` the token count T,
    ``any`` for a head that takes any count). The two never meet without an adapter.
    """

    channels: int = Field(ge=1, le=MAX_CHANNELS)
    spatial: Annotated[int, Field(ge=1, le=MAX_SIZE)] | Literal["any"]
    layout: Literal["spatial", "tokens"] = "spatial"

    @model_serializer(mode="wrap")
    def _without_default_layout(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Spatial junctions keep the exact JSON (and so the bytes embedded in their
        # files) they had before token junctions existed.
        out = handler(self)
        if isinstance(out, dict) and out.get("layout") == "spatial":
            del out["layout"]
        return out


class OutputSpec(_Model):
    labels: list[str] = Field(min_length=1)

    @field_validator("labels")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("class labels must be unique")
        return v


class Interface(_Model):
    input: InputSpec | None = None
    junction: Junction
    output: OutputSpec | None = None


class Compat(_Model):
    anchors: list[str] = Field(default_factory=list, description="aux heads trained against, as 'sha256:HEX'")
    methods: list[Literal["RP", "DCC", "IIW"]] = Field(default_factory=list)
    scheme: Literal["joint", "incremental", "independent", "upper-bound"] | None = None
    init: str | None = Field(default=None, description="ref of the role 'init' component the weights started from")
    sibling: str | None = Field(default=None, description="for a head: the extractor it was trained with")

    @field_validator("anchors")
    @classmethod
    def _digests(cls, v: list[str]) -> list[str]:
        out = []
        for a in v:
            try:
                out.append("sha256:" + parse_digest(a))
            except InvalidName as exc:
                raise ValueError(f"compat.anchors: {exc}") from None
        if len(set(out)) != len(out):
            raise ValueError("compat.anchors lists the same digest twice")
        return out

    @field_validator("init", "sibling")
    @classmethod
    def _ref(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_ref(v)
            except InvalidName as exc:
                raise ValueError(str(exc)) from None
        return v


class Dataset(_Model):
    model_config = ConfigDict(extra="allow")
    name: str = Field(max_length=200)
    split: str | None = None
    classes: list[str] | None = None
    transform: list[Any] | dict[str, Any] | None = None


class Provenance(_Model):
    model_config = ConfigDict(extra="allow")
    dataset: Dataset | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    job: str | None = None
    libraries: dict[str, str] = Field(default_factory=dict)


class Bridge(_Model):
    """What a bridge joins, by digest: ``from`` an extractor's feature space ``to`` a head,
    a group (an aux head's digest: every head of the group), or another extractor's space.
    A transform with side-information also names the ``side-info`` model it takes."""

    # "from" is a Python keyword: the field is ``source`` in code and "from" in JSON, always.
    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)
    source: str = Field(alias="from", description="'sha256:HEX' of the extractor whose features go in")
    to: str = Field(description="'sha256:HEX' of the head, group anchor or extractor whose input space comes out")
    side_info: str | None = Field(default=None, description="'sha256:HEX' of the side-info model (FCT)")
    space: Literal["junction", "embedding"] | None = Field(
        default=None,
        description=(
            "what the bridge maps: 'junction' features at every spatial position (what a head takes: the bridge "
            "composes into a network), or globally pooled 'embedding's (an FCT transform for a stored gallery). "
            "Unset: 'junction' for an adapter, 'embedding' for a transform"
        ),
    )

    @field_validator("source", "to", "side_info")
    @classmethod
    def _digest(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return "sha256:" + parse_digest(v)
        except InvalidName as exc:
            raise ValueError(f"bridge: {exc}") from None


def bridge_space(role: str, bridge: Bridge | dict[str, Any]) -> str:
    """'junction' or 'embedding': what a bridge of ``role`` maps (its card's ``bridge.space``,
    else the role's: transforms were made for pooled embeddings before the field existed)."""
    space = bridge.get("space") if isinstance(bridge, dict) else bridge.space
    return space or ("embedding" if role == "transform" else "junction")


Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class Card(_Model):
    card_version: Literal[1] = 1
    name: str
    version: int | None = Field(default=None, description="assigned by the registry")
    digest: str | None = Field(default=None, description="sha256 of the file; assigned by the registry")
    size: int | None = Field(default=None, description="bytes; assigned by the registry")
    role: Role
    arch: ArchSpec
    interface: Interface
    compat: Compat = Field(default_factory=Compat)
    provenance: Provenance = Field(default_factory=Provenance)
    metrics: dict[str, Any] = Field(default_factory=dict)
    bridge: Bridge | None = Field(default=None, description="for an adapter or transform: what it joins")
    description: str = ""
    license: str | None = None
    # Bounded so that the registry can index them (one row per tag; ?tag= filters).
    tags: list[Tag] = Field(default_factory=list, max_length=64)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            validate_name(v)
        except InvalidName as exc:
            raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Card:
        want = _PART_OF_ROLE[self.role]
        if self.arch.part != want:
            raise ValueError(f"a component of role {self.role!r} must have arch.part {want!r}, not {self.arch.part!r}")
        if self.role in ("extractor", "init") and self.interface.input is None:
            raise ValueError(f"a component of role {self.role!r} must declare interface.input (channels, size)")
        if self.role in HEAD_ROLES and self.interface.output is None:
            raise ValueError(f"a component of role {self.role!r} must declare interface.output.labels")
        if (self.role in BRIDGE_ROLES) != (self.bridge is not None):
            raise ValueError(
                f"a component of role {self.role!r} must name what it joins in 'bridge' ({{from, to}})"
                if self.role in BRIDGE_ROLES
                else f"only an adapter or transform names a 'bridge', not a {self.role}"
            )
        if self.role == "extractor" and self.interface.junction.spatial == "any":
            raise ValueError("an extractor's junction has a fixed spatial size for its input size, not 'any'")
        return self

    @model_serializer(mode="wrap")
    def _without_empty_bridge(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Cards of the other roles keep the exact JSON (and so the bytes embedded in
        # their files) they had before bridges existed.
        out = handler(self)
        if isinstance(out, dict) and out.get("bridge", 0) is None:
            del out["bridge"]
        return out

    @property
    def labels(self) -> list[str]:
        """A head's class labels, in the order of its outputs."""
        if self.interface.output is None:
            raise ValueError(f"{self.name} is a {self.role}: it has no output labels")
        return self.interface.output.labels

    @property
    def namespace(self) -> str:
        return self.name.split("/")[0]

    @property
    def short_name(self) -> str:
        return self.name.split("/")[1]

    def embedded(self) -> dict[str, Any]:
        """The card as stored inside the file: without the registry-assigned fields."""
        return self.model_dump(mode="json", exclude=set(REGISTRY_FIELDS))

    def embedded_json(self) -> str:
        return json.dumps(self.embedded(), sort_keys=True, separators=(",", ":"))


def junctions_compatible(extractor: Junction, head: Junction) -> bool:
    """Equal layout and channels, and equal spatial size (token count) unless the head
    pools globally ('any')."""
    if extractor.layout != head.layout or extractor.channels != head.channels:
        return False
    return head.spatial == "any" or extractor.spatial == "any" or extractor.spatial == head.spatial
