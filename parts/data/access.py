"""Where a job may read its data from.

A worker runs jobs that any publish token may submit, so it reads files only under the
data roots its deployment declares (``PARTSBIN_DATA_ROOTS``, folders separated by
``os.pathsep``, the same setting the registry checks submissions against), after
resolving symlinks: a link inside a root that points outside is refused like a path
outside. Every file a loader opens inside a data folder is checked the same way. The
message of a refusal never depends on whether anything outside the roots exists.

Registered datasets (``{"dataset": "ns/name@1"}``) are pulled from the registry and
verified like components, through the resolver the runner of the job installs. A user's
own run (``--local``, a script) is unconfined: its paths are the user's own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from partsbin.parts.data.spec import check_relative_path
from partsbin.parts.errors import PartsbinError

__all__ = [
    "DataOutsideRoots",
    "LocalDataset",
    "DataAccess",
    "data_access",
    "data_roots_from_env",
    "resolve_path",
    "confined",
    "resolve_dataset",
    "reading_trusted_files",
    "real_roots",
]


class DataOutsideRoots(PartsbinError, PermissionError):
    """A path a job may not read: outside the data roots, or resolving outside them."""


@dataclass(frozen=True)
class LocalDataset:
    """A registered dataset, pulled and verified: its file here and what it is."""

    ref: str
    digest: str
    path: Path
    format: str


@dataclass(frozen=True)
class DataAccess:
    #: None: unconfined (a user's own run); otherwise the only folders files are read from.
    roots: tuple[Path, ...] | None = None
    #: Pulls a registered dataset (the client's ``Registry.pull_data``); None: no registry.
    datasets: Callable[[str], LocalDataset] | None = None


_access: ContextVar[DataAccess | None] = ContextVar("partsbin_data_access", default=None)
_UNCONFINED = DataAccess()


def _current() -> DataAccess:
    return _access.get() or _UNCONFINED


def data_roots_from_env(value: str | None = None) -> tuple[Path, ...]:
    """The roots ``PARTSBIN_DATA_ROOTS`` declares (none when unset)."""
    raw = os.environ.get("PARTSBIN_DATA_ROOTS", "") if value is None else value
    return tuple(Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip())


@contextmanager
def data_access(access: DataAccess) -> Iterator[None]:
    token = _access.set(access)
    try:
        yield
    finally:
        _access.reset(token)


@contextmanager
def reading_trusted_files() -> Iterator[None]:
    """Within: files are read without the roots' check: what the deployment provides (a
    pulled and verified dataset, a built-in source's own folder), not a path a job named."""
    with data_access(DataAccess(roots=None, datasets=_current().datasets)):
        yield


def _real_roots(roots: tuple[Path, ...]) -> list[Path]:
    return [r.resolve() for r in roots]


def real_roots() -> tuple[Path, ...] | None:
    """The data roots files may be read from, symlinks resolved; None: unconfined."""
    roots = _current().roots
    return None if roots is None else tuple(_real_roots(roots))


def resolve_path(path: str) -> Path:
    """The file or folder ``path`` names, for reading. Confined: relative to a data root,
    symlinks resolved and still inside it; the first root where it exists wins."""
    roots = _current().roots
    if roots is None:
        return Path(path).expanduser()
    shown = [str(r) for r in roots]
    try:
        rel = check_relative_path(path, shown)
    except ValueError as exc:
        raise DataOutsideRoots(str(exc)) from None
    for root in _real_roots(roots):
        real = (root / rel).resolve()
        if not real.is_relative_to(root):
            raise DataOutsideRoots(f"path {path!r} resolves outside the data root {root} (a symbolic link?): refused")
        if real.exists():
            return real
    from partsbin.parts.data.sources import DataMissing

    raise DataMissing(f"{path!r} is in none of the data roots ({', '.join(shown)})")


def confined(path: Path) -> Path:
    """``path`` (inside a folder :func:`resolve_path` gave) if it stays inside the roots."""
    roots = _current().roots
    if roots is None:
        return path
    real = path.resolve()
    if not any(real.is_relative_to(root) for root in _real_roots(roots)):
        raise DataOutsideRoots(f"{path.name} in the data folder resolves outside the data roots: refused")
    return real


def resolve_dataset(ref: str) -> LocalDataset:
    resolver = _current().datasets
    if resolver is None:
        raise PartsbinError(f"dataset {ref!r} is a registered dataset: it needs a registry to pull it from")
    return resolver(ref)
