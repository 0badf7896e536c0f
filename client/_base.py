"""What the :class:`~partsbin.client.registry.Registry` method mixins use of the client's
core and of one another, declared for the type checker only: the definitions are in
registry.py and in the mixins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from partsbin.client.cache import Cache
    from partsbin.client.component import Component
    from partsbin.parts.data.access import LocalDataset

__all__ = ["RegistryBase"]


class RegistryBase:
    """The base of ``Registry``'s method mixins (:mod:`partsbin.client.push`,
    :mod:`~partsbin.client.pull`, :mod:`~partsbin.client.catalog`,
    :mod:`~partsbin.client.compatibility`, :mod:`~partsbin.client.recombination`)."""

    if TYPE_CHECKING:
        url: str
        offline: bool
        direct: bool | None
        progress: bool
        cache: Cache
        _http: httpx.Client

        def _get(self, path: str, **params: Any) -> Any: ...
        def _send(self, method: str, path: str, **kw: Any) -> Any: ...
        def _pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]: ...
        def info(self, ref: str) -> Component: ...
        def pull(self, ref: str) -> Component: ...
        def evaluations(self, *, extractor: str | None = None, head: str | None = None) -> list[dict[str, Any]]: ...
        def dataset_resolver(self) -> Callable[[str], LocalDataset]: ...
