"""Checks on an upload before anything is stored (docs/architecture.md, "A component, from upload to assemble")."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.orm import Session

from partsbin.parts import jsonlimits
from partsbin.parts.card import (
    AUX_ROLES,
    CARD_METADATA_KEY,
    REGISTRY_FIELDS,
    Card,
    Junction,
    junctions_compatible,
)
from partsbin.parts.messages import describe_validation_error
from partsbin.parts.safetensors_format import SafetensorsError, check_tensors_match, read_header
from partsbin.registry.bridge_checks import check_bridge
from partsbin.registry.crud.components import find_by_digest
from partsbin.registry.errors import InvalidUpload

__all__ = ["UploadCheckFailed", "validate_upload", "MAX_CARD_BYTES"]

MAX_CARD_BYTES = 1024 * 1024


class UploadCheckFailed(InvalidUpload):
    """An upload check refused the file: the answer names the check in ``X-Upload-Check``
    (``/metrics`` counts refusals by it: ``partsbin_upload_rejections_total{reason=...}``)."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(detail, headers={"X-Upload-Check": check})


def _parse_card(text: str, where: str) -> dict:
    if len(text) > MAX_CARD_BYTES:
        raise UploadCheckFailed("card", f"the {where} is larger than {MAX_CARD_BYTES} bytes")
    try:
        data = jsonlimits.loads(text)
    except jsonlimits.JsonLimitError as exc:
        raise UploadCheckFailed(
            "card", f"the {where} is {exc}" if "valid JSON" in str(exc) else f"the {where}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise UploadCheckFailed("card", f"the {where} must be a JSON object")
    return data


def _card_model(data: dict) -> Card:
    try:
        return Card.model_validate(data)
    except ValidationError as exc:
        raise UploadCheckFailed("card", "invalid card: " + describe_validation_error(exc)) from None


def _check_provider(card: Card) -> None:
    """The card's arch is installed here, from the distribution the card names (if it names one)."""
    from partsbin.parts.archs import Provider, list_archs, missing_arch_message, provider_of

    named = card.arch.provider
    if card.arch.name not in list_archs():
        wanted = None if named is None else Provider(named.distribution, named.version)
        raise UploadCheckFailed("arch", missing_arch_message(card.arch.name, wanted))
    here = provider_of(card.arch.name)
    # Same distribution, any version: the tensors are checked against what this version
    # builds next. Another distribution's arch of the same name is other code.
    if named is not None and here is not None and _normalized(named.distribution) != _normalized(here.distribution):
        raise UploadCheckFailed(
            "arch",
            f"the card's arch {card.arch.name!r} comes from the distribution {named.distribution!r}, but this "
            f"registry's {card.arch.name!r} comes from {here.distribution!r} {here.version}: they are different code",
        )


def _normalized(distribution: str) -> str:
    # PEP 503: pip treats runs of '-', '_' and '.' alike, in any case.
    return re.sub(r"[-_.]+", "-", distribution).lower()


def validate_upload(*, session: Session, path: Path, size: int, form_card: str | None, max_header_bytes: int) -> Card:
    """Return the checked card, or raise :class:`InvalidUpload` saying what to fix."""
    with path.open("rb") as fp:
        try:
            header = read_header(fp, size, max_header_bytes)
        except SafetensorsError as exc:
            raise UploadCheckFailed("safetensors", f"not a valid safetensors file: {exc}") from None

    embedded = header.metadata.get(CARD_METADATA_KEY)
    if form_card is None and embedded is None:
        raise UploadCheckFailed(
            "card", f"no card: send the form field 'card' or embed it in the file's __metadata__[{CARD_METADATA_KEY!r}]"
        )
    form = _parse_card(form_card, "card field") if form_card is not None else None
    inner = (
        _parse_card(embedded, f"card embedded in __metadata__[{CARD_METADATA_KEY!r}]") if embedded is not None else None
    )
    if form is not None and inner is not None:
        # The registry-assigned fields may be present in the form (a card read back from
        # the API); everything else must agree after validation fills in defaults.
        a = _card_model({k: v for k, v in form.items() if k not in REGISTRY_FIELDS}).embedded()
        b = _card_model({k: v for k, v in inner.items() if k not in REGISTRY_FIELDS}).embedded()
        if a != b:
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise UploadCheckFailed(
                "card", f"the card field and the card embedded in the file disagree on: {', '.join(diff)}"
            )
    data = {k: v for k, v in (form if form is not None else inner).items() if k not in REGISTRY_FIELDS}  # type: ignore[union-attr]
    card = _card_model(data)

    # Imported here: the architectures bring PyTorch, seconds that `partsbin serve`'s
    # start does not wait for (registry/main.py loads them in the background).
    from partsbin.parts.archs import ArchError, junction_of, part_layout

    _check_provider(card)
    try:
        layout = part_layout(card.arch.name, card.arch.config, card.arch.part, card.arch.split)
        channels, spatial = junction_of(
            card.arch.name,
            card.arch.config,
            card.arch.split,
            card.interface.input.size if card.interface.input else None,
        )
    except (ArchError, ValueError) as exc:
        raise UploadCheckFailed("arch", f"card arch cannot be built: {exc}") from None
    try:
        check_tensors_match(header, layout.tensors)
    except SafetensorsError as exc:
        raise UploadCheckFailed("tensors", str(exc)) from None

    declared = card.interface.junction
    expected_spatial: int | str = "any" if card.arch.part == "head" else spatial  # type: ignore[assignment]
    if (
        declared.channels != channels
        or declared.layout != layout.junction.layout
        or (card.arch.part != "head" and declared.spatial != expected_spatial)
    ):
        raise UploadCheckFailed(
            "junction",
            f"interface.junction {declared.model_dump()} does not match the arch, which gives "
            f"channels={channels}, spatial={expected_spatial!r}, layout={layout.junction.layout!r}",
        )

    for anchor in card.compat.anchors:
        hex_ = anchor.removeprefix("sha256:")
        found = find_by_digest(session, hex_)
        if found is None:
            raise UploadCheckFailed(
                "anchor", f"compat.anchors names {anchor}, which is not in this registry: publish the aux head first"
            )
        if found.role not in AUX_ROLES:
            raise UploadCheckFailed(
                "anchor", f"compat.anchors names {anchor} ({found.ref}), which is a {found.role}, not an aux head"
            )
        anchor_junction = Junction.model_validate(found.card["interface"]["junction"])
        if card.arch.part == "head":
            ok = anchor_junction.channels == declared.channels and anchor_junction.layout == declared.layout
        else:
            ok = junctions_compatible(declared, anchor_junction)
        if not ok:
            raise UploadCheckFailed(
                "anchor",
                f"feature interface {declared.model_dump()} does not meet anchor {anchor} ({found.ref}), "
                f"which takes {anchor_junction.model_dump()}",
            )
    check_bridge(session, card, UploadCheckFailed)
    return card
