"""Serving component files: ETag is the digest, HTTP Range is honoured.

The component is looked up in a session of its own that is closed before the blob is
opened, and the blob is opened before any header is sent: a download holds no database
connection while its bytes stream (registry/main.py says why that matters), and a
storage backend that is down answers 503 rather than a 200 cut off after the headers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO, cast

import anyio
import anyio.to_thread
from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from partsbin.registry.db.models import Component, Dataset
from partsbin.registry.errors import StorageUnavailable
from partsbin.registry.storage import BlobReader, BlobStorage, DirectStorage, StorageError
from partsbin.registry.storage.base import FileRange, FileStorage
from partsbin.registry.zerocopy import EXTENSION

__all__ = ["CHUNK_SIZE", "LocalFileResponse", "serve_file", "parse_range"]

# Reading 64 KiB at a time (Starlette's FileResponse default), each through a worker
# thread, reached ~10% of disk speed for a 100 MB file here; 4 MiB chunks amortise the
# thread hop and the ASGI send.
CHUNK_SIZE = 4 * 1024 * 1024
# ASCII digits only: \d would take '²', which int() refuses.
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.ASCII)


def _headers(c: Component | Dataset) -> dict[str, str]:
    return {
        "ETag": f'"{c.digest}"',
        "Content-Disposition": f'attachment; filename="{c.filename}"',
        "Cache-Control": "public, max-age=31536000, immutable",
        "Accept-Ranges": "bytes",
        "X-Partsbin-Digest": f"sha256:{c.digest}",
    }


def _number(digits: str) -> int:
    # Past 19 digits a position lies beyond any file; int() of a 5,000-digit string
    # raises (Python's limit on integer string conversion).
    return int(digits) if len(digits) <= 19 else 10**19


def parse_range(value: str | None, size: int) -> tuple[int, int] | None | str:
    """(start, end) inclusive; None for the whole file; 'invalid' when unsatisfiable.

    Only a single ``bytes=`` range is honoured; anything else (several ranges, another
    unit, a malformed value) is ignored as RFC 9110 allows, and the whole file is sent.
    """
    if not value:
        return None
    m = _RANGE.fullmatch(value.strip())
    if not m:
        return None
    a, b = m.groups()
    if not a and not b:
        return "invalid"
    if not a:
        n = _number(b)
        if n == 0 or size == 0:
            return "invalid"
        return max(0, size - n), size - 1
    start = _number(a)
    end = min(_number(b), size - 1) if b else size - 1
    if start >= size or start > end:
        return "invalid"
    return start, end


async def _stream(reader: BlobReader, length: int) -> AsyncIterator[bytes]:
    try:
        remaining = length
        while remaining > 0:
            chunk = await anyio.to_thread.run_sync(reader.read, min(CHUNK_SIZE, remaining))
            if not chunk:
                raise StorageError(f"the blob ended {remaining} bytes early")
            remaining -= len(chunk)
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(reader.close)


class LocalFileResponse(Response):
    """``count`` bytes of a local file from ``offset``, sent by the kernel where the server
    offers the ASGI zero-copy extension (registry/zerocopy.py), else streamed through
    threads as ``StreamingResponse`` does for any other store."""

    media_type = "application/octet-stream"

    def __init__(self, file: BinaryIO, offset: int, count: int, status_code: int, headers: dict[str, str]) -> None:
        super().__init__(status_code=status_code, headers=headers)
        self.file, self.offset, self.count, self._given = file, offset, count, headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if EXTENSION not in scope.get("extensions", {}):
            body = _stream(FileRange(self.file, self.offset, self.count), self.count)
            fallback = StreamingResponse(body, self.status_code, headers=self._given, media_type=self.media_type)
            await fallback(scope, receive, send)
            return
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await send(
                {"type": EXTENSION, "file": self.file, "offset": self.offset, "count": self.count, "more_body": False}
            )
        finally:
            self.file.close()


def serve_file(
    request: Request,
    factory: sessionmaker[Session],
    lookup: Callable[[Session], Component | Dataset],
    storage: BlobStorage,
) -> Response:
    """The file of the component (or dataset) ``lookup`` finds (a sync route calls this,
    in a worker thread)."""
    with factory() as session:
        component = lookup(session)
    headers = _headers(component)
    if request.headers.get("if-none-match") in (f'"{component.digest}"', component.digest):
        return Response(status_code=304, headers=headers)
    size = component.size
    rng = parse_range(request.headers.get("range"), size)
    if rng == "invalid":
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = rng if isinstance(rng, tuple) else (0, size - 1)
    status = 206 if isinstance(rng, tuple) else 200
    headers["Content-Length"] = str(end - start + 1)
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if request.method == "HEAD" or size == 0:
        # The same headers as GET, no body: clients learn the ETag and size first.
        return Response(status_code=status, media_type="application/octet-stream", headers=headers)
    settings = request.app.state.settings
    if storage.direct_transfers and settings.s3_direct_transfers:
        # The bytes go straight from the bucket to the client (as MLflow's and the Hugging
        # Face Hub's downloads do): a short-lived presigned URL, which honours the Range
        # the client sends again after the redirect. The registry only looked the
        # component up; the client verifies the digest as always.
        try:
            url = cast(DirectStorage, storage).presign_download(
                component.digest, settings.presign_expiry_seconds, component.filename
            )
        except StorageError as exc:
            raise StorageUnavailable(f"blob storage failed; try again: {exc}") from None
        redirect = {k: v for k, v in headers.items() if k not in ("Content-Length", "Content-Range", "Cache-Control")}
        # The URL expires: the redirect itself must not be cached like the immutable bytes.
        return Response(status_code=307, headers={**redirect, "Location": url, "Cache-Control": "no-store"})
    if storage.local_files and settings.zero_copy:
        try:
            file = cast(FileStorage, storage).open_file(component.digest)
        except StorageError as exc:
            raise StorageUnavailable(f"blob storage failed; try again: {exc}") from None
        return LocalFileResponse(file, start, end - start + 1, status_code=status, headers=headers)
    try:
        reader = storage.open_range(component.digest, start, end)
    except StorageError as exc:
        raise StorageUnavailable(f"blob storage failed; try again: {exc}") from None
    return StreamingResponse(
        _stream(reader, end - start + 1), status_code=status, media_type="application/octet-stream", headers=headers
    )
