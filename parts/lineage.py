"""Lineage: the relations a card names between a component and where it came from.

Relations are read from named card fields, never inferred (as the Hugging Face Hub's
``base_model_relation`` names them). :func:`relations_of` is the one place that maps
card fields to relations: the registry records them at publish time (so that "what came
from X" is an indexed lookup) and the web pages draw them. A new kind of relation is a
new entry in :data:`CARD_RELATIONS` and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["CARD_RELATIONS", "Relation", "relations_of"]

TargetKind = Literal["ref", "digest", "job"]

#: (card path, relation kind, what the field holds, how the page labels the edge)
CARD_RELATIONS: tuple[tuple[tuple[str, ...], str, TargetKind, str], ...] = (
    (("compat", "init"), "init", "ref", "initial weights (IIW)"),
    (("compat", "sibling"), "sibling", "ref", "trained with extractor"),
    (("provenance", "job"), "job", "job", "produced by job"),
    (("provenance", "adapted_from"), "adapted_from", "digest", "adapted from"),
    (("provenance", "updated_from"), "updated_from", "digest", "updated from"),
    (("provenance", "finetuned_from"), "finetuned_from", "digest", "fine-tuned from"),
    (("bridge", "from"), "bridge_from", "digest", "bridge from"),
    (("bridge", "to"), "bridge_to", "digest", "bridge to"),
)
LABELS = {kind: label for _path, kind, _target, label in CARD_RELATIONS}


@dataclass(frozen=True)
class Relation:
    """``kind``: one of the kinds of :data:`CARD_RELATIONS`; ``target``: the card's value
    as written (a ref, a ``sha256:`` digest or a job id); ``target_kind`` says which."""

    kind: str
    target: str
    target_kind: TargetKind

    @property
    def label(self) -> str:
        return LABELS[self.kind]


def _at(card: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = card
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def relations_of(card: Mapping[str, Any]) -> list[Relation]:
    """The relations a card (as stored: a JSON object) declares, in :data:`CARD_RELATIONS` order."""
    out = []
    for path, kind, target_kind, _label in CARD_RELATIONS:
        value = _at(card, path)
        if value is None or value == "":
            continue
        out.append(Relation(kind, str(value), target_kind))
    return out
