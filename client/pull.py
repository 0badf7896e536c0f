"""Downloading: ``Registry.pull`` into the verified cache, and ``load``."""

from __future__ import annotations

import hashlib
import http.client
import urllib.request
from typing import TYPE_CHECKING

import httpx

from partsbin.client import ranged
from partsbin.client._base import RegistryBase
from partsbin.client._http import raise_for_status, with_retries
from partsbin.client.component import Component
from partsbin.client.errors import ConnectionFailed, NotCached, RegistryError
from partsbin.client.progress import progress_bar
from partsbin.client.ranged import NotRanged, RangedDownload, fetch_ranged
from partsbin.parts.hashing import HashingWriter
from partsbin.parts.names import Ref, parse_ref

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["PullMethods"]


class PullMethods(RegistryBase):
    """``Registry``'s download methods: :meth:`pull` and :meth:`load`."""

    def pull(self, ref: str) -> Component:
        """Download a component into the cache, verifying its sha256. A component already
        cached is not transferred again; an exact version or digest already cached needs
        no request at all.

        Returns:
            The :class:`Component` with ``path`` set to the verified file.

        Raises:
            ComponentNotFound: nothing by that ref. NotCached: offline and not in the cache.
            DigestMismatch: the bytes did not hash to the digest. ConnectionFailed.
        """
        parsed = parse_ref(ref)
        cached = self.cache.lookup(parsed)
        if cached is None and self.offline:
            cached = self.cache.last_resolved(parsed)
        comp = self._cached_component(cached) if cached else None
        if comp is None:
            if self.offline:
                raise NotCached(
                    f"{ref} is not in the cache at {self.cache.root}, and PARTSBIN_OFFLINE=1 forbids asking the registry: "
                    f"pull it once while online (`partsbin pull {ref}`)"
                )
            comp = self.info(ref)
            _check_answers(parsed, comp)
            self.cache.save_meta(comp.hex, comp.raw)
            if not parsed.immutable:
                # What `ns/name` or an alias meant last time: the answer offline.
                self.cache.remember_resolution(parsed, comp.hex)
        if not self.cache.has(comp.hex):
            with_retries(lambda: self._download(comp))
        self.cache.remember(
            Ref(kind="version", namespace=comp.name.split("/")[0], name=comp.name.split("/")[1], version=comp.version),
            comp.hex,
        )
        comp.path = self.cache.blob_path(comp.hex)
        return comp

    def _cached_component(self, digest: str) -> Component | None:
        meta = self.cache.load_meta(digest)
        if meta is None:
            return None
        try:
            comp = Component.from_api(meta)
        except RegistryError:
            return None  # written by an older client, or damaged: ask the registry again
        return comp if comp.hex == digest else None

    def _download(self, comp: Component) -> None:
        # httpx honours proxy variables; the ranged path does not, so it stands aside.
        if comp.size >= ranged.RANGED_THRESHOLD and not urllib.request.getproxies():
            try:
                return self._download_ranged(comp)
            except NotRanged:
                pass  # the registry (or the way to it) does not serve ranges: one stream
        target = self.cache.incomplete(comp.hex)
        with HashingWriter(target) as writer:
            # The client's timeouts apply: connect, and inactivity between reads.
            # With S3 storage the registry redirects to a presigned URL: the bytes come
            # straight from the bucket (httpx drops the token on the way there).
            url = f"/components/by-digest/{comp.hex}/file"
            with self._http.stream("GET", url, follow_redirects=self.direct is not False) as response:
                raise_for_status(response)
                with progress_bar(self.progress, comp.size, f"pull {comp.ref}") as advance:
                    for chunk in response.iter_raw():
                        writer.write(chunk)
                        advance(len(chunk))
            self.cache.commit(comp.hex, target, writer.close())

    def _download_ranged(self, comp: Component) -> None:
        """The file in pieces over several connections (client/ranged.py), hashed as they arrive."""
        job = RangedDownload(
            url=f"{self.url}/components/by-digest/{comp.hex}/file",
            size=comp.size,
            headers={k: v for k, v in self._http.headers.items() if k.lower() in ("authorization", "user-agent")},
            timeout=self._http.timeout.read or 60.0,
            ssl_context=httpx.create_ssl_context,
            follow_redirects=self.direct is not False,
            connections=ranged.CONNECTIONS,
            piece=ranged.PIECE,
        )
        target = self.cache.incomplete(comp.hex)
        written = 0
        sha = hashlib.sha256()
        try:
            with target.open("wb") as fh, progress_bar(self.progress, comp.size, f"pull {comp.ref}") as advance:

                def write(piece: memoryview) -> None:
                    # Here, in order, while the connections' threads receive the next pieces:
                    # hashing and writing both release the GIL. The buffer is used again after.
                    nonlocal written
                    sha.update(piece)
                    fh.write(piece)
                    written += len(piece)
                    advance(len(piece))

                try:
                    fetch_ranged(job, write)
                except NotRanged as exc:
                    if written:
                        raise RegistryError(
                            f"the registry stopped serving {comp.ref} in ranges part way ({exc}); nothing was cached",
                            code="invalid_response",
                        ) from None
                    raise
                except (OSError, http.client.HTTPException) as exc:
                    raise ConnectionFailed(
                        f"downloading {comp.ref} from {self.url} failed after retries ({exc or type(exc).__name__}); "
                        "nothing was cached"
                    ) from exc
            self.cache.commit(comp.hex, target, sha.hexdigest())
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        finally:
            job.close()

    def load(self, ref: str, device: str | torch.device = "cpu") -> nn.Module:
        """The module ``ref`` stores, built from its card with its weights (:meth:`pull` first).

        Raises:
            As :meth:`pull`.
        """
        return self.pull(ref).build(device)


def _check_answers(ref: Ref, comp: Component) -> None:
    """The registry answered for the ref that was asked (an exact version or a digest)."""
    if (ref.kind == "version" and (comp.name, comp.version) != (ref.full_name, ref.version)) or (
        ref.kind == "digest" and comp.hex != ref.digest
    ):
        raise RegistryError(f"asked for {ref}, the registry answered with {comp.ref}; refused", code="invalid_response")
