"""Receiving ``POST /components``: the multipart body streams to a staged file.

The ``file`` part is written to the staging area (``registry/staging.py``) and hashed as
it arrives, so a component is never held whole in memory and its digest costs no second
pass. The size limit is enforced while streaming (413 as soon as it is passed). This sits
directly on python-multipart's push parser, the one Starlette's form parser uses;
Starlette's own ``request.form()`` spools to a temporary file first and would need a
second pass to hash.

Nothing here blocks the event loop: when the hashing or writing thread falls behind (a
slow disk), the handoff of the next batch waits in a worker thread, so the other
requests of the process go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from partsbin.parts.hashing import HashingWriter
from partsbin.registry.errors import InvalidRequest, TooLarge
from partsbin.registry.staging import StagingArea
from partsbin.registry.validation import MAX_CARD_BYTES

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["ReceivedUpload", "receive_upload"]

# A part's headers are a few hundred bytes; python-multipart's own bound is far larger.
MAX_PART_HEADER_BYTES = 8 * 1024


@dataclass
class ReceivedUpload:
    path: Path
    digest: str
    size: int
    card_text: str | None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class _Receiver:
    def __init__(self, staging: StagingArea, max_bytes: int, durable: bool) -> None:
        self.max_bytes = max_bytes
        self.staging = staging
        self.durable = durable
        # The staged file is made when the 'file' part begins, not before the body is
        # known to be a form at all.
        self.path: Path | None = None
        self.writer: HashingWriter | None = None
        self.size = 0
        self.card = bytearray()
        self.seen: set[str] = set()
        self._field = ""
        self._header_name = b""
        self._header_value = b""
        self._part_name: str | None = None

    # python-multipart callbacks -------------------------------------------------------
    def on_part_begin(self) -> None:
        self._part_name = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]
        self._check_header()

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._check_header()

    def _check_header(self) -> None:
        if len(self._header_name) + len(self._header_value) > MAX_PART_HEADER_BYTES:
            raise InvalidRequest(f"a form part's header is longer than {MAX_PART_HEADER_BYTES} bytes")

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            _, options = parse_options_header(self._header_value)
            self._part_name = options.get(b"name", b"").decode("latin-1")
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        name = self._part_name
        if name not in ("file", "card"):
            raise InvalidRequest(
                f"unexpected form field {name!r}: send 'file' (the safetensors bytes) and optionally 'card' (JSON)"
            )
        if name in self.seen:
            raise InvalidRequest(f"form field {name!r} given twice")
        self.seen.add(name)
        self._field = name
        if name == "file":
            self.path = self.staging.new_file()
            self.writer = HashingWriter(self.path, durable=self.durable)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = memoryview(data)[start:end]
        if self._field == "file":
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise TooLarge(
                    f"upload exceeds the registry's limit of {self.max_bytes} bytes (PARTSBIN_MAX_UPLOAD_BYTES)"
                )
            assert self.writer is not None  # made by on_headers_finished
            self.writer.write(chunk, block=False)
        else:
            if len(self.card) + len(chunk) > MAX_CARD_BYTES:
                raise InvalidRequest(f"the card is larger than {MAX_CARD_BYTES} bytes")
            self.card += chunk

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
        }

    def discard(self) -> None:
        """Stop the writer threads and delete the partial file (blocking: call in a thread)."""
        if self.writer is not None:
            self.writer.abort()
        elif self.path is not None:
            self.path.unlink(missing_ok=True)


async def receive_upload(
    request: Request, staging: StagingArea, max_bytes: int, *, durable: bool = False
) -> ReceivedUpload:
    """Stream the form into a staged file. ``durable``: fsync it before returning (for a
    storage backend that keeps the staged file itself as the blob)."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidRequest("POST /components takes multipart/form-data with fields 'file' and 'card'")
    declared = request.headers.get("content-length")
    # The multipart envelope adds a few hundred bytes plus the card; refuse early when
    # the declared length cannot fit, before reading anything.
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and (len(declared) > 19 or int(declared)) > max_bytes + MAX_CARD_BYTES + 64 * 1024
    ):
        raise TooLarge(
            f"upload of {declared} bytes exceeds the registry's limit of {max_bytes} bytes (PARTSBIN_MAX_UPLOAD_BYTES)"
        )

    receiver = _Receiver(staging, max_bytes, durable)
    try:
        try:
            parser = MultipartParser(params[b"boundary"], receiver.callbacks())
            async for chunk in request.stream():
                parser.write(chunk)
                if receiver.writer is not None and receiver.writer.backlogged:
                    await anyio.to_thread.run_sync(receiver.writer.drain)
            parser.finalize()
        except FormParserError as exc:
            raise InvalidRequest(f"malformed multipart/form-data body: {exc}") from None
        if "file" not in receiver.seen or receiver.writer is None or receiver.path is None:
            raise InvalidRequest("missing form field 'file' (the safetensors bytes)")
        card = None
        if "card" in receiver.seen:
            try:
                card = bytes(receiver.card).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest("the card is not UTF-8 JSON") from None
        # The last batches' hashing and, for durable staging, the fsync: off the event loop.
        digest = await anyio.to_thread.run_sync(receiver.writer.close)
    except BaseException:
        # Also on cancellation (the client went away): the partial file must not stay.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(receiver.discard)
        raise
    return ReceivedUpload(path=receiver.path, digest=digest, size=receiver.size, card_text=card)
