"""The storage interface shared by the backends."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

__all__ = ["BlobStorage", "StorageError", "blob_key"]

_HEX = re.compile(r"^[0-9a-f]{64}$")


class StorageError(RuntimeError):
    """The backend could not store or read a blob (answered as 503)."""


def blob_key(digest: str) -> str:
    """The only way a storage key is made: from a checked sha256 hex digest."""
    if not _HEX.fullmatch(digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return f"blobs/sha256/{digest[:2]}/{digest}"


class BlobStorage(Protocol):
    #: The backend keeps the staged upload itself (a hard link) as the blob, so the
    #: upload should be written durably as it arrives rather than copied afterwards.
    keeps_staged_file: bool

    def put_file(self, digest: str, path: Path) -> None:
        """Store the file at ``path`` under ``digest``; idempotent; raise StorageError on failure."""

    def exists(self, digest: str) -> bool: ...

    def delete(self, digest: str) -> None: ...

    def check(self) -> None:
        """Raise StorageError unless the backend can be reached and written (``/readyz``)."""

    def local_path(self, digest: str) -> Path | None:
        """A path the server may stream from directly, when the backend has one."""

    def iter_range(self, digest: str, start: int, end: int, chunk_size: int) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` inclusive."""
