"""Blobs in a local folder (the embedded default)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from partsbin.registry.storage.base import StorageError, blob_key


class LocalStorage:
    keeps_staged_file = True

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def put_file(self, digest: str, path: Path) -> None:
        dest = self._path(digest)
        if dest.exists():
            return
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{id(path)}.tmp")
            # Copy then rename: a crash leaves a stray temp file, never a partial blob
            # under a digest name.
            try:
                os.link(path, tmp)
            except OSError:
                shutil.copyfile(path, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        except OSError as exc:
            raise StorageError(f"could not write blob to {self.root}: {exc.strerror or exc}") from exc

    def exists(self, digest: str) -> bool:
        return self._path(digest).exists()

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    def check(self) -> None:
        # The folder appears with the first blob: until then its nearest existing
        # parent must be a folder this process may write in.
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            raise StorageError(f"cannot write blobs under {self.root}: {probe} is not a writable folder")

    def local_path(self, digest: str) -> Path | None:
        return self._path(digest)

    async def iter_range(self, digest: str, start: int, end: int, chunk_size: int) -> AsyncIterator[bytes]:
        async with await anyio.open_file(self._path(digest), "rb") as fh:
            await fh.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = await fh.read(min(chunk_size, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
