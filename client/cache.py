"""Content-addressed local cache of component files (``~/.cache/partsbin``).

Layout::

    blobs/sha256/<hex>              verified files, named by digest
    refs/<ns>/<name>/<version>      digest of an exact version (immutable refs only)
    meta/<hex>.json                 the registry's description of the component

Downloads go to a unique ``.incomplete`` file, are hashed while they arrive, and are
moved into place under a file lock only when the digest matches. Every path is built
from a checked digest, name and version (``parts/names.py``), never from text a
registry sent as it came: a broken or hostile registry cannot make the client write
outside this folder. Metadata is written to a temporary file and renamed into place,
so a crash never leaves a half-written one; one that cannot be read is ignored.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

from partsbin.parts.names import INT64_MAX, InvalidName, Ref, validate_part

__all__ = ["Cache", "default_cache_dir"]

_HEX = re.compile(r"[0-9a-f]{64}")


def default_cache_dir() -> Path:
    # Read when needed, not at import, so tests and users can set it at any time.
    env = os.environ.get("PARTSBIN_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "partsbin"


def _hex(digest: str) -> str:
    if not isinstance(digest, str) or not _HEX.fullmatch(digest):
        raise InvalidName(f"not a sha256 hex digest: {digest!r}")
    return digest


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Cache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / _hex(digest)

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def _ref_path(self, ref: Ref) -> Path | None:
        if ref.kind != "version":
            return None
        version = ref.version
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= INT64_MAX:
            raise InvalidName(f"invalid version {version!r}")
        ns, name = validate_part(ref.namespace, "namespace"), validate_part(ref.name, "name")
        return self.root / "refs" / ns / name / str(version)

    def lookup(self, ref: Ref) -> str | None:
        """Digest of an immutable ref already cached, without asking the registry."""
        if ref.kind == "digest":
            return ref.digest if ref.digest and self.has(ref.digest) else None
        path = self._ref_path(ref)
        if path is None or not path.is_file():
            return None
        digest = path.read_text(errors="replace").strip()
        return digest if _HEX.fullmatch(digest) and self.has(digest) else None

    def _resolution_path(self, ref: Ref) -> Path | None:
        # Beside the exact versions (files named by number): "latest", "alias-NAME".
        ns, name = validate_part(ref.namespace, "namespace"), validate_part(ref.name, "name")
        if ref.kind == "latest":
            return self.root / "refs" / ns / name / "latest"
        if ref.kind == "alias" and ref.alias:
            return self.root / "refs" / ns / name / f"alias-{validate_part(ref.alias, 'alias')}"
        return None

    def remember_resolution(self, ref: Ref, digest: str) -> None:
        """What a mutable ref (``ns/name``, an alias) resolved to last, for offline use."""
        path = self._resolution_path(ref)
        if path is not None:
            _write_atomic(path, _hex(digest))

    def last_resolved(self, ref: Ref) -> str | None:
        """The digest a mutable ref resolved to when last asked online, if cached."""
        path = self._resolution_path(ref)
        if path is None or not path.is_file():
            return None
        digest = path.read_text(errors="replace").strip()
        return digest if _HEX.fullmatch(digest) and self.has(digest) else None

    def remember(self, ref: Ref, digest: str) -> None:
        path = self._ref_path(ref)
        if path is not None:
            _write_atomic(path, _hex(digest))

    def meta_path(self, digest: str) -> Path:
        return self.root / "meta" / f"{_hex(digest)}.json"

    def load_meta(self, digest: str) -> dict[str, Any] | None:
        """The stored description, or None if there is none or it cannot be read."""
        try:
            data = json.loads(self.meta_path(digest).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def save_meta(self, digest: str, data: dict[str, Any]) -> None:
        _write_atomic(self.meta_path(digest), json.dumps(data))

    def incomplete(self, digest: str) -> Path:
        path = self.root / "blobs" / "sha256" / f"{_hex(digest)}.{uuid.uuid4().hex}.incomplete"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, digest: str, incomplete: Path, got: str) -> Path:
        """Move a download into place if it hashed (``got``) to ``digest``."""
        from partsbin.client.errors import DigestMismatch

        if got != digest:
            incomplete.unlink(missing_ok=True)
            raise DigestMismatch(f"downloaded bytes hash to sha256:{got}, expected sha256:{digest}; nothing was cached")
        final = self.blob_path(digest)
        # Imported here: only a download takes the lock, and filelock costs ~15 ms of
        # every `partsbin ls`.
        from filelock import FileLock

        with FileLock(str(final) + ".lock"):
            if final.exists():
                incomplete.unlink(missing_ok=True)
            else:
                os.replace(incomplete, final)
        return final
