"""Publishing: ``Registry.push``, and the multipart body it streams from disk."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
from pydantic import ValidationError

from partsbin.client._base import RegistryBase
from partsbin.client._http import raise_for_status, with_retries
from partsbin.client.component import Component
from partsbin.client.direct import DIRECT_THRESHOLD, push_direct
from partsbin.client.errors import InvalidCard, InvalidFile, MissingFile, UsageError
from partsbin.client.progress import progress_bar
from partsbin.parts.card import CARD_METADATA_KEY, REGISTRY_FIELDS, Card
from partsbin.parts.messages import describe_validation_error
from partsbin.parts.safetensors_format import SafetensorsError, read_header

if TYPE_CHECKING:
    from torch import nn

    from partsbin.client.registry import Registry

__all__ = ["PushMethods", "PUSH_RETRY_SECONDS"]

_CHUNK = 1024 * 1024
# How long push keeps retrying through a registry outage before it gives up.
PUSH_RETRY_SECONDS = 30.0


class PushMethods(RegistryBase):
    """``Registry``'s publishing method."""

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
                    response = push_direct(cast("Registry", self), path, card_json, advance)
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
