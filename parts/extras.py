"""Optional dependencies: the base install is a client; the server, the trainer's data
sets and plots come with extras (``pip install 'partsbin[server]'``, ``[train]``, ``[all]``).

A part whose extra is missing fails on import with an :class:`ImportError` that names the
extra to install, not with the bare name of a package the user never asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["MissingExtra", "require", "require_extra"]


class MissingExtra(ImportError):
    pass


def _message(extra: str, modules: list[str], purpose: str) -> str:
    return f"{purpose} needs {', '.join(modules)}, from partsbin's '{extra}' extra: pip install 'partsbin[{extra}]'"


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(_message(extra, [module.split(".")[0]], purpose)) from exc


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def require_extra(extra: str, purpose: str, *modules: str) -> None:
    """Check, without importing them, that ``modules`` are installed."""
    missing = [m for m in modules if _absent(m)]
    if missing:
        raise MissingExtra(_message(extra, missing, purpose))
