"""Architectures from other distributions, through the ``partsbin.archs`` entry-point group.

A plugin declares, in its ``pyproject.toml``::

    [project.entry-points."partsbin.archs"]
    my_cnn = "my_package.archs"

and the module (or a callable, ``"my_package.archs:register_all"``) registers its
builders with :func:`partsbin.parts.archs.register` when loaded, as the built-ins do.
:mod:`partsbin.parts.archs` loads every installed plugin when it is imported, so the
registry, the workers, ``assemble`` and the CLI see the same architectures.

A plugin that fails to load (an import error, a name already registered) is skipped
with a warning naming its distribution: one broken package must not take the registry
down. What it registered before failing is taken back, so a plugin is there whole or
not at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from partsbin.parts.archs import _registry
from partsbin.parts.archs._registry import Provider

__all__ = ["GROUP", "load_plugins", "provider_of_module"]

GROUP = "partsbin.archs"

log = logging.getLogger("partsbin.archs")

_lock = threading.Lock()
# Entry points already tried, loaded or not: loading again is a no-op, and a broken
# plugin warns once per process, not at every call.
_tried: set[tuple[str | None, str, str]] = set()


def _provider(ep: EntryPoint) -> Provider | None:
    dist = ep.dist
    if dist is None:  # an EntryPoint made by hand, not read from an installed distribution
        return None
    return Provider(dist.metadata["Name"] or dist.name, dist.version)


def provider_of_module(module: str) -> Provider | None:
    """The installed plugin whose entry point's package holds ``module``, if any.

    For a builder registered while no entry point is loading: a plugin's module that was
    imported first (``import my_package.archs``) registers only once the import of
    ``partsbin.parts.archs`` it triggered has finished.
    """
    top = module.split(".")[0]
    for ep in entry_points(group=GROUP):
        if ep.module.split(".")[0] == top:
            return _provider(ep)
    return None


def load_plugins(eps: Iterable[EntryPoint] | None = None) -> list[str]:
    """Load the plugins of ``eps`` (default: every installed one); return the architectures they registered."""
    added: list[str] = []
    with _lock:
        for ep in entry_points(group=GROUP) if eps is None else eps:
            provider = _provider(ep)
            key = (provider.distribution if provider else None, ep.name, ep.value)
            if key in _tried:
                continue
            _tried.add(key)
            before = set(_registry.list_archs())
            _registry._LOADING.append(provider)
            try:
                loaded = ep.load()
                if callable(loaded) and not isinstance(loaded, ModuleType):
                    loaded()
            except Exception as exc:  # noqa: BLE001 - a plugin's code may raise anything; the registry stays up
                _registry._unregister(set(_registry.list_archs()) - before)
                who = f"distribution {provider}" if provider else "no distribution"
                log.warning(
                    "skipped the architecture plugin %r (%s, entry point %r in group %r): %s: %s",
                    ep.name,
                    who,
                    ep.value,
                    GROUP,
                    type(exc).__name__,
                    exc,
                )
                continue
            finally:
                _registry._LOADING.pop()
            added += sorted(set(_registry.list_archs()) - before)
    return added
