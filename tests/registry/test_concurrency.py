"""Concurrency limits: downloads hold no database connection while they stream, and a
full registry answers a fast 503 with Retry-After instead of queueing."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from partsbin.registry.config import Settings
from tests.helpers import aux_rp, extractor_card, network, write_component


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_pool_and_threads_are_sized_together():
    with pytest.raises(ValueError, match="PARTSBIN_DB_POOL_SIZE .* is smaller than PARTSBIN_WORKER_THREADS"):
        Settings(worker_threads=40, db_pool_size=10)
    assert Settings(worker_threads=8).pool_size == 8
    assert Settings(worker_threads=8, db_pool_size=20).pool_size == 20


def test_slow_downloads_hold_no_connection(make_registry, tmp_path):
    # Two connections and two threads: before the fix, two downloads streaming to slow
    # readers held both connections, and every other request timed out waiting for one.
    live = make_registry(worker_threads=2, db_pool_size=2, db_pool_timeout=2)
    admin = live.token("admin")
    # 11 MB: more than the socket buffers hold, so a slow reader keeps the response open.
    cfg = {"depth": 14, "width": 128}
    big = write_component(
        tmp_path / "big", network(0, **cfg).extractor(), extractor_card("lab/big", **cfg)
    ).read_bytes()
    with httpx.Client(base_url=live.url, timeout=60) as http:
        r = http.post("/components", files={"file": big}, headers=_auth(admin))
        assert r.status_code == 201
        path = f"/components/{r.json()['name']}/file"
    stop = threading.Event()
    streaming = threading.Barrier(7, timeout=30)

    def slow_reader() -> int:
        with httpx.Client(base_url=live.url, timeout=60) as c, c.stream("GET", path) as resp:
            streaming.wait()  # this reader has its headers
            for _ in resp.iter_bytes(64):
                if stop.wait(0.05):
                    break
            return resp.status_code

    with ThreadPoolExecutor(6) as pool:
        readers = [pool.submit(slow_reader) for _ in range(6)]
        streaming.wait()  # every reader has its headers and streams slowly from here
        with httpx.Client(base_url=live.url, timeout=30) as http:
            started = time.monotonic()
            answers = [http.get("/components").status_code for _ in range(20)]
            elapsed = time.monotonic() - started
        stop.set()
        assert all(f.result() == 200 for f in readers)
    assert answers == [200] * 20
    assert elapsed < 10, f"reads waited {elapsed:.1f} s behind streaming downloads"


def test_a_full_registry_answers_503_with_retry_after_quickly(make_registry, tmp_path):
    live = make_registry(max_concurrent_requests=1, queue_timeout=0.3)
    admin = live.token("admin")
    aux, card = aux_rp()
    data = write_component(tmp_path / "a", aux, card).read_bytes()
    release, holding = threading.Event(), threading.Event()

    def body():
        yield b'--z\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        yield data[:100]
        holding.set()
        release.wait(30)  # holds the only request slot while its body has not arrived
        yield data[100:]
        yield b"\r\n--z--\r\n"

    with httpx.Client(base_url=live.url, timeout=60) as http, ThreadPoolExecutor(1) as pool:
        upload = pool.submit(
            http.post,
            "/components",
            content=body(),
            headers={**_auth(admin), "Content-Type": "multipart/form-data; boundary=z"},
        )
        # Its headers and first bytes are out: the registry has admitted it (and the
        # other request below arrives after them on the same loopback).
        assert holding.wait(10)
        with httpx.Client(base_url=live.url, timeout=10) as other:
            started = time.monotonic()
            r = other.get("/components")
            waited = time.monotonic() - started
        assert r.status_code == 503 and r.json()["code"] == "overloaded" == r.headers["x-error-code"]
        assert r.headers["retry-after"] == "1" and r.json()["request_id"] == r.headers["x-request-id"]
        assert waited < 2
        release.set()
        assert upload.result().status_code == 201
        # The slot is free again: the next request is served.
        with httpx.Client(base_url=live.url, timeout=10) as other:
            assert other.get("/components").status_code == 200
