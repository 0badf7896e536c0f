"""Large downloads over several connections, in ranges (as hf_transfer does for the Hub).

A file is fetched as pieces of :data:`PIECE` bytes by :data:`CONNECTIONS` threads, each
with its own keep-alive connection; the pieces are handed, in order, to the cache's
:class:`~partsbin.parts.hashing.HashingWriter`, which hashes and writes them on threads of
its own, so the sha256 is checked as the bytes arrive and never in a second pass.

The pieces are read with :mod:`http.client` straight into one buffer each
(``readinto``: the socket fills the buffer in C, the GIL released), not through httpx,
whose receive loop parses every 64 KiB read in Python: on this project's 2-core host,
one such connection received 2.2-2.4x what an httpx stream did from the same server
(bench/transfer_bench.py measures the product's pull against that bare stream). The
registry's token goes only to the registry: after a redirect to a presigned storage URL
the pieces are asked for without it, as httpx does.

Anything this path does not handle (a proxy, a server that ignores ``Range``, an error
answer) is left to the one-stream path, which reports errors as the client always has.
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

__all__ = ["RANGED_THRESHOLD", "PIECE", "CONNECTIONS", "RangedDownload", "NotRanged", "fetch_ranged"]

#: Files from this size are fetched in ranges; below it one stream costs fewer round trips.
RANGED_THRESHOLD = 32 * 1024**2
PIECE = 16 * 1024**2
#: Connections at once. Over loopback the transfer is bound by the CPUs (the client's
#: receive loops, hashing and writing, and a registry on the same machine), so more
#: connections than cores only contend (bench/results/pull.md: 4 did worse than 2 on 2
#: cores); across a network, several connections each fill a TCP window of their own.
CONNECTIONS = max(2, min(4, os.cpu_count() or 2))
_ATTEMPTS = 4
_REDIRECTS = (301, 302, 303, 307, 308)


class NotRanged(Exception):
    """This download is not for the ranged path; the one-stream path takes it."""


@dataclass
class RangedDownload:
    """Where to fetch a file of ``size`` bytes, and with which headers."""

    url: str
    size: int
    headers: dict[str, str]
    timeout: float
    ssl_context: Callable[[], ssl.SSLContext]
    follow_redirects: bool = True
    connections: int = CONNECTIONS
    piece: int = PIECE
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _opened: list[http.client.HTTPConnection] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _connection(self, url: str) -> http.client.HTTPConnection:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "key", None) == key:
            return conn
        if conn is not None:
            conn.close()
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=self.timeout, context=self.ssl_context()
            )
        elif parts.scheme == "http":
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=self.timeout)
        else:
            raise NotRanged(f"unsupported scheme {parts.scheme!r}")
        self._local.conn, self._local.key = conn, key
        with self._lock:
            self._opened.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()

    def get(self, url: str, start: int, end: int, headers: dict[str, str]) -> http.client.HTTPResponse:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = self._connection(url)
        conn.request("GET", target, headers={**headers, "Range": f"bytes={start}-{end}"})
        return conn.getresponse()

    def read_piece(self, url: str, start: int, end: int, headers: dict[str, str], buf: bytearray) -> memoryview:
        """Bytes ``start..end`` (inclusive) into ``buf``, retried on a broken connection or a short read."""
        for attempt in range(_ATTEMPTS):
            try:
                response = self.get(url, start, end, headers)
                if response.status != 206:
                    response.read()
                    raise NotRanged(f"HTTP {response.status} for a range of {url}")
                _check_range(response, start, end, self.size)
                return _read_exactly(response, memoryview(buf)[: end - start + 1])
            except (OSError, http.client.HTTPException):
                self._drop_connection()
                if attempt == _ATTEMPTS - 1:
                    raise
                time.sleep(0.25 * 2**attempt)
        raise AssertionError("unreachable")


def _check_range(response: http.client.HTTPResponse, start: int, end: int, size: int) -> None:
    if response.getheader("Content-Range") != f"bytes {start}-{end}/{size}":
        raise NotRanged(
            f"asked for bytes {start}-{end}/{size}, got Content-Range {response.getheader('Content-Range')}"
        )


def _read_exactly(response: http.client.HTTPResponse, view: memoryview) -> memoryview:
    got, length = 0, len(view)
    while got < length:
        n = response.readinto(view[got:])
        if not n:
            raise http.client.IncompleteRead(b"", length - got)
        got += n
    return view


def fetch_ranged(job: RangedDownload, write: Callable[[memoryview], None]) -> None:
    """Fetch ``job.url`` in pieces, handing each to ``write`` in order.

    Raises:
        NotRanged: before anything was written, when the server (or the way to it) does
            not serve this file in ranges; the caller then streams it whole.
        OSError, http.client.HTTPException: a piece still failed after retries.
    """
    first_end = min(job.piece, job.size) - 1
    url, headers = job.url, job.headers
    response = job.get(url, 0, first_end, headers)
    if response.status in _REDIRECTS:
        location = response.getheader("Location")
        response.read()
        if not job.follow_redirects or not location:
            raise NotRanged("a redirect this client does not follow")
        target = urljoin(url, location)
        if (urlsplit(target).scheme, urlsplit(target).netloc) != (urlsplit(url).scheme, urlsplit(url).netloc):
            # A presigned storage URL carries its own signature: the token stays with the registry.
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        url = target
        response = job.get(url, 0, first_end, headers)
    if response.status != 206:
        response.close()
        job._drop_connection()
        raise NotRanged(f"HTTP {response.status} to a range request")
    _check_range(response, 0, first_end, job.size)
    # Two buffers per connection, each used again once its piece is written: memory stays
    # bounded (2 x connections x piece) whatever the file's size, and no fresh pages are
    # faulted in for every piece.
    free = [bytearray(min(job.piece, job.size)) for _ in range(2 * job.connections)]
    first_buf = free.pop()
    first = _read_exactly(response, memoryview(first_buf)[: first_end + 1])

    starts = iter(range(first_end + 1, job.size, job.piece))
    with ThreadPoolExecutor(job.connections, thread_name_prefix="partsbin-pull") as pool:
        window: deque[tuple[bytearray, Future[memoryview]]] = deque()

        def submit_next() -> bool:
            if not free:
                return False
            start = next(starts, None)
            if start is None:
                return False
            buf = free.pop()
            end = min(start + job.piece, job.size) - 1
            window.append((buf, pool.submit(job.read_piece, url, start, end, headers, buf)))
            return True

        while submit_next():
            pass
        try:
            write(first)
            free.append(first_buf)
            submit_next()
            while window:
                buf, future = window.popleft()
                write(future.result())
                free.append(buf)
                submit_next()
        except BaseException:
            for _, future in window:
                future.cancel()
            raise
