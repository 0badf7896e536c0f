"""``Registry``: the Python client of a partsbin registry."""

from __future__ import annotations

import builtins
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from partsbin import __version__
from partsbin.client._http import raise_for_status, with_retries
from partsbin.client.cache import Cache
from partsbin.client.credentials import stored_token
from partsbin.client.direct import DIRECT_THRESHOLD, push_direct
from partsbin.client.errors import (
    InvalidCard,
    InvalidFile,
    MissingFile,
    NotCached,
    OfflineMode,
    RegistryError,
    Unauthorized,
    UsageError,
)
from partsbin.client.jobs import JobsAPI
from partsbin.client.progress import progress_bar
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
    from partsbin.client.bench import BenchResult
    from partsbin.client.datasets import Dataset
    from partsbin.client.jobs import Job
    from partsbin.parts.data.access import LocalDataset
    from partsbin.parts.jobs import JobSpec

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


class Registry:
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
        )
        self.cache = Cache(Path(cache_dir) if cache_dir else None)
        #: Move large files straight to and from the registry's S3 bucket when it offers
        #: that (None: find out on the first push); False: always through the registry.
        self.direct = direct
        self.progress = progress
        self.jobs = JobsAPI(self)

    def close(self) -> None:
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
        existing ``.safetensors`` file. Returns the stored component with its version;
        ``created`` is False when identical bytes were already published under the name.

        The card and the file are checked here before anything is sent: a bad card, a
        missing card or a file that is not safetensors (a ``torch.save`` pickle) fails at
        once instead of after the upload."""
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
        return Component.from_api(self._get(parse_ref(ref).api_path()))

    def list(self, *, limit: int | None = None, **filters: Any) -> builtins.list[Component]:
        """Components matching the filters (role, arch, group, dataset, namespace, prefix,
        tag, q, include_yanked), oldest first; at most ``limit`` of them."""
        out: builtins.list[Component] = []
        for item in self._pages("/components", limit=min(limit, 1000) if limit else None, **filters):
            out.append(Component.from_api(item))
            if limit is not None and len(out) >= limit:
                break
        return out

    def versions(self, name: str) -> builtins.list[Component]:
        """Every version of ``ns/name``, yanked ones included, oldest first."""
        ns, n = validate_name(name)
        return [Component.from_api(c) for c in self._get(f"/components/{ns}/{n}/versions")]

    def pull(self, ref: str) -> Component:
        """Download a component into the cache (verifying its sha256) and return it with
        ``path`` set. A component already cached is not transferred again; an exact
        version or digest already cached needs no request at all."""
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
        return self.pull(ref).build(device)

    def compatible(self, *, head: str | None = None, extractor: str | None = None) -> builtins.list[dict[str, Any]]:
        """Components that recombine with ``head`` (extractors) or ``extractor`` (heads),
        each with its ``component``, ``role``, ``status`` and ``reasons``."""
        if (head is None) == (extractor is None):
            raise UsageError("compatible(): give exactly one of head= or extractor=")
        params = {"head": head} if head is not None else {"extractor": extractor}
        out = []
        for item in self._pages("/compatible", **params):
            item["component"] = Component.from_api(item["component"])
            out.append(item)
        return out

    def groups(self) -> builtins.list[dict[str, Any]]:
        return list(self._pages("/groups"))

    def group(self, group_id: str) -> dict[str, Any]:
        return self._get(f"/groups/{group_id.removeprefix('sha256:')}")

    # -- management --------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int) -> dict[str, Any]:
        return self._send("PUT", f"/components/{name}/aliases/{quote(alias)}", json={"version": version})

    def delete_alias(self, name: str, alias: str) -> None:
        self._send("DELETE", f"/components/{name}/aliases/{quote(alias)}")

    def yank(self, ref: str, reason: str) -> Component:
        r = parse_ref(ref)
        if r.kind != "version":
            raise UsageError(f"yank takes an exact version: {ref}@VERSION (see the versions with `partsbin versions`)")
        return Component.from_api(self._send("POST", f"{r.api_path()}/yank", json={"reason": reason}))

    def unyank(self, ref: str) -> Component:
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
    ) -> dict[str, Any]:
        """Record a measured recombination. ``classes``: how many classes the prediction
        was over (chance level is 1/classes). ``job``: (job id, lease id) when a worker
        measured it for a job it holds. ``finetune_steps``: how many steps the pair was
        fine-tuned for after recombining (a ``transfer`` curve's point; stored in
        ``details`` and answered as the evaluation's ``finetune_steps``)."""
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
            "details": {**(details or {}), **({} if finetune_steps is None else {"finetune_steps": finetune_steps})},
        }
        if job is not None:
            body["job_id"], body["lease_id"] = job
        return self._send("POST", "/evaluations", json=body)

    def whoami(self) -> dict[str, Any]:
        """The caller's token: ``token_id`` (None when anonymous), ``scope``, ``namespaces``, ``owner``."""
        return self._get("/whoami")

    def check_can_publish(self, namespace: str | None, action: str) -> None:
        """Raise :class:`Unauthorized` now, before any work, if this token may not publish
        into ``namespace`` (any namespace when None: posting evaluations)."""
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
        return self._get("/evaluations", extractor=extractor, head=head)

    def paths(self, *, extractor: str, head: str, max_bridges: int | None = None) -> dict[str, Any]:
        """Ways from ``extractor`` to ``head``, best first (``GET /paths``): direct through a
        shared group, or through bridges (adapters, transforms); each step says why."""
        return self._get("/paths", extractor=extractor, head=head, max_bridges=max_bridges)

    def transform_gallery(
        self, transform: str, old_embeddings: torch.Tensor, side_info: torch.Tensor | None = None, **kw: Any
    ) -> torch.Tensor:
        """FCT: map a stored gallery of old embeddings (and their side-information vectors)
        into the new model's space through a stored ``transform``, in batches, without
        running any backbone (no backfilling). (N, C) or (N, C, 1, 1) in, the same out;
        junction features (N, C, H, W) for a transform of junction features."""
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
        return transform_embeddings(comp.build(), old_embeddings, side_info, **kw)

    def bench_path(
        self, extractor: str, head: str, via: str | builtins.list[str] = "auto", **kw: Any
    ) -> dict[str, Any]:
        """Measure the path from ``extractor`` to ``head`` through bridges (``via``: "auto" or
        their refs) like a direct pair, and post it so that ``/paths`` ranks it
        (:func:`partsbin.client.bridges.bench_path`)."""
        from partsbin.client.bridges import bench_path

        return bench_path(self, extractor, head, via, **kw)

    def bench(self, extractors: builtins.list[str], heads: builtins.list[str], **kw: Any) -> BenchResult:
        """The recombination matrix of ``extractors`` × ``heads`` (see :func:`partsbin.client.bench.bench`);
        posts each cell as an evaluation unless ``post=False``."""
        from partsbin.client.bench import bench
        from partsbin.parts.data.access import DataAccess, data_access

        # A test set recorded as a registered dataset is pulled (and verified) through this client.
        with data_access(DataAccess(datasets=self.dataset_resolver())):
            return bench(self, extractors, heads, **kw)

    # -- jobs --------------------------------------------------------------------------
    def submit(
        self,
        spec: dict[str, Any] | JobSpec,
        *,
        max_attempts: int = 3,
        wait: bool = False,
        timeout: float | None = None,
        poll_seconds: float = 1.0,
    ) -> Job:
        """Submit a job of any kind to the registry's queue; a worker runs it.

        Args:
            spec: the job spec (a mapping or a spec model), of any kind ``partsbin train
                --schema`` lists; checked here first, so a bad field is named at once.
            max_attempts: how many times a job whose worker died or lost it is retried.
            wait: follow the job until it ends (:meth:`Job.wait`).
            timeout: with ``wait``, give up after this many seconds.
            poll_seconds: with ``wait``, how often to ask.

        Returns:
            The :class:`~partsbin.client.jobs.Job`; succeeded (``job.result`` set) with ``wait``.

        Raises:
            InvalidSpec: the spec does not validate (each bad field named).
            Unauthorized: the token may not publish into the spec's namespace.
            InvalidUpload: the registry refused it (a path outside its data roots, a limit exceeded).
            JobFailed: with ``wait``, the job failed or was cancelled.
        """
        from partsbin.client.jobs import Job
        from partsbin.parts.jobs import parse_job_spec

        parsed = parse_job_spec(spec)
        self.check_can_publish(parsed.namespace, f"submitting a {parsed.kind} job into {parsed.namespace!r}")
        job = Job(self, self.jobs.submit(parsed.model_dump(mode="json"), max_attempts))
        return job.wait(timeout=timeout, poll_seconds=poll_seconds) if wait else job

    def job(self, job_id: int) -> Job:
        """The job ``job_id``, as the registry has it now.

        Raises:
            ComponentNotFound: no such job.
        """
        from partsbin.client.jobs import Job

        return Job(self, self.jobs.get(job_id))

    def adapt(
        self,
        extractor: str,
        rp_head: str,
        data: Any,
        *,
        test: Any = None,
        head: str | None = None,
        steps: int | None = None,
        settings: dict[str, Any] | None = None,
        name: str | None = None,
        namespace: str | None = None,
        evaluate: bool = True,
        wait: bool = True,
        poll_seconds: float = 1.0,
    ) -> Job:
        """Adapt ``extractor`` to the unlabelled images of ``data`` through its frozen RP
        head (paper §5.1), as an ``adapt`` job.

        Args:
            extractor: ref of the source extractor.
            rp_head: ref of the RP aux head it was trained against.
            data: the target images (a data spec: mapping or ``DataSpec``).
            test: labelled target test data (default: ``data``'s test split).
            head: the source task head the rows are measured with (default: the extractor's sibling).
            steps: adaptation steps (default 1000); ``settings`` sets the others.
            name, namespace: what the adapted extractor is published as (default: after the extractor).
            evaluate: measure Table 2's rows.
            wait: follow the job until it ends.

        Returns:
            The job; ``job.result`` is an ``AdaptResult`` (``rows``, ``adapted``).

        Raises:
            InvalidSpec, Unauthorized, JobFailed: as :meth:`submit`.
        """
        spec = {
            "kind": "adapt",
            "name": name,
            "namespace": namespace,
            "extractor": extractor,
            "rp_head": rp_head,
            "data": _data(data),
            "test": _data(test),
            "head": head,
            "evaluate": evaluate,
            "settings": {**(settings or {}), **({"steps": steps} if steps is not None else {})},
        }
        return self.submit(_given(spec), wait=wait, poll_seconds=poll_seconds)

    def transfer(
        self,
        extractor: str,
        head: str,
        data: Any,
        *,
        steps: builtins.list[int] | tuple[int, ...] = (0,),
        test: Any = None,
        settings: dict[str, Any] | None = None,
        name: str | None = None,
        namespace: str | None = None,
        publish: bool = False,
        wait: bool = True,
        poll_seconds: float = 1.0,
    ) -> Job:
        """Recombine ``extractor`` with ``head``, fine-tune on ``data``, and measure after
        each count of ``steps`` (paper §5.3), as a ``transfer`` job.

        Returns:
            The job; ``job.result`` is a ``TransferResult`` (``curve``).

        Raises:
            InvalidSpec, Unauthorized, JobFailed: as :meth:`submit`.
        """
        spec = {
            "kind": "transfer",
            "name": name,
            "namespace": namespace,
            "extractor": extractor,
            "head": head,
            "data": _data(data),
            "test": _data(test),
            "steps": list(steps),
            "settings": dict(settings or {}),
            "publish": publish,
        }
        return self.submit(_given(spec), wait=wait, poll_seconds=poll_seconds)

    def stitch(
        self,
        extractor: str,
        head: str,
        name: str,
        *,
        method: str = "trained",
        data: Any = None,
        test: Any = None,
        steps: int | None = None,
        to_group: bool = False,
        target_extractor: str | None = None,
        settings: dict[str, Any] | None = None,
        wait: bool = False,
        poll_seconds: float = 1.0,
    ) -> Job:
        """An adapter ``name`` (``NAMESPACE/NAME``) from ``extractor``'s features to ``head``,
        both frozen, as a ``stitch`` job: ``method`` "trained", "least-squares" or "procrustes".

        Returns:
            The job; ``job.result`` is a ``StitchResult`` (with and without the adapter).

        Raises:
            UsageError: ``name`` is not NAMESPACE/NAME. InvalidSpec, Unauthorized, JobFailed: as :meth:`submit`.
        """
        namespace, short = _split_name(name, "adapter")
        spec = {
            "kind": "stitch",
            "name": short,
            "namespace": namespace,
            "extractor": extractor,
            "head": head,
            "method": method,
            "bridge_to": "group" if to_group else "head",
            "target_extractor": target_extractor,
            "data": _data(data),
            "test": _data(test),
            "settings": {**(settings or {}), **({"steps": steps} if steps is not None else {})},
        }
        return self.submit(_given(spec), wait=wait, poll_seconds=poll_seconds)

    def fct(
        self,
        old_extractor: str,
        new_extractor: str,
        name: str,
        *,
        space: str = "embedding",
        side_info: bool | str = True,
        data: Any = None,
        test: Any = None,
        new_head: str | None = None,
        images: int | None = None,
        steps: int | None = None,
        settings: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        wait: bool = False,
        poll_seconds: float = 1.0,
    ) -> Job:
        """A Forward Compatible Training transform ``name`` (``NAMESPACE/NAME``) from
        ``old_extractor``'s features to ``new_extractor``'s, as an ``fct`` job: with a
        side-info model trained on the old data (``side_info=True``), a stored one (its
        ref) or none; ``space`` "embedding" (a stored gallery, :meth:`transform_gallery`)
        or "junction" (for the new head: ``assemble(old, new_head, via=[transform])``).
        ``options``: the spec's other fields (``hidden``, ``side_dim``...).

        Returns:
            The job; ``job.result`` is an ``FCTResult`` (retrieval, classification).

        Raises:
            UsageError: ``name`` is not NAMESPACE/NAME. InvalidSpec, Unauthorized, JobFailed: as :meth:`submit`.
        """
        namespace, short = _split_name(name, "transform")
        spec = {
            **(options or {}),
            "kind": "fct",
            "name": short,
            "namespace": namespace,
            "old_extractor": old_extractor,
            "new_extractor": new_extractor,
            "space": space,
            "side_info": side_info,
            "new_head": new_head,
            "images": images,
            "data": _data(data),
            "test": _data(test),
            "settings": {**(settings or {}), **({"steps": steps} if steps is not None else {})},
        }
        return self.submit(_given(spec), wait=wait, poll_seconds=poll_seconds)

    def update_head(
        self,
        head: str,
        reference_extractor: str,
        *,
        data: Any,
        classes: builtins.list[str],
        test: Any = None,
        reference_bn: str = "batch",
        train_layers: str = "all",
        settings: dict[str, Any] | None = None,
        wait: bool = True,
        poll_seconds: float = 1.0,
    ) -> Job:
        """Extend ``head`` to ``classes``, fine-tuned on ``data`` through the frozen
        ``reference_extractor``, published as the head's next version (paper §5.2), as an
        ``update-head`` job.

        Returns:
            The job; ``job.result`` is an ``UpdateHeadResult`` and ``job.refs[0]`` the new version.

        Raises:
            InvalidSpec, Unauthorized, JobFailed: as :meth:`submit`.
        """
        spec = {
            "kind": "update-head",
            "head": head,
            "reference_extractor": reference_extractor,
            "data": _data(data),
            "test": _data(test),
            "classes": list(classes),
            "reference_bn": reference_bn,
            "train_layers": train_layers,
            "settings": dict(settings or {}),
        }
        return self.submit(_given(spec), wait=wait, poll_seconds=poll_seconds)

    # -- datasets ------------------------------------------------------------------------
    def push_data(
        self,
        path: str | Path,
        *,
        name: str,
        description: str = "",
        license: str | None = None,
        source: str | None = None,
        tags: builtins.list[str] | None = None,
    ) -> Dataset:
        """Register a dataset: an ``.npz`` of arrays, or a folder of ``<class>/<image>``
        (``<split>/<class>/<image>``) packed as a tar; the registry reads its classes,
        splits and image shape from the file.

        Args:
            path: the .npz, the tar, or the folder.
            name: NAMESPACE/NAME it is registered as (the registry assigns the version).
            description, license, source, tags: what the data card says for people.

        Returns:
            The :class:`~partsbin.client.datasets.Dataset` (``created`` False for bytes already there).

        Raises:
            MissingFile: ``path`` does not exist. UsageError: not a dataset file. Unauthorized, InvalidUpload.
        """
        from partsbin.client.datasets import push_data

        return push_data(self, path, name=name, description=description, license=license, source=source, tags=tags)

    def pull_data(self, ref: str) -> Dataset:
        """Download a registered dataset into the cache (sha256 verified); ``path`` set.

        Raises:
            ComponentNotFound: no such dataset. DigestMismatch: the bytes did not hash to its digest.
        """
        from partsbin.client.datasets import pull_data

        return pull_data(self, ref)

    def datasets(self, *, namespace: str | None = None) -> builtins.list[Dataset]:
        """Every registered dataset (of ``namespace``), oldest first."""
        from partsbin.client.datasets import list_datasets

        return list_datasets(self, namespace)

    def dataset_resolver(self) -> Callable[[str], LocalDataset]:
        """What a job's ``{"dataset": REF}`` data specs are read through: pull and verify."""
        return lambda ref: self.pull_data(ref).local()

    # -- recombination -----------------------------------------------------------------
    def assemble(
        self,
        extractor: str | Component,
        head: str | Component,
        *,
        bn_mode: Literal["batch", "running"] = "batch",
        device: str | torch.device = "cpu",
        via: str | builtins.list[str] | None = None,
    ) -> AssembledModel:
        """``head(extractor(x))`` from two stored parts. Refuses parts whose feature
        interfaces differ. BatchNorm uses batch statistics by default (the paper's
        choice for recombined networks, §4); ``bn_mode="running"`` uses stored ones.

        ``via="auto"`` goes through the best path ``/paths`` finds (direct, or through
        bridges: ``head(bridge_n(...bridge_1(extractor(x))))``), raising
        :class:`Incompatible` when there is none; a list of bridge refs names the chain."""
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
        return AssembledModel(
            ext.build(device),
            hd.build(device),
            bn_mode=bn_mode,
            extractor_ref=ext.ref,
            head_ref=hd.ref,
            labels=hd.card.interface.output.labels if hd.card.interface.output else None,
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


def _data(data: Any) -> dict[str, Any] | None:
    """A data spec as the job spec takes it (a ``DataSpec`` is dumped)."""
    if data is None or isinstance(data, dict):
        return data
    if hasattr(data, "model_dump"):
        return dict(data.model_dump(mode="json", exclude_none=True))
    raise UsageError(f"a data spec is a mapping or a DataSpec, got {type(data).__name__}")


def _given(spec: dict[str, Any]) -> dict[str, Any]:
    """The fields given: a None leaves the kind's default (and an empty settings too)."""
    return {k: v for k, v in spec.items() if v is not None and v != {}}


def _split_name(name: str, what: str) -> tuple[str, str]:
    if "/" not in name:
        raise UsageError(f"name the {what} NAMESPACE/NAME, not {name!r}")
    namespace, short = name.split("/", 1)
    return namespace, short
