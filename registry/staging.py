"""The staging area: where uploads are spooled while they stream in and are checked.

Each registry process stages into a folder of its own under ``PARTSBIN_DATA_DIR/tmp`` and
holds an exclusive ``flock`` on that folder while it runs. The kernel drops the lock when
the process ends, ``kill -9`` included, so a folder whose lock can be taken belongs to a
process that is gone, and its files are partial uploads that nobody will finish. Those
are swept when a registry starts (and by ``partsbin gc``), while other registry processes
sharing the data folder keep theirs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locks, so nothing is ever swept as stale
    fcntl = None  # type: ignore[assignment]

__all__ = ["StagingArea", "StaleStaging"]

_PREFIX = "proc-"


@dataclass(frozen=True)
class StaleStaging:
    path: Path
    files: int
    bytes: int


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on ``path`` (a folder), or None if another process holds it."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _usage(path: Path) -> tuple[int, int]:
    files = size = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                files += 1
                size += p.stat().st_size
        except OSError:
            pass
    return files, size


class StagingArea:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.dir: Path | None = None
        self._fd: int | None = None

    def open(self) -> list[StaleStaging]:
        """Sweep what crashed processes left, then claim a folder for this process."""
        swept = self.sweep()
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            path = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=self.root))
            fd = _try_lock(path)
            # Between mkdtemp and the lock another process's sweep may have taken the
            # empty folder for stale and removed it: then make another.
            if fcntl is None or (fd is not None and os.path.samestat(os.fstat(fd), _stat_or_none(path))):
                self.dir, self._fd = path, fd
                return swept
            if fd is not None:
                os.close(fd)

    def sweep(self, *, dry_run: bool = False) -> list[StaleStaging]:
        """Folders of registry processes that are gone (and loose files of older versions)."""
        found: list[StaleStaging] = []
        if fcntl is None or not self.root.is_dir():
            return found
        for path in sorted(self.root.iterdir()):
            if path == self.dir:
                continue
            if path.is_dir() and path.name.startswith(_PREFIX):
                fd = _try_lock(path)
                if fd is None:
                    continue  # a running registry's
                try:
                    files, size = _usage(path)
                    found.append(StaleStaging(path, files, size))
                    if not dry_run:
                        shutil.rmtree(path, ignore_errors=True)
                finally:
                    os.close(fd)
            elif path.is_file() and path.name.startswith("upload-"):
                # Staged directly under tmp/ by versions before per-process folders.
                found.append(StaleStaging(path, 1, path.stat().st_size))
                if not dry_run:
                    path.unlink(missing_ok=True)
        return found

    def new_file(self) -> Path:
        """A new empty file for one upload, in this process's folder."""
        if self.dir is None:
            self.open()
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".safetensors", dir=self.dir)
        os.close(fd)
        return Path(name)

    def close(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _stat_or_none(path: Path) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return os.stat_result((0,) * 10)
