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
