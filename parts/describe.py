"""Cards for the parts of a split network, with the feature interface filled in from the arch."""

from __future__ import annotations

from typing import Any

from partsbin.parts.archs import junction_of
from partsbin.parts.card import _PART_OF_ROLE, Card

__all__ = ["card_for"]


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
    part = _PART_OF_ROLE[role]
    channels, spatial = junction_of(arch, config, split, input_size)
    interface: dict[str, Any] = {"junction": {"channels": channels, "spatial": "any" if part == "head" else spatial}}
    if part in ("extractor", "full"):
        if input_size is None:
            raise ValueError(f"a card of role {role!r} needs input_size")
        interface["input"] = {
            "channels": int(config.get("in_chans", 3)),
            "size": input_size,
            "normalization": normalization,
        }
    if part in ("head", "full") and labels is not None:
        interface["output"] = {"labels": list(labels)}
    return Card.model_validate(
        {
            "name": name,
            "role": role,
            "arch": {"name": arch, "config": config, "part": part, "split": split},
            "interface": interface,
            **fields,
        }
    )
