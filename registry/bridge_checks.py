"""Upload checks of a bridge's card: both ends (and its side-info model) are stored here,
are of the right kinds, and meet the bridge's own interfaces (DESIGN.md, "Bridges")."""

from __future__ import annotations

from sqlalchemy.orm import Session

from partsbin.parts.card import AUX_ROLES, HEAD_ROLES, Card, Junction, bridge_space
from partsbin.registry.crud.components import find_by_digest
from partsbin.registry.db.models import Component

__all__ = ["check_bridge"]


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def check_bridge(session: Session, card: Card, fail: type[Exception]) -> None:
    """Raise ``fail("bridge", detail)`` unless ``card.bridge`` names existing, fitting endpoints."""
    bridge = card.bridge
    if bridge is None:
        return

    def find(field: str, digest: str, roles: set[str], what: str) -> Component:
        found = find_by_digest(session, digest.removeprefix("sha256:"))
        if found is None:
            raise fail("bridge", f"bridge.{field} names {digest}, which is not in this registry: publish {what} first")
        if found.role not in roles:
            raise fail("bridge", f"bridge.{field} names {digest} ({found.ref}), which is {_a(found.role)}, not {what}")
        return found

    source = find("from", bridge.source, {"extractor"}, "an extractor")
    out_roles = {"extractor", *HEAD_ROLES}
    target = find("to", bridge.to, out_roles, "a head, an aux head (a group) or an extractor")
    side = 0
    if bridge.side_info is not None:
        side_model = find("side_info", bridge.side_info, {"side-info"}, "a side-info model")
        side = int(side_model.card["interface"]["junction"]["channels"])

    src = Junction.model_validate(source.card["interface"]["junction"])
    given = card.interface.input
    space = bridge_space(card.role, bridge)
    # Imported here as in validation.py: the architectures bring PyTorch.
    from partsbin.parts.archs import ArchError, part_layout

    try:
        takes = part_layout(card.arch.name, card.arch.config, card.arch.part, card.arch.split).input_layout
    except ArchError as exc:
        raise fail("bridge", f"card arch cannot be built: {exc}") from None
    if takes != src.layout:
        raise fail(
            "bridge",
            f"the {card.role} ({card.arch.name}) takes {takes} features, but bridge.from {source.ref} gives "
            f"{src.layout} features: use an adapter from {src.layout} (tokens_to_spatial, spatial_to_tokens, "
            "token_stitch or stitch)",
        )
    if card.role == "adapter" and space != "junction":
        raise fail("bridge", "an adapter maps junction features: bridge.space must be 'junction' (or left out)")
    if card.role == "transform" and space == "junction" and (given is None or given.size != src.spatial):
        raise fail(
            "bridge",
            f"a transform of junction features takes them at {given.size if given else '?'}x"
            f"{given.size if given else '?'}, but bridge.from {source.ref} gives them at {src.spatial}x{src.spatial}",
        )
    if card.role == "transform":
        # FCT's transform is 1x1 convolutions: on pooled embeddings (+ side-information) or
        # on junction features at every position (sizes checked above), so only channels
        # are compared here.
        dst = Junction.model_validate(target.card["interface"]["junction"])
        takes_side = int(card.arch.config.get("side_chans", 0) or 0)
        if (
            given is None
            or given.channels != src.channels
            or takes_side != side
            or card.interface.junction.channels != dst.channels
        ):
            raise fail(
                "bridge",
                f"the transform takes {given.channels if given else '?'} channels (+ {takes_side} of side-information) "
                f"and gives {card.interface.junction.channels}; bridge.from {source.ref} gives {src.channels}, "
                f"bridge.side_info gives {side} and bridge.to {target.ref} takes {dst.channels}",
            )
        return
    if side:
        raise fail("bridge", "only a transform takes side-information (bridge.side_info)")
    if given is None or given.channels != src.channels or given.size != src.spatial:
        raise fail(
            "bridge",
            f"the {card.role} takes {given.channels if given else '?'} channels at {given.size if given else '?'}, "
            f"but bridge.from {source.ref} gives {src.channels} channels at {src.spatial}x{src.spatial}",
        )
    dst = Junction.model_validate(target.card["interface"]["junction"])
    mine = card.interface.junction
    spatial_ok = dst.spatial == "any" or target.role in AUX_ROLES or dst.spatial == mine.spatial
    # An adapter may change the layout (that is what the token bridges are for), but what it
    # gives must be laid out as its target takes it.
    if dst.channels != mine.channels or not spatial_ok or dst.layout != mine.layout:
        raise fail(
            "bridge",
            f"the {card.role} gives {mine.channels} channels at {mine.spatial} ({mine.layout}), but bridge.to "
            f"{target.ref} ({target.role}) takes {dst.channels} channels at {dst.spatial} ({dst.layout})",
        )
