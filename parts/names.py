"""Component names and references.

A name is ``namespace/name``; each part matches :data:`PART_PATTERN`. A reference
(``ref``) picks one stored version:

=====================  =============================================
``ns/name``            latest version that is not yanked
``ns/name@3``          exactly version 3 (yanked versions included)
``ns/name:stable``     the version the alias points at
``sha256:<64 hex>``    the component whose file has this digest
=====================  =============================================
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal

from partsbin.parts.errors import PartsbinError

__all__ = [
    "PART_PATTERN",
    "PART_SCHEMA_PATTERN",
    "DIGEST_PATTERN",
    "INT64_MAX",
    "RESERVED_NAMESPACES",
    "InvalidName",
    "Ref",
    "validate_part",
    "validate_name",
    "parse_ref",
    "parse_digest",
    "shared_prefix",
]

PART_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_PART_RE = re.compile(PART_PATTERN)
#: The same rule with the '..' exclusion, for JSON Schema (ECMA-262 regular expressions).
PART_SCHEMA_PATTERN = r"^(?!.*\.\.)[a-z0-9][a-z0-9._-]{0,63}$"
DIGEST_PATTERN = r"^(sha256:)?[0-9a-f]{64}$"
#: The largest integer a database column of the registry holds (a version, an id).
INT64_MAX = 2**63 - 1
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
# `by-digest` is a path segment of the API (/components/by-digest/{hex}); a namespace
# of that name would make its components unreachable.
RESERVED_NAMESPACES = frozenset({"by-digest"})


class InvalidName(PartsbinError, ValueError):
    """A name, alias or reference that does not follow the rules above."""


def validate_part(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not _PART_RE.fullmatch(value):
        shown = value.encode("unicode_escape").decode("ascii") if isinstance(value, str) else repr(value)
        raise InvalidName(
            f"invalid {what} {shown!r}: use 1-64 characters from a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit (no '/', '..', upper case or control characters)"
        )
    if ".." in value:
        raise InvalidName(f"invalid {what} {value!r}: '..' is not allowed")
    return value


def validate_name(full: str) -> tuple[str, str]:
    """Split and check ``namespace/name``."""
    if not isinstance(full, str) or full.count("/") != 1:
        raise InvalidName(f"invalid component name {full!r}: expected 'namespace/name'")
    ns, name = full.split("/")
    validate_part(ns, "namespace")
    validate_part(name, "name")
    if ns in RESERVED_NAMESPACES:
        raise InvalidName(f"namespace {ns!r} is reserved")
    return ns, name


def parse_digest(value: str) -> str:
    """Return the 64-character hex of ``sha256:HEX`` or ``HEX``."""
    hex_ = value[len("sha256:") :] if value.startswith("sha256:") else value
    if not _HEX_RE.fullmatch(hex_):
        raise InvalidName(f"invalid digest {value!r}: expected 'sha256:' and 64 lower-case hex digits")
    return hex_


@dataclass(frozen=True)
class Ref:
    kind: Literal["latest", "version", "alias", "digest"]
    namespace: str = ""
    name: str = ""
    version: int | None = None
    alias: str | None = None
    digest: str | None = None

    @property
    def immutable(self) -> bool:
        """Whether this ref always resolves to the same bytes (safe to cache)."""
        return self.kind in ("version", "digest")

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"

    def api_path(self) -> str:
        """The registry route that resolves this ref."""
        if self.kind == "digest":
            return f"/components/by-digest/{self.digest}"
        base = f"/components/{self.namespace}/{self.name}"
        if self.kind == "version":
            return f"{base}/versions/{self.version}"
        if self.kind == "alias":
            return f"{base}/aliases/{self.alias}"
        return base

    def __str__(self) -> str:
        if self.kind == "digest":
            return f"sha256:{self.digest}"
        if self.kind == "version":
            return f"{self.full_name}@{self.version}"
        if self.kind == "alias":
            return f"{self.full_name}:{self.alias}"
        return self.full_name


def parse_ref(ref: str) -> Ref:
    if not isinstance(ref, str) or not ref:
        raise InvalidName("empty reference: expected 'ns/name', 'ns/name@VERSION', 'ns/name:ALIAS' or 'sha256:HEX'")
    if ref.startswith("sha256:"):
        return Ref(kind="digest", digest=parse_digest(ref))
    if "@" in ref:
        full, _, ver = ref.partition("@")
        ns, name = validate_name(full)
        # isascii: '²'.isdigit() is true but int('²') fails; the bound is the database's.
        if not (ver.isascii() and ver.isdigit()) or len(ver) > 19 or not 1 <= int(ver) <= INT64_MAX:
            raise InvalidName(f"invalid version in {ref!r}: expected an integer from 1 to {INT64_MAX}")
        return Ref(kind="version", namespace=ns, name=name, version=int(ver))
    if ":" in ref:
        full, _, alias = ref.partition(":")
        ns, name = validate_name(full)
        return Ref(kind="alias", namespace=ns, name=name, alias=validate_part(alias, "alias"))
    ns, name = validate_name(ref)
    return Ref(kind="latest", namespace=ns, name=name)


def shared_prefix(names: list[str]) -> str:
    """The prefix all ``names`` share, cut after its last '/' or '-' (empty for fewer than
    two names): tables print it once, so that long names that differ late stay apart."""
    if len(names) < 2:
        return ""
    prefix = os.path.commonprefix(names)
    cut = max(prefix.rfind("/"), prefix.rfind("-"))
    return prefix[: cut + 1] if cut >= 0 else ""
