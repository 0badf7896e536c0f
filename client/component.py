"""``Component``: a stored component as the registry describes it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partsbin.client.errors import RegistryError, UsageError
from partsbin.parts.card import Card
from partsbin.parts.names import INT64_MAX, parse_digest, validate_name
from partsbin.parts.safetensors_format import load_state_dict

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["Component"]


@dataclass
class Component:
    """A stored component as the registry describes it; ``path`` is set once pulled."""

    ref: str
    name: str
    version: int
    digest: str
    size: int
    role: str
    yanked: bool
    card: Card
    raw: dict[str, Any]
    path: Path | None = None
    #: Set by ``push``: False when identical bytes were already published under this name.
    created: bool | None = None

    def __repr__(self) -> str:
        pulled = f", path={str(self.path)!r}" if self.path else ""
        return f"Component({self.ref!r}, role={self.role!r}, digest={self.digest[:19]!r}…, size={self.size}{pulled})"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Component:
        """Check, then take, the registry's description of a component.

        The digest, name and version become cache paths and checks, so each is
        validated here first: a broken or hostile registry cannot make the client
        write outside its cache, or verify a download against a digest it made up."""
        try:
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            name, version, size = data["name"], data["version"], data["size"]
            validate_name(name)
            if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= INT64_MAX:
                raise ValueError(f"version {version!r} is not an integer from 1")
            if not isinstance(data["digest"], str) or not data["digest"].startswith("sha256:"):
                raise ValueError(f"digest {data['digest']!r} is not 'sha256:' and 64 hex digits")
            parse_digest(data["digest"])
            if data["ref"] != f"{name}@{version}":
                raise ValueError(f"ref {data['ref']!r} does not name {name}@{version}")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError(f"size {size!r} is not a byte count")
            if not isinstance(data["role"], str) or not isinstance(data["yanked"], bool):
                raise ValueError("role or yanked has the wrong type")
            card = Card.model_validate(data["card"])
            if card.name != name:
                raise ValueError(f"the card names {card.name!r}, not {name!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(
                f"the registry sent an invalid component description, refused: {exc}", code="invalid_response"
            ) from None
        return cls(
            ref=data["ref"],
            name=name,
            version=version,
            digest=data["digest"],
            size=size,
            role=data["role"],
            yanked=data["yanked"],
            card=card,
            raw=data,
        )

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """The module this component's card describes, with its weights (``strict=True``)."""
        from partsbin.parts.archs import ArchError, Provider, build_part, list_archs, missing_arch_message

        if self.path is None:
            raise UsageError(f"{self.ref} is not pulled yet: use Registry.pull")
        a = self.card.arch
        if a.name not in list_archs():
            # The card names the distribution that provides its arch: say what to install.
            wanted = None if a.provider is None else Provider(a.provider.distribution, a.provider.version)
            raise ArchError(f"{self.ref}: {missing_arch_message(a.name, wanted)}")
        module = build_part(a.name, a.config, a.part, a.split)
        module.load_state_dict(load_state_dict(self.path), strict=True)
        return module.to(device)
