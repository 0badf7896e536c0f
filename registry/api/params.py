"""Path and query parameters, typed once with their bounds.

Every integer that reaches the database is bounded to what its column holds (SQLite and
PostgreSQL ``bigint`` stop at 2^63-1; a larger value raised ``OverflowError`` deep in
the driver), digits are ASCII digits (``'²'.isdigit()`` is true, ``int('²')`` fails), and
names carry their pattern into the OpenAPI document while a bad one is still answered
with the name rules (``invalid_name``, see ``registry/errors.py``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, Field
from starlette.convertors import Convertor, register_url_convertor

from partsbin.parts.names import DIGEST_PATTERN, INT64_MAX, PART_SCHEMA_PATTERN, parse_digest, validate_part

__all__ = [
    "INT64_MAX",
    "NamespacePath",
    "NamePath",
    "AliasPath",
    "VersionPath",
    "DigestPath",
    "IdPath",
    "IdCursor",
    "Limit",
    "NamespaceStr",
]


class _IdConvertor(Convertor[int]):
    """``{name:id}`` in a route path: 1 to 19 ASCII digits. Starlette's ``int`` takes any
    run of digits and then fails inside ``int()`` past 4,300 of them (a 500); here such
    a path simply matches no route. Whether the number is in range is the parameter's
    check (``IdPath``, ``VersionPath``), answered 422."""

    regex = "[0-9]{1,19}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", _IdConvertor())


def _part(what: str) -> AfterValidator:
    def check(value: str) -> str:
        return validate_part(value, what)

    return AfterValidator(check)


def _digest(value: str) -> str:
    return parse_digest(value)


NamespacePath = Annotated[
    str, Path(description="namespace", json_schema_extra={"pattern": PART_SCHEMA_PATTERN}), _part("namespace")
]
NamePath = Annotated[str, Path(description="name", json_schema_extra={"pattern": PART_SCHEMA_PATTERN}), _part("name")]
AliasPath = Annotated[
    str, Path(description="alias", json_schema_extra={"pattern": PART_SCHEMA_PATTERN}), _part("alias")
]
VersionPath = Annotated[int, Path(ge=1, le=INT64_MAX, description="version number, from 1")]
DigestPath = Annotated[
    str,
    Path(
        description="sha256 of the file: 64 hex digits, optionally after 'sha256:'",
        json_schema_extra={"pattern": DIGEST_PATTERN},
    ),
    AfterValidator(_digest),
]
IdPath = Annotated[int, Path(ge=1, le=INT64_MAX)]
IdCursor = Annotated[int | None, Query(ge=0, le=INT64_MAX, description="the next_cursor of the previous page")]
Limit = Annotated[int | None, Query(ge=1, le=1000, description="page size (default PARTSBIN_PAGE_SIZE)")]
#: A namespace inside a request body.
NamespaceStr = Annotated[
    str, Field(max_length=64, json_schema_extra={"pattern": PART_SCHEMA_PATTERN}), _part("namespace")
]
