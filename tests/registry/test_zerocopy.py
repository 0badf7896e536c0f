"""Files of the local store sent zero-copy (registry/zerocopy.py), over real HTTP.

The real server, sockets and kernel sendfile: whole files, ranges, keep-alive and
pipelined requests on one connection, a client that leaves mid-file, and the same bytes
with zero-copy switched off.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from partsbin.registry import zerocopy
from tests.helpers import extractor_card, network, write_component


def _publish(live, tmp_path) -> tuple[str, bytes]:
    # Width 64: a component of a few MB, more than a socket buffer, so sendfile has to
    # wait for the socket to drain, as it does for large files.
    net = network(0, width=64)
    path = write_component(tmp_path / "e.st", net.extractor(), extractor_card("lab/zc", width=64))
    with httpx.Client(base_url=live.url, timeout=30) as http:
        r = http.post(
            "/components",
            files={"file": ("e.st", path.read_bytes(), "application/octet-stream")},
            headers={"Authorization": f"Bearer {live.token('admin')}"},
        )
        assert r.status_code == 201, r.text
    return r.json()["digest"].removeprefix("sha256:"), path.read_bytes()


@pytest.fixture
def sendfile_calls(monkeypatch):
    """The bytes each zero-copy send handed to the kernel (the server runs in this process)."""
    calls: list[int] = []
    real = zerocopy._send_file

    async def counting(cycle, message):  # type: ignore[no-untyped-def]
        sent = await real(cycle, message)
        calls.append(sent)
        return sent

    monkeypatch.setattr(zerocopy, "_send_file", counting)
    return calls


def _settled(calls: list[int], n: int) -> list[int]:
    # The server's await of sendfile returns a moment after the client has read the last
    # byte: wait for it to record the call.
    deadline = time.monotonic() + 10
    while len(calls) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return calls


def _raw(live) -> socket.socket:
    u = urlsplit(live.url)
    return socket.create_connection((u.hostname, u.port), timeout=30)


def _read_response(sock: socket.socket, buf: bytearray) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response with a Content-Length from ``sock``: (head, body); the rest
    stays in ``buf`` for the next response."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    buf[:] = rest
    while len(buf) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, "the server closed the connection mid-body"
        buf += chunk
    body = bytes(buf[:length])
    del buf[:length]
    return head, body


def test_files_and_ranges_are_sent_by_the_kernel(live, tmp_path, sendfile_calls):
    assert zerocopy.supported()
    digest, data = _publish(live, tmp_path)
    url = f"/components/by-digest/{digest}/file"
    with httpx.Client(base_url=live.url, timeout=30) as http:
        full = http.get(url)
        assert full.status_code == 200 and full.content == data
        assert hashlib.sha256(full.content).hexdigest() == digest
        assert full.headers["content-length"] == str(len(data))
        part = http.get(url, headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206 and part.content == data[100:1100]
        tail = http.get(url, headers={"Range": "bytes=-7"})
        assert tail.content == data[-7:]
        # HEAD and 304 carry no body, so nothing is sent zero-copy for them.
        assert http.head(url).content == b""
        assert http.get(url, headers={"If-None-Match": f'"{digest}"'}).status_code == 304
        # The connection stays usable for other requests after a zero-copy body.
        assert http.get("/healthz").status_code == 200
    assert _settled(sendfile_calls, 3) == [len(data), 1000, 7]


def test_pipelined_range_requests_on_one_connection(live, tmp_path, sendfile_calls):
    digest, data = _publish(live, tmp_path)
    path = f"/components/by-digest/{digest}/file"
    spans = [(0, 99), (len(data) // 2, len(data) - 1), (5, 5)]
    request = b"".join(f"GET {path} HTTP/1.1\r\nHost: x\r\nRange: bytes={a}-{b}\r\n\r\n".encode() for a, b in spans)
    with _raw(live) as sock:
        sock.sendall(request)  # all three before reading any answer
        buf = bytearray()
        for a, b in spans:
            head, body = _read_response(sock, buf)
            assert head.startswith(b"HTTP/1.1 206"), head
            assert body == data[a : b + 1]
    assert _settled(sendfile_calls, 3) == [b - a + 1 for a, b in spans]


def test_a_client_that_leaves_mid_file_does_not_harm_the_server(live, tmp_path, caplog):
    digest, data = _publish(live, tmp_path)
    caplog.set_level(logging.ERROR)
    for _ in range(3):
        with _raw(live) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET /components/by-digest/{digest}/file HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        # closed with most of the body unread
    with httpx.Client(base_url=live.url, timeout=30) as http:
        assert http.get(f"/components/by-digest/{digest}/file").content == data
        assert http.get("/healthz").status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_the_same_bytes_without_zero_copy(make_registry, tmp_path, sendfile_calls):
    live = make_registry(zero_copy=False)
    digest, data = _publish(live, tmp_path)
    with httpx.Client(base_url=live.url, timeout=30) as http:
        assert http.get(f"/components/by-digest/{digest}/file").content == data
        part = http.get(f"/components/by-digest/{digest}/file", headers={"Range": "bytes=3-12"})
        assert part.status_code == 206 and part.content == data[3:13]
    assert sendfile_calls == [], "PARTSBIN_ZERO_COPY=false streams through threads"


def test_a_blob_shorter_than_its_record_ends_the_connection(live, tmp_path):
    digest, data = _publish(live, tmp_path)
    blob = next(p for p in live.settings.data_dir.rglob(digest) if p.is_file())
    with blob.open("r+b") as fh:  # damaged on disk after it was recorded
        fh.truncate(len(data) // 2)
    with httpx.Client(base_url=live.url, timeout=30) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(f"/components/by-digest/{digest}/file")
        assert http.get("/healthz").status_code == 200
