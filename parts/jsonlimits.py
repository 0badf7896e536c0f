"""JSON from outside, parsed with limits: nesting depth and duplicate keys.

``json.loads`` recurses once per nesting level, so a document nested 10,000 levels deep
raises ``RecursionError``; one nested a few hundred levels deep parses, and fails later
wherever it is serialised again (pydantic and the database driver recurse too). Cards,
safetensors headers and free-form request fields are a handful of levels deep, so
anything deeper than :data:`MAX_DEPTH` is refused where it comes in. Duplicate keys are
refused too: ``json.loads`` silently keeps the last one, so a file would mean different
things to different readers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import AfterValidator

__all__ = ["MAX_DEPTH", "JsonLimitError", "loads", "check_depth", "JsonObject"]

MAX_DEPTH = 32


class JsonLimitError(ValueError):
    """Malformed JSON, or JSON beyond the limits; the message says which and where."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonLimitError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """Return ``value`` if its objects and arrays nest at most ``max_depth`` levels."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise JsonLimitError(f"nested more than {max_depth} levels deep")
        stack.extend((child, depth + 1) for child in children)
    return value


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text``; raise :class:`JsonLimitError` (a ``ValueError``) saying what is wrong."""
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise JsonLimitError(f"nested more than {max_depth} levels deep") from None
    except json.JSONDecodeError as exc:
        raise JsonLimitError(f"not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise JsonLimitError(f"not UTF-8: {exc}") from None
    return check_depth(value, max_depth)


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    return check_depth(value)


#: A free-form JSON object field of a request body, bounded in depth.
JsonObject = Annotated[dict[str, Any], AfterValidator(_bounded)]
