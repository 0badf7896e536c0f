"""Content-addressed local cache of component files (``~/.cache/partsbin``).

Layout::

    blobs/sha256/<hex>              verified files, named by digest
    refs/<ns>/<name>/<version>      digest of an exact version (immutable refs only)

Downloads go to a unique ``.incomplete`` file, are hashed while they arrive, and are
moved into place under a file lock only when the digest matches.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from filelock import FileLock

from partsbin.parts.names import Ref

__all__ = ["Cache", "default_cache_dir"]


def default_cache_dir() -> Path:
    # Read when needed, not at import, so tests and users can set it at any time.
    env = os.environ.get("PARTSBIN_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "partsbin"


class Cache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def _ref_path(self, ref: Ref) -> Path | None:
        if ref.kind == "version":
            return self.root / "refs" / ref.namespace / ref.name / str(ref.version)
        return None

    def lookup(self, ref: Ref) -> str | None:
        """Digest of an immutable ref already cached, without asking the registry."""
        if ref.kind == "digest":
            return ref.digest if self.has(ref.digest or "") else None
        path = self._ref_path(ref)
        if path is None or not path.is_file():
            return None
        digest = path.read_text().strip()
        return digest if self.has(digest) else None

    def remember(self, ref: Ref, digest: str) -> None:
        path = self._ref_path(ref)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            tmp.write_text(digest)
            os.replace(tmp, path)

    def incomplete(self, digest: str) -> Path:
        path = self.root / "blobs" / "sha256" / f"{digest}.{uuid.uuid4().hex}.incomplete"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, digest: str, incomplete: Path, got: str) -> Path:
        """Move a download into place if it hashed (``got``) to ``digest``."""
        from partsbin.client.errors import DigestMismatch

        if got != digest:
            incomplete.unlink(missing_ok=True)
            raise DigestMismatch(f"downloaded bytes hash to sha256:{got}, expected sha256:{digest}; nothing was cached")
        final = self.blob_path(digest)
        with FileLock(str(final) + ".lock"):
            if final.exists():
                incomplete.unlink(missing_ok=True)
            else:
                os.replace(incomplete, final)
        return final
