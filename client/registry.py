"""``Registry``: the Python client of a partsbin registry."""

from __future__ import annotations

import builtins
import os
import tempfile
import time
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from partsbin import __version__
from partsbin.client._http import LazyTLSTransport, raise_for_status, with_retries
from partsbin.client.cache import Cache
from partsbin.client.credentials import stored_token
from partsbin.client.datasets import DatasetMethods
from partsbin.client.direct import DIRECT_THRESHOLD, push_direct
from partsbin.client.errors import (
    Incompatible,
    InvalidCard,
    InvalidFile,
    MissingFile,
    NotCached,
    OfflineMode,
    RegistryError,
    Unauthorized,
    UnvouchedRecombination,
    UsageError,
)
from partsbin.client.jobs import JobMethods, JobsAPI
from partsbin.client.progress import progress_bar
from partsbin.client.webhooks import WebhookMethods
from partsbin.parts.card import CARD_METADATA_KEY, REGISTRY_FIELDS, Card
from partsbin.parts.hashing import HashingWriter
from partsbin.parts.messages import describe_validation_error
from partsbin.parts.names import INT64_MAX, Ref, parse_digest, parse_ref, validate_name
from partsbin.parts.safetensors_format import SafetensorsError, load_state_dict, read_header

# torch is imported where a module is built or run, not here: `partsbin ls`, `show` and
# `pull` need none of it, and importing it costs seconds.
if TYPE_CHECKING:
    import torch
    from torch import nn

    from partsbin.client.assemble import AssembledModel
    from partsbin.client.bench_result import BenchResult

__all__ = ["Registry", "Component", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8000"
_CHUNK = 1024 * 1024
# How long push keeps retrying through a registry outage before it gives up.
PUSH_RETRY_SECONDS = 30.0


@dataclass
class Component:
    """A stored component as the registry describes it; ``path`` is set once pulled."""

    ref: str
    name: str
    version: int
    digest: str
    size: int
    role: str
    yanked: bool
    card: Card
    raw: dict[str, Any]
    path: Path | None = None
    #: Set by ``push``: False when identical bytes were already published under this name.
    created: bool | None = None

    def __repr__(self) -> str:
        pulled = f", path={str(self.path)!r}" if self.path else ""
        return f"Component({self.ref!r}, role={self.role!r}, digest={self.digest[:19]!r}…, size={self.size}{pulled})"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Component:
        """Check, then take, the registry's description of a component.

        The digest, name and version become cache paths and checks, so each is
        validated here first: a broken or hostile registry cannot make the client
        write outside its cache, or verify a download against a digest it made up."""
        try:
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            name, version, size = data["name"], data["version"], data["size"]
            validate_name(name)
            if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= INT64_MAX:
                raise ValueError(f"version {version!r} is not an integer from 1")
            if not isinstance(data["digest"], str) or not data["digest"].startswith("sha256:"):
                raise ValueError(f"digest {data['digest']!r} is not 'sha256:' and 64 hex digits")
            parse_digest(data["digest"])
            if data["ref"] != f"{name}@{version}":
                raise ValueError(f"ref {data['ref']!r} does not name {name}@{version}")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError(f"size {size!r} is not a byte count")
            if not isinstance(data["role"], str) or not isinstance(data["yanked"], bool):
                raise ValueError("role or yanked has the wrong type")
            card = Card.model_validate(data["card"])
            if card.name != name:
                raise ValueError(f"the card names {card.name!r}, not {name!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(
                f"the registry sent an invalid component description, refused: {exc}", code="invalid_response"
            ) from None
        return cls(
            ref=data["ref"],
            name=name,
            version=version,
            digest=data["digest"],
            size=size,
            role=data["role"],
            yanked=data["yanked"],
            card=card,
            raw=data,
        )

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """The module this component's card describes, with its weights (``strict=True``)."""
        from partsbin.parts.archs import build_part

        if self.path is None:
            raise UsageError(f"{self.ref} is not pulled yet: use Registry.pull")
        a = self.card.arch
        module = build_part(a.name, a.config, a.part, a.split)
        module.load_state_dict(load_state_dict(self.path), strict=True)
        return module.to(device)


class Registry(JobMethods, DatasetMethods, WebhookMethods):
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

    # -- publishing --------------------------------------------------------------------
    def push(self, module_or_file: nn.Module | str | Path, card: Card | dict[str, Any] | None = None) -> Component:
        """Publish a module (its state dict is written with the card embedded) or an
        existing ``.safetensors`` file.

        The card and the file are checked here before anything is sent: a bad card, a
        missing card or a file that is not safetensors (a ``torch.save`` pickle) fails at
        once instead of after the upload.

        Args:
            module_or_file: an ``nn.Module`` (its state dict is stored) or a ``.safetensors`` path.
            card: the component card (a ``Card`` or a mapping); optional for a file that embeds one.

        Returns:
            The stored :class:`Component` with its version; ``created`` is False when
            identical bytes were already published under the name.

        Raises:
            InvalidCard, InvalidFile, MissingFile, UsageError: the card or file, before any upload.
            Unauthorized: the token may not publish into the card's namespace.
            InvalidUpload, Conflict: the registry refused it (nothing is stored).
        """
        card_model = _card(card) if isinstance(card, dict) else card
        tmp: Path | None = None
        try:
            if isinstance(module_or_file, (str, Path)):
                path = Path(module_or_file)
                if not path.is_file():
                    raise MissingFile(f"no such file: {path}" + (" (it is a folder)" if path.is_dir() else ""))
                _check_file(path, has_card=card_model is not None)
            else:
                if card_model is None:
                    raise UsageError("push(module, card): a module needs a card (see partsbin.parts.describe.card_for)")
                from partsbin.parts.safetensors_format import save_state_dict

                fd, name = tempfile.mkstemp(suffix=".safetensors")
                os.close(fd)
                tmp = Path(name)
                save_state_dict(module_or_file.state_dict(), tmp, {CARD_METADATA_KEY: card_model.embedded_json()})
                path = tmp
            # A module's card is already inside the file it was written to; sending it again
            # as a form field would only make the registry parse and compare it twice.
            card_json = (
                card_model.model_dump_json(exclude={"version", "digest", "size"})
                if card_model and tmp is None
                else None
            )
            label = f"push {card_model.name if card_model else path.name}"
            size = path.stat().st_size
            with progress_bar(self.progress, size, label) as advance:
                response = None
                if size >= DIRECT_THRESHOLD and self.direct is not False:
                    # With S3 storage the bytes go straight to the bucket, not through the registry.
                    response = push_direct(self, path, card_json, advance)
                    self.direct = response is not None

                def send() -> httpx.Response:
                    body, headers = _multipart(path, card_json, advance)
                    timeout = self._push_timeout(size)
                    return raise_for_status(
                        self._http.post("/components", content=body, headers=headers, timeout=timeout)
                    )

                # Publishing is idempotent (the same bytes under a name are one version),
                # so a network error or a 503 is retried, for up to half a minute.
                if response is None:
                    response = with_retries(send, attempts=None, deadline=time.monotonic() + PUSH_RETRY_SECONDS)
            comp = Component.from_api(response.json())
            comp.created = response.status_code == 201
            return comp
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def _push_timeout(self, size: int) -> httpx.Timeout:
        """Connect and inactivity timeouts, as every request has; the wait for the answer
        after the last byte also covers the registry storing the blob, which grows with
        the file (a second per 10 MiB on top of the usual read timeout)."""
        base = self._http.timeout
        read = None if base.read is None else base.read + size / (10 * 1024 * 1024)
        return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)

    # -- lookups -----------------------------------------------------------------------
    def info(self, ref: str) -> Component:
        """What the registry holds for ``ref`` (nothing is downloaded).

        Args:
            ref: ``ns/name``, ``ns/name@3``, ``ns/name:alias`` or ``sha256:HEX``.

        Returns:
            The :class:`Component` (``path`` unset).

        Raises:
            InvalidName: a malformed ref. ComponentNotFound: nothing by that ref.
        """
        return Component.from_api(self._get(parse_ref(ref).api_path()))

    def list(
        self,
        *,
        limit: int | None = None,
        role: str | None = None,
        arch: str | None = None,
        group: str | None = None,
        dataset: str | None = None,
        namespace: str | None = None,
        prefix: str | None = None,
        tag: str | None = None,
        q: str | None = None,
        include_yanked: bool = False,
    ) -> builtins.list[Component]:
        """Components matching every filter given, oldest first.

        Args:
            limit: at most this many.
            role, arch, dataset, namespace, tag: equal to.
            group: an anchor's digest (members of its group).
            prefix: ``namespace/name`` starts with it. q: text in the name or the description.
            include_yanked: list yanked versions too.

        Returns:
            The components.

        Raises:
            InvalidUpload: a filter the registry refuses (a malformed digest).
        """
        filters = {
            "role": role,
            "arch": arch,
            "group": group,
            "dataset": dataset,
            "namespace": namespace,
            "prefix": prefix,
            "tag": tag,
            "q": q,
            "include_yanked": include_yanked or None,
        }
        out: builtins.list[Component] = []
        for item in self._pages("/components", limit=min(limit, 1000) if limit else None, **filters):
            out.append(Component.from_api(item))
            if limit is not None and len(out) >= limit:
                break
        return out

    def versions(self, name: str) -> builtins.list[Component]:
        """Every version of ``ns/name``, yanked ones included, oldest first.

        Raises:
            InvalidName: not ``ns/name``. ComponentNotFound: no such name.
        """
        ns, n = validate_name(name)
        return [Component.from_api(c) for c in self._get(f"/components/{ns}/{n}/versions")]

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

    def load(self, ref: str, device: str | torch.device = "cpu") -> nn.Module:
        """The module ``ref`` stores, built from its card with its weights (:meth:`pull` first).

        Raises:
            As :meth:`pull`.
        """
        return self.pull(ref).build(device)

    def compatible(self, *, head: str | None = None, extractor: str | None = None) -> builtins.list[dict[str, Any]]:
        """Components that recombine with ``head`` (extractors) or ``extractor`` (heads).

        Returns:
            Items with the ``component``, its ``role``, the ``status`` (measured first) and the ``reasons``.

        Raises:
            UsageError: not exactly one of ``head`` and ``extractor``. ComponentNotFound: no such part.
        """
        if (head is None) == (extractor is None):
            raise UsageError("compatible(): give exactly one of head= or extractor=")
        params = {"head": head} if head is not None else {"extractor": extractor}
        out = []
        for item in self._pages("/compatible", **params):
            item["component"] = Component.from_api(item["component"])
            out.append(item)
        return out

    def groups(self) -> builtins.list[dict[str, Any]]:
        """Every compatibility group: its anchor, kind and member count.

        Raises:
            Unauthorized: the registry needs a token to read.
        """
        return list(self._pages("/groups"))

    def group(self, group_id: str) -> dict[str, Any]:
        """One group (by its anchor's digest) and its members.

        Raises:
            ComponentNotFound: no such group.
        """
        return self._get(f"/groups/{group_id.removeprefix('sha256:')}")

    # -- management --------------------------------------------------------------------
    def aliases(self, name: str) -> dict[str, int]:
        """Every alias of ``name`` (``ns/name``) and the version it points at.

        Returns:
            ``{alias: version}``, by alias.

        Raises:
            ComponentNotFound: no component of that name.
        """
        return {a["alias"]: int(a["version"]) for a in self._get(f"/components/{name}/aliases")}

    def set_alias(self, name: str, alias: str, version: int) -> dict[str, Any]:
        """Point ``name:alias`` at ``version`` (admins and the namespace's owners).

        Returns:
            The alias as stored.

        Raises:
            Unauthorized: the token may not move aliases there. ComponentNotFound: no such version.
        """
        return self._send("PUT", f"/components/{name}/aliases/{quote(alias)}", json={"version": version})

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``name:alias``.

        Raises:
            Unauthorized, ComponentNotFound: as :meth:`set_alias`.
        """
        self._send("DELETE", f"/components/{name}/aliases/{quote(alias)}")

    def yank(self, ref: str, reason: str) -> Component:
        """Yank an exact version: it stays downloadable by its version and digest, and
        ``ns/name`` no longer resolves to it.

        Returns:
            The component, yanked.

        Raises:
            UsageError: not an exact version. Unauthorized, ComponentNotFound.
        """
        r = parse_ref(ref)
        if r.kind != "version":
            raise UsageError(f"yank takes an exact version: {ref}@VERSION (see the versions with `partsbin versions`)")
        return Component.from_api(self._send("POST", f"{r.api_path()}/yank", json={"reason": reason}))

    def unyank(self, ref: str) -> Component:
        """Undo :meth:`yank`.

        Returns:
            The component, no longer yanked.

        Raises:
            UsageError: not an exact version. Unauthorized, ComponentNotFound.
        """
        r = parse_ref(ref)
        if r.kind != "version":
            raise UsageError(f"unyank takes an exact version: {ref}@VERSION")
        return Component.from_api(self._send("DELETE", f"{r.api_path()}/yank"))

    def post_evaluation(
        self,
        *,
        extractor: str,
        head: str,
        dataset: str,
        value: float,
        samples: int,
        bn_mode: str,
        batch_size: int | None = None,
        metric: str = "recombination_accuracy",
        details: dict[str, Any] | None = None,
        classes: int | None = None,
        job: tuple[int, str] | None = None,
        finetune_steps: int | None = None,
        data_digest: str | None = None,
    ) -> dict[str, Any]:
        """Record a measured recombination.

        Args:
            extractor, head: the refs of the pair. dataset: what it was measured on.
            value: the accuracy (0 to 1). samples: test images. bn_mode: batch, running or recalibrated.
            classes: how many classes the prediction was over (chance level is 1/classes).
            job: (job id, lease id) when a worker measured it for a job it holds.
            finetune_steps: steps the pair was fine-tuned after recombining (a transfer curve's point).
            data_digest: what the test images were (``Images.data_digest``: the source's content
                digest, selections, transforms, size): the registry compares it with the test set the
                extractor's card records, and only a measurement on that set is the pair's
                recombination accuracy.

        Returns:
            The evaluation as stored, with its id and trust.

        Raises:
            Unauthorized: no token. InvalidUpload: a field the registry refuses. ComponentNotFound.
        """
        body = {
            "extractor": extractor,
            "head": head,
            "dataset": dataset,
            "metric": metric,
            "value": value,
            "samples": samples,
            "bn_mode": bn_mode,
            "batch_size": batch_size,
            "classes": classes,
            "data_digest": data_digest,
            "details": {**(details or {}), **({} if finetune_steps is None else {"finetune_steps": finetune_steps})},
        }
        if job is not None:
            body["job_id"], body["lease_id"] = job
        return self._send("POST", "/evaluations", json=body)

    def whoami(self) -> dict[str, Any]:
        """The caller's token: ``token_id`` (None when anonymous), ``scope``, ``namespaces``, ``owner``.

        Raises:
            Unauthorized: a token the registry does not know (or revoked, or expired).
        """
        return self._get("/whoami")

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

    def evaluations(self, *, extractor: str | None = None, head: str | None = None) -> builtins.list[dict[str, Any]]:
        """The evaluations of ``extractor`` and/or ``head``.

        Raises:
            ComponentNotFound: no such part.
        """
        return self._get("/evaluations", extractor=extractor, head=head)

    def paths(self, *, extractor: str, head: str, max_bridges: int | None = None) -> dict[str, Any]:
        """Ways from ``extractor`` to ``head``, best first (``GET /paths``): direct through a
        shared group, or through bridges (adapters, transforms); each step says why.

        Returns:
            ``{"paths": [...]}``, each with its ``kind``, ``bridges``, ``status`` and ``measured_accuracy``.

        Raises:
            ComponentNotFound: no such part.
        """
        first = self._get("/paths", extractor=extractor, head=head, max_bridges=max_bridges, limit=1000)
        paths, cursor = list(first["paths"]), first.get("next_cursor")
        while cursor:  # every page: the ranking is over all of them
            page = self._get(
                "/paths", extractor=extractor, head=head, max_bridges=max_bridges, limit=1000, cursor=cursor
            )
            paths += page["paths"]
            cursor = page.get("next_cursor")
        return {**first, "paths": paths, "next_cursor": None}

    def transform_gallery(
        self,
        transform: str,
        old_embeddings: torch.Tensor,
        side_info: torch.Tensor | None = None,
        *,
        batch_size: int = 4096,
    ) -> torch.Tensor:
        """FCT: map a stored gallery of old embeddings (and their side-information vectors)
        into the new model's space through a stored ``transform``, in batches, without
        running any backbone (no backfilling).

        Args:
            transform: ref of a ``transform`` component.
            old_embeddings: (N, C) or (N, C, 1, 1); junction features (N, C, H, W) for a
                transform of junction features.
            side_info: (N, D) or (N, D, 1, 1), for a transform that takes side-information.
            batch_size: embeddings per batch.

        Returns:
            The new-space embeddings, shaped as given.

        Raises:
            UsageError: not a transform, or embeddings of the wrong kind or width.
        """
        from partsbin.client.bridges import transform_embeddings
        from partsbin.parts.card import bridge_space

        comp = self.pull(transform)
        if comp.card.role != "transform":
            raise UsageError(f"{comp.ref} is a {comp.card.role}, not a transform")
        # The MLP's ReLUs do not commute with pooling: each transform maps what it was fitted on.
        maps = old_embeddings.dim() == 4 and old_embeddings.shape[2:].numel() > 1
        space = bridge_space("transform", comp.card.bridge) if comp.card.bridge is not None else "embedding"
        if maps != (space == "junction"):
            kind = "junction features (N, C, H, W)" if maps else "pooled embeddings"
            raise UsageError(
                f"{comp.ref} is a transform of {'junction features' if space == 'junction' else 'pooled embeddings'}; "
                f"these are {kind}"
            )
        config = comp.card.arch.config
        takes = int(config.get("in_chans", 0)) + int(config.get("side_chans", 0) or 0)
        given = int(old_embeddings.shape[1]) + (int(side_info.shape[1]) if side_info is not None else 0)
        if takes != given:
            raise UsageError(
                f"{comp.ref} takes {takes} channels (old embedding + side-information); these give {given}"
            )
        return transform_embeddings(comp.build(), old_embeddings, side_info, batch_size=batch_size)

    def bench_path(
        self,
        extractor: str,
        head: str,
        via: str | builtins.list[str] = "auto",
        *,
        data: Any = None,
        batch_size: int = 256,
        shuffle_seed: int = 0,
        post: bool = True,
    ) -> dict[str, Any]:
        """Measure the path from ``extractor`` to ``head`` through bridges like a direct
        pair, and post it so that ``/paths`` ranks it.

        Args:
            via: "auto" (the best path ``/paths`` finds) or the bridges' refs.
            data: the extractor's test data, if not the card's (a data spec or a local path).
            batch_size, shuffle_seed: the batches, as :meth:`bench`'s.
            post: post it as an evaluation (metric ``bridged_recombination_accuracy``).

        Returns:
            ``{"accuracy", "samples", "via", ...}``.

        Raises:
            Incompatible: no path. UsageError: bad data. Unauthorized: posting without a token.
        """
        from partsbin.client.bridges import bench_path

        return bench_path(
            self, extractor, head, via, data=data, batch_size=batch_size, shuffle_seed=shuffle_seed, post=post
        )

    def bench(
        self,
        extractors: builtins.list[str],
        heads: builtins.list[str],
        *,
        data: dict[str, Any] | None = None,
        bn_mode: Literal["batch", "running", "recalibrate"] = "batch",
        batch_size: int = 256,
        batch_composition: Literal["common-classes", "all-classes"] = "common-classes",
        shuffle_seed: int = 0,
        threads: int | None = None,
        correlation: bool = False,
        latency: bool = False,
        latency_device: str = "cpu",
        post: bool = True,
        distributed: bool = False,
        heads_per_job: int = 8,
        namespace: str | None = None,
        poll_seconds: float = 1.0,
    ) -> BenchResult:
        """The recombination matrix of ``extractors`` × ``heads``, each extractor on its own
        task's test images (as its card records them).

        Args:
            data: an extractor (by ref, name or task) → its test data: a local copy of what its
                card records, or a whole data spec.
            bn_mode: BatchNorm: batch statistics (the paper's), running, or recalibrated on the test images.
            batch_size, batch_composition, shuffle_seed: how the test images are batched.
            threads: torch CPU threads while measuring.
            correlation: also the extractors' feature correlation. latency: also latency and
                throughput on ``latency_device``.
            post: post every cell as an evaluation (the token is checked first).
            distributed: split the matrix into ``evaluate`` jobs for workers (``heads_per_job``
                heads each, in ``namespace``) and wait for them.

        Returns:
            The :class:`~partsbin.client.bench_result.BenchResult` (``table()``, ``heatmap()``, ``to_json()``).

        Raises:
            UsageError: arguments that do not fit, or test data that is not the recorded data.
            DataMissing: the test data is not here. Unauthorized: posting without a token.
        """
        from partsbin.client.bench import bench
        from partsbin.parts.data.access import DataAccess, data_access

        # A test set recorded as a registered dataset is pulled (and verified) through this client.
        with data_access(DataAccess(datasets=self.dataset_resolver())):
            return bench(
                self,
                extractors,
                heads,
                data=data,
                bn_mode=bn_mode,
                batch_size=batch_size,
                batch_composition=batch_composition,
                shuffle_seed=shuffle_seed,
                threads=threads,
                correlation=correlation,
                latency=latency,
                latency_device=latency_device,
                post=post,
                distributed=distributed,
                heads_per_job=heads_per_job,
                namespace=namespace,
                poll_seconds=poll_seconds,
            )

    # -- recombination -----------------------------------------------------------------
    def _vouch(self, ext: Component, hd: Component, *, strict: bool) -> None:
        if _vouched(self, ext, hd):
            return
        message = (
            f"{ext.ref} and {hd.ref} share no compatibility group and nothing measured them together on "
            f"{ext.ref}'s test set: the model may predict no better than chance. Measure the pair with "
            f"`partsbin bench -e {ext.ref} -H {hd.ref}`, or find a bridge with `partsbin paths --extractor "
            f"{ext.ref} --head {hd.ref}`"
        )
        if strict:
            raise Incompatible(message, code="unvouched")
        warnings.warn(message, UnvouchedRecombination, stacklevel=3)

    def assemble(
        self,
        extractor: str | Component,
        head: str | Component,
        *,
        bn_mode: Literal["batch", "running"] = "batch",
        device: str | torch.device = "cpu",
        via: str | builtins.list[str] | None = None,
        strict: bool = False,
    ) -> AssembledModel:
        """``head(extractor(x))`` from two stored parts.

        Args:
            extractor, head: refs (or pulled components).
            bn_mode: BatchNorm with batch statistics (the default: the paper's choice for
                recombined networks, §4) or the stored running ones.
            device: where the model is built.
            via: "auto" goes through the best path ``/paths`` finds (direct, or through
                bridges: ``head(bridge_n(...bridge_1(extractor(x))))``); a list of bridge refs
                names the chain.
            strict: refuse (instead of warning about) two parts that share no group and
                have no measurement on the extractor's own test set.

        Returns:
            The :class:`~partsbin.client.assemble.AssembledModel` (an ``nn.Module``).

        Warns:
            UnvouchedRecombination: nothing says the two parts work together (not with ``strict``).

        Raises:
            Incompatible: the feature interfaces differ (naming both), or no path exists; with
                ``strict``, parts nothing vouches for.
            ComponentNotFound, NotCached: as :meth:`pull`.
        """
        ext = (
            extractor
            if isinstance(extractor, Component) and extractor.path
            else self.pull(extractor if isinstance(extractor, str) else extractor.ref)
        )
        hd = (
            head
            if isinstance(head, Component) and head.path
            else self.pull(head if isinstance(head, str) else head.ref)
        )
        from partsbin.client.assemble import AssembledModel, check_junctions

        if via is not None:
            from partsbin.client.bridges import bridged_extractor, resolve_via

            bridges = resolve_via(self, ext, hd, via)
            if bridges:
                model = AssembledModel(
                    bridged_extractor(self, ext, bridges, device),
                    hd.build(device),
                    bn_mode=bn_mode,
                    extractor_ref=ext.ref,
                    head_ref=hd.ref,
                    labels=hd.card.interface.output.labels if hd.card.interface.output else None,
                )
                model.via = [b.ref for b in bridges]
                return model
        check_junctions(ext.ref, ext.card, hd.ref, hd.card)
        self._vouch(ext, hd, strict=strict)
        return AssembledModel(
            ext.build(device),
            hd.build(device),
            bn_mode=bn_mode,
            extractor_ref=ext.ref,
            head_ref=hd.ref,
            labels=hd.card.interface.output.labels if hd.card.interface.output else None,
        )


def _vouched(registry: Registry, ext: Component, hd: Component) -> bool:
    """Something says ``hd`` works on ``ext``'s features: the same network, a shared
    compatibility group, or a measurement on the extractor's own test set."""
    if hd.card.compat.sibling == ext.ref or hd.digest in ext.card.compat.anchors:
        return True
    if set(ext.card.compat.anchors) & set(hd.card.compat.anchors):
        return True
    if registry.offline:
        return False  # measurements live in the registry
    # Only a measurement someone vouches for (the registry's ranking rule): anyone may post one.
    return any(
        ev.get("own_test")
        and ev["metric"] == "recombination_accuracy"
        and ev["bn_mode"] == "batch"
        and ev.get("trust") in ("admin", "owner", "worker")
        for ev in registry.evaluations(extractor=ext.ref, head=hd.ref)
    )


def _card(data: dict[str, Any]) -> Card:
    try:
        return Card.model_validate({k: v for k, v in data.items() if k not in REGISTRY_FIELDS})
    except ValidationError as exc:
        raise InvalidCard(f"invalid card: {describe_validation_error(exc)}") from None


def _check_file(path: Path, *, has_card: bool) -> None:
    """What the registry would refuse at once, refused before the upload."""
    try:
        with path.open("rb") as fp:
            header = read_header(fp, path.stat().st_size)
    except SafetensorsError as exc:
        raise InvalidFile(f"{path} is not a safetensors file: {exc}") from None
    if not has_card and CARD_METADATA_KEY not in header.metadata:
        raise InvalidCard(
            f"{path} has no card: give one with --card card.json (push(file, card) in Python), or embed it in the "
            f"file's __metadata__[{CARD_METADATA_KEY!r}]"
        )


def _check_answers(ref: Ref, comp: Component) -> None:
    """The registry answered for the ref that was asked (an exact version or a digest)."""
    if (ref.kind == "version" and (comp.name, comp.version) != (ref.full_name, ref.version)) or (
        ref.kind == "digest" and comp.hex != ref.digest
    ):
        raise RegistryError(f"asked for {ref}, the registry answered with {comp.ref}; refused", code="invalid_response")


def _multipart(path: Path, card_json: str | None, advance: Any) -> tuple[Iterator[bytes], dict[str, str]]:
    """A multipart/form-data body (RFC 7578) streamed from disk in 1 MiB chunks, with its
    length known up front. httpx's own encoder reads files 64 KiB at a time, which costs
    a quarter of the upload throughput here."""
    boundary = uuid.uuid4().hex
    head = b""
    if card_json is not None:
        head += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="card"\r\nContent-Type: application/json\r\n\r\n'
            ).encode()
            + card_json.encode()
            + b"\r\n"
        )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="component.safetensors"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = path.stat().st_size

    def body() -> Iterator[bytes]:
        yield head
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                advance(len(chunk))
                yield chunk
        yield tail

    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + size + len(tail)),
    }
    return body(), headers
