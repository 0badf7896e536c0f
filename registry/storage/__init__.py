"""Blob storage for component files, addressed by sha256 digest.

Keys are always made here from the digest (:func:`blob_key`); nothing a client sends —
a name, a path, a URI — ever reaches a storage backend.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from partsbin.parts.extras import require_extra
from partsbin.registry.storage.base import (
    BlobReader,
    BlobStorage,
    DirectStorage,
    StorageError,
    StoredObject,
    UploadGone,
    blob_key,
)

__all__ = [
    "BlobReader",
    "BlobStorage",
    "DirectStorage",
    "StorageError",
    "StoredObject",
    "UploadGone",
    "blob_key",
    "make_storage",
]


def make_storage(
    storage_url: str, s3_endpoint_url: str | None = None, s3_public_endpoint_url: str | None = None
) -> BlobStorage:
    parsed = urlparse(storage_url)
    if parsed.scheme == "file":
        from partsbin.registry.storage.local import LocalStorage

        return LocalStorage(Path(parsed.path))
    if parsed.scheme == "s3":
        require_extra("server", "S3 blob storage", "boto3")
        from partsbin.registry.storage.s3 import S3Storage

        return S3Storage(
            bucket=parsed.netloc,
            prefix=parsed.path.strip("/"),
            endpoint_url=s3_endpoint_url,
            public_endpoint_url=s3_public_endpoint_url,
        )
    raise ValueError(f"unsupported storage URL {storage_url!r}: use file:///path or s3://bucket/prefix")
