"""Cards for the parts of a split network, with the feature interface filled in from the arch."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from partsbin.parts.archs import ArchError, junction_layout, junction_of, provider_of
from partsbin.parts.card import _PART_OF_ROLE, CARD_METADATA_KEY, Card
from partsbin.parts.errors import InvalidCard
from partsbin.parts.messages import describe_validation_error

if TYPE_CHECKING:
    import torch

__all__ = ["card_for", "save_component"]


def card_for(
    *,
    name: str,
    role: str,
    arch: str,
    config: dict[str, Any],
    split: str,
    input_size: int | None = None,
    labels: list[str] | None = None,
    normalization: dict[str, list[float]] | None = None,
    **fields: Any,
) -> Card:
    """A validated card for ``role`` of network ``arch(config)`` split at ``split``.

    Extractors and ``init`` components need ``input_size``; heads need ``labels``. Other
    card fields (``compat``, ``provenance``, ``metrics``, ``description``...) pass through.
    """
    if role not in _PART_OF_ROLE:
        raise InvalidCard(f"unknown role {role!r}: expected one of {', '.join(_PART_OF_ROLE)}")
    part = _PART_OF_ROLE[role]
    try:
        channels, spatial = junction_of(arch, config, split, input_size)
        layout = junction_layout(arch, config, split)
        provider = provider_of(arch)
    except ArchError as exc:
        raise InvalidCard(f"card: arch: {exc}") from None
    junction: dict[str, Any] = {"channels": channels, "spatial": "any" if part == "head" else spatial}
    if layout != "spatial":
        junction["layout"] = layout
    interface: dict[str, Any] = {"junction": junction}
    if part in ("extractor", "full"):
        if input_size is None:
            raise InvalidCard(f"a card of role {role!r} needs input_size (the images' side in pixels)")
        interface["input"] = {
            "channels": int(config.get("in_chans", 3)),
            "size": input_size,
            "normalization": normalization,
        }
    if part in ("head", "full") and labels is not None:
        interface["output"] = {"labels": list(labels)}
    try:
        return Card.model_validate(
            {
                "name": name,
                "role": role,
                "arch": {
                    "name": arch,
                    "config": config,
                    "part": part,
                    "split": split,
                    # What a registry or client without the arch must install to rebuild it.
                    "provider": None if provider is None else asdict(provider),
                },
                "interface": interface,
                **fields,
            }
        )
    except ValidationError as exc:
        raise InvalidCard(describe_validation_error(exc, "card")) from None


def save_component(module: torch.nn.Module, card: Card, path: str | Path) -> Path:
    """Write ``module``'s weights as a ``.safetensors`` file with ``card`` embedded in its
    header: a self-describing file for ``partsbin push FILE`` (or ``Registry.push(path)``).

    Returns:
        The path written.
    """
    from partsbin.parts.safetensors_format import save_state_dict

    path = Path(path)
    save_state_dict(module.state_dict(), path, {CARD_METADATA_KEY: card.embedded_json()})
    return path
