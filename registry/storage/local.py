"""Blobs in a local folder (the embedded default)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from partsbin.registry.storage.base import BlobReader, FileRange, StorageError, StoredObject, blob_key, digest_of_key

_TMP_SUFFIX = ".tmp"


def _fsync_dir(path: Path) -> None:
    # A rename or link is durable only once its directory is: without this a power
    # loss can lose a blob whose row was committed.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    keeps_staged_file = True
    # The registry serves the folder's bytes itself: clients cannot reach it.
    direct_transfers = False
    local_files = True

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def put_file(self, digest: str, path: Path) -> None:
        dest = self._path(digest)
        if dest.exists():
            return
        try:
            new_dirs = [p for p in (dest.parent.parent, dest.parent) if not p.exists()]
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}")
            # Link (or copy) then rename: a crash leaves a stray temp file, never a
            # partial blob under a digest name.
            try:
                os.link(path, tmp)
            except OSError:
                shutil.copyfile(path, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
            for d in reversed(new_dirs):
                _fsync_dir(d.parent)
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

    def open_range(self, digest: str, start: int, end: int) -> BlobReader:
        try:
            # closed by close(), after the response has streamed
            return FileRange(open(self._path(digest), "rb"), start, end - start + 1)
        except OSError as exc:
            raise StorageError(f"could not read blob sha256:{digest}: {exc.strerror or exc}") from exc

    def open_file(self, digest: str) -> BinaryIO:
        try:
            return open(self._path(digest), "rb")  # closed by the response once it is sent
        except OSError as exc:
            raise StorageError(f"could not read blob sha256:{digest}: {exc.strerror or exc}") from exc

    def _walk(self) -> Iterator[tuple[Path, os.stat_result]]:
        base = self.root / "blobs" / "sha256"
        if not base.is_dir():
            return
        for folder in sorted(base.iterdir()):
            if not folder.is_dir():
                continue
            for p in sorted(folder.iterdir()):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                yield p, st

    def list_blobs(self) -> Iterator[StoredObject]:
        for p, st in self._walk():
            key = p.relative_to(self.root).as_posix()
            digest = digest_of_key(key)
            if digest is not None:
                yield StoredObject(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), digest)

    def list_leftovers(self) -> Iterator[StoredObject]:
        for p, st in self._walk():
            if p.name.startswith(".") and p.name.endswith(_TMP_SUFFIX):
                yield StoredObject(
                    p.relative_to(self.root).as_posix(), st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)
                )

    def delete_leftover(self, obj: StoredObject) -> None:
        (self.root / obj.key).unlink(missing_ok=True)
