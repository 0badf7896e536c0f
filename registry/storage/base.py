"""The storage interface shared by the backends."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = [
    "DirectStorage",
    "BlobStorage",
    "BlobReader",
    "FileRange",
    "StoredObject",
    "StorageError",
    "UploadGone",
    "blob_key",
    "digest_of_key",
]

_HEX = re.compile(r"^[0-9a-f]{64}$")


class StorageError(RuntimeError):
    """The backend could not store or read a blob (answered as 503)."""


class UploadGone(LookupError):
    """A staged upload is no longer there: aborted (perhaps while it was being
    completed), completed already, expired, or started by another token. Not a
    :class:`StorageError`: trying again cannot help (answered as 410)."""


def blob_key(digest: str) -> str:
    """The only way a storage key is made: from a checked sha256 hex digest."""
    if not _HEX.fullmatch(digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return f"blobs/sha256/{digest[:2]}/{digest}"


def digest_of_key(key: str) -> str | None:
    """The digest a key made by :func:`blob_key` holds, or None for any other key."""
    parts = key.split("/")
    if len(parts) == 4 and parts[:2] == ["blobs", "sha256"] and _HEX.fullmatch(parts[3]) and parts[2] == parts[3][:2]:
        return parts[3]
    return None


@dataclass(frozen=True)
class StoredObject:
    """Something in the backend, for ``partsbin gc``: a blob (``digest`` set) or a
    leftover of an interrupted write (a temporary file, an unfinished multipart upload)."""

    key: str
    size: int
    modified: datetime
    digest: str | None = None


class BlobReader(Protocol):
    def read(self, n: int) -> bytes: ...

    def close(self) -> None: ...


class FileRange:
    """A BlobReader over ``count`` bytes of an open file from ``offset``; closing it
    closes the file."""

    def __init__(self, file: BinaryIO, offset: int, count: int) -> None:
        self._file, self._left = file, count
        file.seek(offset)

    def read(self, n: int) -> bytes:
        data = self._file.read(min(n, self._left))
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._file.close()


class BlobStorage(Protocol):
    #: The backend keeps the staged upload itself (a hard link) as the blob, so the
    #: upload should be written durably as it arrives rather than copied afterwards.
    keeps_staged_file: bool
    #: Clients can move bytes straight to and from the backend (:class:`DirectStorage`).
    direct_transfers: bool
    #: Blobs are files this process can open (:class:`FileStorage`), which the server
    #: can hand to the kernel to send (registry/zerocopy.py).
    local_files: bool

    def put_file(self, digest: str, path: Path) -> None:
        """Store the file at ``path`` under ``digest``; idempotent; raise StorageError on failure."""

    def exists(self, digest: str) -> bool: ...

    def delete(self, digest: str) -> None: ...

    def check(self) -> None:
        """Raise StorageError unless the backend can be reached and written (``/readyz``)."""

    def open_range(self, digest: str, start: int, end: int) -> BlobReader:
        """A reader of bytes ``start`` to ``end`` inclusive, opened now (StorageError if it cannot be)."""

    def list_blobs(self) -> Iterator[StoredObject]:
        """Every blob stored, with its digest."""

    def list_leftovers(self) -> Iterator[StoredObject]:
        """What interrupted writes left behind (never a blob)."""

    def delete_leftover(self, obj: StoredObject) -> None: ...


class FileStorage(BlobStorage, Protocol):
    def open_file(self, digest: str) -> BinaryIO:
        """The blob's file, open for reading in binary mode; StorageError if unreadable."""
        ...


class DirectStorage(BlobStorage, Protocol):
    """A backend clients reach themselves (S3): downloads redirect to presigned URLs and
    uploads go to a staging key, which the registry checks before it becomes a blob."""

    def presign_download(self, digest: str, expires: int, filename: str) -> str: ...

    def start_upload(
        self, owner: str, upload: str, parts: int, expires: int, declared: dict[str, str]
    ) -> tuple[str, list[str]]: ...

    def finish_upload(
        self, owner: str, upload: str, multipart: str, etags: list[str]
    ) -> tuple[int, dict[str, str]]: ...

    def open_staged(self, owner: str, upload: str, start: int = 0, end: int | None = None) -> BlobReader: ...

    def promote_staged(self, owner: str, upload: str, digest: str) -> None: ...

    def discard_staged(self, owner: str, upload: str, multipart: str | None = None) -> None: ...

    def list_staged(self) -> Iterator[StoredObject]: ...

    def delete_staged_object(self, obj: StoredObject) -> None: ...
