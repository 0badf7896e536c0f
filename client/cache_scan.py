"""What the local cache holds, and pruning it (``partsbin cache ls`` / ``cache prune``).

Reads the layout :mod:`partsbin.client.cache` writes: ``blobs/sha256/<hex>`` (verified
files), ``meta/<hex>.json`` (the registry's description of the component) and
``refs/<ns>/<name>/<version>`` (exact versions resolved to digests).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from partsbin.client.cache import default_cache_dir

__all__ = ["CacheEntry", "CacheReport", "scan", "prune"]

_HEX = re.compile(r"^[0-9a-f]{64}$")
# An unfinished download younger than this may belong to a pull in progress.
_INCOMPLETE_GRACE_SECONDS = 3600


@dataclass
class CacheEntry:
    digest: str
    path: Path
    size: int
    downloaded: float
    last_used: float
    role: str | None = None
    refs: list[str] = field(default_factory=list)


@dataclass
class CacheReport:
    root: Path
    entries: list[CacheEntry]
    incomplete: list[Path]
    incomplete_bytes: int

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "total_bytes": self.total_bytes,
            "incomplete_bytes": self.incomplete_bytes,
            "entries": [{**asdict(e), "path": str(e.path)} for e in self.entries],
        }


def _refs_by_digest(root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    refs = root / "refs"
    if not refs.is_dir():
        return found
    for f in refs.glob("*/*/*"):
        if f.is_file() and f.name.isdigit():
            digest = f.read_text().strip()
            found.setdefault(digest, []).append(f"{f.parent.parent.name}/{f.parent.name}@{f.name}")
    return found


def scan(root: Path | None = None) -> CacheReport:
    root = Path(root) if root else default_cache_dir()
    blobs = root / "blobs" / "sha256"
    refs = _refs_by_digest(root)
    entries, incomplete = [], []
    for f in sorted(blobs.iterdir()) if blobs.is_dir() else []:
        if f.name.endswith(".incomplete"):
            incomplete.append(f)
            continue
        if not _HEX.fullmatch(f.name) or not f.is_file():
            continue
        st = f.stat()
        role, names = None, sorted(refs.get(f.name, []))
        meta = root / "meta" / f"{f.name}.json"
        if meta.is_file():
            try:
                data = json.loads(meta.read_text())
                role = data.get("role")
                if data.get("ref") and data["ref"] not in names:
                    names.insert(0, data["ref"])
            except (OSError, ValueError):
                pass
        entries.append(CacheEntry(f.name, f, st.st_size, st.st_mtime, max(st.st_atime, st.st_mtime), role, names))
    return CacheReport(root, entries, incomplete, sum(p.stat().st_size for p in incomplete if p.exists()))


def prune(
    root: Path | None = None, *, older_than_days: float | None = None, everything: bool = False, dry_run: bool = False
) -> list[tuple[Path, int]]:
    """Remove unfinished downloads older than an hour, and the cached files (with their
    metadata and refs) not used for ``older_than_days`` days, or all with ``everything``.
    Returns what was (or, with ``dry_run``, would be) removed, with sizes."""
    report = scan(root)
    now = time.time()
    doomed: list[tuple[Path, int]] = []
    for p in report.incomplete:
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if everything or now - st.st_mtime > _INCOMPLETE_GRACE_SECONDS:
            doomed.append((p, st.st_size))
    gone: set[str] = set()
    for e in report.entries:
        if everything or (older_than_days is not None and now - e.last_used > older_than_days * 86400):
            doomed.append((e.path, e.size))
            gone.add(e.digest)
    if dry_run:
        return doomed
    for path, _ in doomed:
        path.unlink(missing_ok=True)
    for digest in gone:
        (report.root / "meta" / f"{digest}.json").unlink(missing_ok=True)
        Path(f"{report.root / 'blobs' / 'sha256' / digest}.lock").unlink(missing_ok=True)
    refs = report.root / "refs"
    if gone and refs.is_dir():
        for f in refs.glob("*/*/*"):
            if f.is_file() and f.read_text().strip() in gone:
                f.unlink()
    return doomed
