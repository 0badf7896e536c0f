"""Zero-copy file sending: the ASGI "Zero Copy Send" extension, served by uvicorn.

Issue 26.1: a download read 4 MiB chunks through worker threads into one event loop and
reached 65% of nginx for 8 concurrent downloads. nginx hands the file to the kernel
(``sendfile``); the ASGI spec has an extension for exactly that,
``http.response.zerocopysend`` (a file, an offset, a count), which uvicorn does not
implement. ``ZeroCopyHttpToolsProtocol`` adds it to uvicorn's httptools protocol (a class
uvicorn's ``Config(http=...)`` accepts): the scope advertises the extension, and the
message is answered with ``loop.sendfile`` on the connection's transport, so the bytes
go from the page cache to the socket without entering Python.

Two constraints, both checked rather than assumed:

- uvloop's ``loop.sendfile`` raises ``NotImplementedError``, so a server that sends
  zero-copy runs on the asyncio event loop (``uvicorn_config``);
- the extension is written against uvicorn's ``RequestResponseCycle`` (its response
  state: started, complete, the Content-Length still owed). ``supported()`` checks those
  attributes exist, and the file route falls back to streaming through threads wherever
  the scope does not advertise the extension (another server, or this one switched off
  with ``PARTSBIN_ZERO_COPY=false``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["EXTENSION", "ZeroCopyHttpToolsProtocol", "supported", "uvicorn_config"]

EXTENSION = "http.response.zerocopysend"

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
except ImportError:  # httptools is not installed: uvicorn's h11 protocol, no zero-copy
    HttpToolsProtocol = None  # type: ignore[assignment,misc]
    RequestResponseCycle = None  # type: ignore[assignment,misc]

#: The response state of uvicorn's RequestResponseCycle that _send_file reads and updates.
_CYCLE_STATE = (
    "transport",
    "flow",
    "disconnected",
    "response_started",
    "response_complete",
    "chunked_encoding",
    "expected_content_length",
)


def supported() -> bool:
    if HttpToolsProtocol is None:
        return False
    cycle_init = RequestResponseCycle.__init__.__code__
    return all(name in cycle_init.co_names for name in _CYCLE_STATE)


async def _send_file(cycle: Any, message: Message) -> int:
    """Send ``count`` bytes of ``file`` from ``offset`` as (part of) the response body."""
    if cycle.disconnected:
        return 0
    if not cycle.response_started or cycle.response_complete:
        raise RuntimeError(f"'{EXTENSION}' sent outside a response body")
    if cycle.chunked_encoding or cycle.scope["method"] == "HEAD":
        # sendfile writes raw bytes: a chunked body would need framing around them.
        raise RuntimeError(f"'{EXTENSION}' needs a Content-Length response to a GET")
    file = message["file"]
    offset = message.get("offset")
    offset = file.tell() if offset is None else offset
    count = message.get("count")
    count = os.fstat(file.fileno()).st_size - offset if count is None else count
    if count > cycle.expected_content_length:
        raise RuntimeError("Response content longer than Content-Length")
    if cycle.flow.write_paused:
        await cycle.flow.drain()
    try:
        # fallback=False: a transport that cannot sendfile (TLS) is a bug to see, not a
        # silent return to copying.
        sent = await asyncio.get_running_loop().sendfile(cycle.transport, file, offset, count, fallback=False)
    except ConnectionError:
        # The client went away mid-file: as uvicorn does for a write to a closed
        # connection, the rest of the response is dropped.
        cycle.disconnected = True
        cycle.transport.close()
        return 0
    except RuntimeError:
        if not cycle.transport.is_closing():  # asyncio's "Transport is closing"
            raise
        cycle.disconnected = True
        return 0
    cycle.expected_content_length -= sent
    if sent < count:
        # The file is shorter than the response says (changed on disk): as the streaming
        # path does, the error ends the connection, and the client's digest check refuses
        # what came.
        raise RuntimeError(f"the file ended {count - sent} bytes early")
    return sent


def _with_zerocopy(cycle: Any, app: ASGIApp) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def zerocopy_send(message: Message) -> None:
            if message["type"] != EXTENSION:
                await send(message)
                return
            await _send_file(cycle, message)
            if not message.get("more_body", False) and not cycle.disconnected:
                # Completes the response through uvicorn's own path (keep-alive,
                # pipelining, the Content-Length check).
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await app(scope, receive, zerocopy_send)

    return wrapped


if HttpToolsProtocol is not None:

    class ZeroCopyHttpToolsProtocol(HttpToolsProtocol):
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope["extensions"] = {**self.scope.get("extensions", {}), EXTENSION: {}}

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            # Every request, pipelined ones included, starts here.
            super()._start_asgi_task(cycle, cast(Any, _with_zerocopy(cycle, app)))

else:
    ZeroCopyHttpToolsProtocol = None  # type: ignore[assignment,misc]


def uvicorn_config(app: ASGIApp, zero_copy: bool, **kwargs: Any) -> Any:
    """uvicorn's Config, sending files zero-copy where it can (module docstring)."""
    import uvicorn

    if zero_copy and supported():
        kwargs.update(http=ZeroCopyHttpToolsProtocol, loop="asyncio")
    return uvicorn.Config(app, **kwargs)
