"""Path and query parameters, typed once with their bounds.

Every integer that reaches the database is bounded (SQLite and PostgreSQL ``bigint`` stop
at 2^63-1; a larger value raised ``OverflowError`` deep in the driver), and the bound the
document states is :data:`JSON_INT_MAX`, which JSON carries exactly. Digits are ASCII
digits (``'²'.isdigit()`` is true, ``int('²')`` fails), and names, refs and digests carry
their pattern into the OpenAPI document while a bad one is still answered with the name
rules (``invalid_name``, see ``registry/errors.py``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, Field
from starlette.convertors import Convertor, register_url_convertor

from partsbin.parts.names import DIGEST_PATTERN, INT64_MAX, PART_SCHEMA_PATTERN, parse_digest, validate_part

__all__ = [
    "INT64_MAX",
    "JSON_INT_MAX",
    "REF_PATTERN",
    "RefStr",
    "RefFilter",
    "DigestFilter",
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

#: The largest integer a JSON number holds exactly (RFC 8259 section 6: readers parse
#: numbers as IEEE doubles), and the bound of every id, version, size and cursor the API
#: takes. 2^63-1, what the columns hold, rounds up to 2^63 as a double: a document stating
#: it lets a client send 2^63 and more, which the route then refuses. Ids and versions
#: count up from 1, so none ever reaches either bound.
JSON_INT_MAX = 2**53 - 1

_PART_RE = r"[a-z0-9][a-z0-9._-]{0,63}"
#: What ``parse_ref`` takes, in JSON Schema (ECMA-262): ``ns/name``, ``ns/name@VERSION``,
#: ``ns/name:ALIAS`` or ``sha256:HEX`` (no '..' anywhere, no reserved namespace; versions
#: of up to 18 digits, far past any version a registry holds).
REF_PATTERN = (
    rf"^(sha256:[0-9a-f]{{64}}|(?!by-digest/)(?!.*\.\.){_PART_RE}/{_PART_RE}(@[1-9][0-9]{{0,17}}|:{_PART_RE})?)$"
)


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
VersionPath = Annotated[int, Path(ge=1, le=JSON_INT_MAX, description="version number, from 1")]
DigestPath = Annotated[
    str,
    Path(
        description="sha256 of the file: 64 hex digits, optionally after 'sha256:'",
        json_schema_extra={"pattern": DIGEST_PATTERN},
    ),
    AfterValidator(_digest),
]
IdPath = Annotated[int, Path(ge=1, le=JSON_INT_MAX)]
IdCursor = Annotated[int | None, Query(ge=0, le=JSON_INT_MAX, description="the next_cursor of the previous page")]
Limit = Annotated[int | None, Query(ge=1, le=1000, description="page size (default PARTSBIN_PAGE_SIZE)")]
#: A namespace inside a request body.
NamespaceStr = Annotated[
    str, Field(max_length=64, json_schema_extra={"pattern": PART_SCHEMA_PATTERN}), _part("namespace")
]


def _or_empty(pattern: str) -> str:
    return f"^(|{pattern.removeprefix('^').removesuffix('$')})$"


#: A ref (``ns/name@3``...) in a query or a body: its pattern in the document; the route
#: parses it (``parse_ref``), so a bad one is answered with the name rules.
RefStr = Annotated[str, Field(json_schema_extra={"pattern": REF_PATTERN})]
#: A ref that filters a list: empty is no filter (``?head=``), so the pattern takes it.
RefFilter = Annotated[str, Field(json_schema_extra={"pattern": _or_empty(REF_PATTERN)})]
#: A digest (``sha256:HEX`` or ``HEX``) that filters a list, checked by the route as a ref
#: is; empty is no filter.
DigestFilter = Annotated[str, Field(json_schema_extra={"pattern": _or_empty(DIGEST_PATTERN)})]
