"""``Registry``: the Python client of a partsbin registry."""

from __future__ import annotations

import builtins
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import torch
from torch import nn

from partsbin import __version__
from partsbin.client._http import raise_for_status, with_retries
from partsbin.client.assemble import AssembledModel, check_junctions
from partsbin.client.cache import Cache
from partsbin.client.errors import InvalidUpload
from partsbin.client.jobs import JobsAPI
from partsbin.client.progress import progress_bar
from partsbin.parts.archs import build_part
from partsbin.parts.batchnorm import BNMode
from partsbin.parts.card import CARD_METADATA_KEY, Card
from partsbin.parts.hashing import HashingWriter
from partsbin.parts.names import Ref, parse_ref
from partsbin.parts.safetensors_format import load_state_dict, save_state_dict

__all__ = ["Registry", "Component", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8000"
_CHUNK = 1024 * 1024


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

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Component:
        return cls(
            ref=data["ref"],
            name=data["name"],
            version=data["version"],
            digest=data["digest"],
            size=data["size"],
            role=data["role"],
            yanked=data["yanked"],
            card=Card.model_validate(data["card"]),
            raw=data,
        )

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """The module this component's card describes, with its weights (``strict=True``)."""
        if self.path is None:
            raise ValueError(f"{self.ref} is not pulled yet: use Registry.pull")
        a = self.card.arch
        module = build_part(a.name, a.config, a.part, a.split)
        module.load_state_dict(load_state_dict(self.path), strict=True)
        return module.to(device)


class Registry:
    """Client of a partsbin registry.

    ``url`` and ``token`` fall back to ``PARTSBIN_URL`` and ``PARTSBIN_TOKEN``; the
    cache to ``PARTSBIN_CACHE_DIR`` (default ``~/.cache/partsbin``).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        cache_dir: str | Path | None = None,
        timeout: float = 60.0,
        progress: bool = False,
    ) -> None:
        self.url = (url or os.environ.get("PARTSBIN_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("PARTSBIN_TOKEN") or None
        headers = {"User-Agent": f"partsbin/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0))
        self.cache = Cache(Path(cache_dir) if cache_dir else None)
        self.progress = progress
        self.jobs = JobsAPI(self)

    def close(self) -> None:
        self._http.close()

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
        existing ``.safetensors`` file. Returns the stored component with its version."""
        card_model = Card.model_validate(card) if isinstance(card, dict) else card
        tmp: Path | None = None
        try:
            if isinstance(module_or_file, nn.Module):
                if card_model is None:
                    raise InvalidUpload("push(module, card): a module needs a card")
                fd, name = tempfile.mkstemp(suffix=".safetensors")
                os.close(fd)
                tmp = Path(name)
                save_state_dict(module_or_file.state_dict(), tmp, {CARD_METADATA_KEY: card_model.embedded_json()})
                path = tmp
            else:
                path = Path(module_or_file)
                if not path.is_file():
                    raise FileNotFoundError(f"no such file: {path}")
            # A module's card is already inside the file it was written to; sending it again
            # as a form field would only make the registry parse and compare it twice.
            card_json = (
                card_model.model_dump_json(exclude={"version", "digest", "size"})
                if card_model and tmp is None
                else None
            )
            label = f"push {card_model.name if card_model else path.name}"
            with progress_bar(self.progress, path.stat().st_size, label) as advance:
                body, headers = _multipart(path, card_json, advance)
                response = self._http.post("/components", content=body, headers=headers, timeout=None)
            return Component.from_api(raise_for_status(response).json())
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    # -- lookups -----------------------------------------------------------------------
    def info(self, ref: str) -> Component:
        return Component.from_api(self._get(parse_ref(ref).api_path()))

    def list(self, **filters: Any) -> builtins.list[Component]:
        """Every component matching the filters (role, arch, group, dataset, namespace, prefix, tag, q)."""
        return [Component.from_api(c) for c in self._pages("/components", **filters)]

    def versions(self, name: str) -> builtins.list[Component]:
        ns, n = name.split("/", 1)
        return [Component.from_api(c) for c in self._get(f"/components/{ns}/{n}/versions")]

    def pull(self, ref: str) -> Component:
        """Download a component into the cache (verifying its sha256) and return it with
        ``path`` set. A component already cached is not transferred again; an exact
        version or digest already cached needs no request at all."""
        parsed = parse_ref(ref)
        cached = self.cache.lookup(parsed)
        meta_path = self.cache.root / "meta" / f"{cached}.json" if cached else None
        if cached and meta_path and meta_path.is_file():
            comp = Component.from_api(json.loads(meta_path.read_text()))
        else:
            comp = self.info(ref)
            meta = self.cache.root / "meta" / f"{comp.hex}.json"
            meta.parent.mkdir(parents=True, exist_ok=True)
            meta.write_text(json.dumps(comp.raw))
        if not self.cache.has(comp.hex):
            with_retries(lambda: self._download(comp))
        self.cache.remember(
            Ref(kind="version", namespace=comp.name.split("/")[0], name=comp.name.split("/")[1], version=comp.version),
            comp.hex,
        )
        comp.path = self.cache.blob_path(comp.hex)
        return comp

    def _download(self, comp: Component) -> None:
        target = self.cache.incomplete(comp.hex)
        with HashingWriter(target) as writer:
            with self._http.stream("GET", f"/components/by-digest/{comp.hex}/file", timeout=None) as response:
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
            raise ValueError("compatible(): give exactly one of head= or extractor=")
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
            raise ValueError("yank takes an exact version: ns/name@VERSION")
        return Component.from_api(self._send("POST", f"{r.api_path()}/yank", json={"reason": reason}))

    def unyank(self, ref: str) -> Component:
        r = parse_ref(ref)
        if r.kind != "version":
            raise ValueError("unyank takes an exact version: ns/name@VERSION")
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
    ) -> dict[str, Any]:
        body = {
            "extractor": extractor,
            "head": head,
            "dataset": dataset,
            "metric": metric,
            "value": value,
            "samples": samples,
            "bn_mode": bn_mode,
            "batch_size": batch_size,
            "details": details or {},
        }
        return self._send("POST", "/evaluations", json=body)

    def evaluations(self, *, extractor: str | None = None, head: str | None = None) -> builtins.list[dict[str, Any]]:
        return self._get("/evaluations", extractor=extractor, head=head)

    def bench(self, extractors: builtins.list[str], heads: builtins.list[str], **kw: Any):
        """The recombination matrix of ``extractors`` × ``heads`` (see :func:`partsbin.client.bench.bench`);
        posts each cell as an evaluation unless ``post=False``."""
        from partsbin.client.bench import bench

        return bench(self, extractors, heads, **kw)

    # -- recombination -----------------------------------------------------------------
    def assemble(
        self,
        extractor: str | Component,
        head: str | Component,
        *,
        bn_mode: BNMode = "batch",
        device: str | torch.device = "cpu",
    ) -> AssembledModel:
        """``head(extractor(x))`` from two stored parts. Refuses parts whose feature
        interfaces differ. BatchNorm uses batch statistics by default (the paper's
        choice for recombined networks, §4); ``bn_mode="running"`` uses stored ones."""
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
        check_junctions(ext.ref, ext.card, hd.ref, hd.card)
        return AssembledModel(
            ext.build(device),
            hd.build(device),
            bn_mode=bn_mode,
            extractor_ref=ext.ref,
            head_ref=hd.ref,
            labels=hd.card.interface.output.labels if hd.card.interface.output else None,
        )


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
