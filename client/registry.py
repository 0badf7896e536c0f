"""``Registry``: the Python client of a partsbin registry.

Here: the client's core (its HTTP client, the offline rule, the token's rights). Its
methods come by topic from mixins: publishing (:mod:`partsbin.client.push`), downloading
(:mod:`~partsbin.client.pull`), lookups, aliases and yanks (:mod:`~partsbin.client.catalog`),
compatibility, benchmarks and evaluations (:mod:`~partsbin.client.compatibility`),
assembling parts (:mod:`~partsbin.client.recombination`), jobs, datasets and webhooks.
torch is imported where a module is built or run, never by these: `partsbin ls`, `show`
and `pull` need none of it, and importing it costs seconds.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from partsbin import __version__
from partsbin.client._http import LazyTLSTransport, raise_for_status, with_retries
from partsbin.client.cache import Cache
from partsbin.client.catalog import CatalogMethods
from partsbin.client.compatibility import CompatibilityMethods
from partsbin.client.credentials import stored_token
from partsbin.client.datasets import DatasetMethods
from partsbin.client.errors import OfflineMode, Unauthorized
from partsbin.client.jobs import JobMethods, JobsAPI
from partsbin.client.pull import PullMethods
from partsbin.client.push import PushMethods
from partsbin.client.recombination import RecombinationMethods
from partsbin.client.webhooks import WebhookMethods

__all__ = ["Registry", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8000"


class Registry(
    JobMethods,
    DatasetMethods,
    WebhookMethods,
    PushMethods,
    PullMethods,
    CatalogMethods,
    CompatibilityMethods,
    RecombinationMethods,
):
    """Client of a partsbin registry.

    ``url`` and ``token`` fall back to ``PARTSBIN_URL`` and ``PARTSBIN_TOKEN``, and the
    token then to the one ``partsbin login`` stored for that URL; the cache to
    ``PARTSBIN_CACHE_DIR`` (default ``~/.cache/partsbin``). Use it as a context manager
    (``with Registry() as reg:``) or call :meth:`close`, which closes its connections.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        cache_dir: str | Path | None = None,
        timeout: float = 60.0,
        progress: bool = False,
        offline: bool | None = None,
        direct: bool | None = None,
    ) -> None:
        self.url = (url or os.environ.get("PARTSBIN_URL") or DEFAULT_URL).rstrip("/")
        if token is None:
            token = os.environ.get("PARTSBIN_TOKEN") or stored_token(self.url)
        headers = {"User-Agent": f"partsbin/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        #: ``PARTSBIN_OFFLINE=1`` (like ``HF_HUB_OFFLINE``): ``pull`` and ``assemble`` are served
        #: from the cache, and nothing else reaches the registry.
        self.offline = (
            offline if offline is not None else os.environ.get("PARTSBIN_OFFLINE", "").lower() in ("1", "true", "yes")
        )
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            event_hooks={"request": [self._refuse_when_offline]},
            # httpx honours proxy variables only with its own transport: keep it where they are set.
            transport=None if urllib.request.getproxies() else LazyTLSTransport(),
        )
        self.cache = Cache(Path(cache_dir) if cache_dir else None)
        #: Move large files straight to and from the registry's S3 bucket when it offers
        #: that (None: find out on the first push); False: always through the registry.
        self.direct = direct
        self.progress = progress
        self.jobs = JobsAPI(self)

    def close(self) -> None:
        """Close the client's connections (``with Registry() as reg:`` does it for you)."""
        self._http.close()

    def _refuse_when_offline(self, request: httpx.Request) -> None:
        # One place for every request the client makes: offline, none leaves the machine.
        if self.offline:
            raise OfflineMode(
                f"offline (PARTSBIN_OFFLINE=1): {request.method} {request.url.path} needs the registry at {self.url}; "
                "pull and assemble work from the cache"
            )

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------
    def _get(self, path: str, **params: Any) -> Any:
        params = {k: v for k, v in params.items() if v is not None}
        return with_retries(lambda: raise_for_status(self._http.get(path, params=params)).json())

    def _send(self, method: str, path: str, **kw: Any) -> Any:
        response = raise_for_status(self._http.request(method, path, **kw))
        return response.json() if response.content else None

    def _pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self._get(path, cursor=cursor, **params)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # -- the token ---------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        """The caller's token: ``token_id`` (None when anonymous), ``scope``, ``namespaces``, ``owner``.

        Raises:
            Unauthorized: a token the registry does not know (or revoked, or expired).
        """
        return self._get("/whoami")

    def archs(self) -> list[dict[str, Any]]:
        """The architectures the registry builds (``GET /archs``): ``name``, the ``distribution``
        and ``version`` that provide it (a plugin's, or partsbin), ``split_points``,
        ``default_split`` and ``config_schema``."""
        return list(self._get("/archs"))

    def check_can_publish(self, namespace: str | None, action: str) -> None:
        """Fail now, before any work, if this token may not publish into ``namespace``
        (any namespace when None: posting evaluations).

        Args:
            namespace: where the work would publish. action: what the message says needs the token.

        Raises:
            Unauthorized: no token, or one that may not publish there.
        """
        me = self.whoami()
        if me["scope"] == "admin" or (
            me["scope"] == "publish" and (namespace is None or namespace in me["namespaces"])
        ):
            return
        if me["token_id"] is None:
            raise Unauthorized(f"{action} needs a token: pass --token, set PARTSBIN_TOKEN or run `partsbin login`")
        where = f" into namespace {namespace!r}" if namespace else ""
        may = ", ".join(me["namespaces"]) or "none"
        raise Unauthorized(
            f"{action} needs a token that may publish{where}; this one has scope {me['scope']!r} "
            f"(it may publish into: {may})"
        )
