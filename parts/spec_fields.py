"""Field types the job specs share: a name part and a component reference, checked by the
rules of :mod:`partsbin.parts.names` so that every spec names a bad field the same way."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from partsbin.parts.names import InvalidName, parse_ref, validate_part

__all__ = ["PartName", "ComponentRef"]


def _part(value: str) -> str:
    try:
        return validate_part(value)
    except InvalidName as exc:
        # A plain ValueError: pydantic reports it as the field's error, message unchanged.
        raise ValueError(str(exc)) from None


def _ref(value: str) -> str:
    try:
        parse_ref(value)
    except InvalidName as exc:
        raise ValueError(str(exc)) from None
    return value


#: One part of ``namespace/name`` (a run name, a namespace).
PartName = Annotated[str, AfterValidator(_part)]
#: A reference to one stored component (``ns/name``, ``ns/name@3``, ``ns/name:alias``, ``sha256:…``).
ComponentRef = Annotated[str, AfterValidator(_ref)]
