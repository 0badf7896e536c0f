"""A broken or hostile registry cannot make the client write outside its cache, wait
for it without end, or verify a download against a digest it made up."""

from __future__ import annotations

import asyncio
import copy
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from partsbin import Registry
from partsbin.client._http import MAX_RETRY_AFTER, parse_retry_after, raise_for_status, with_retries
from partsbin.client.errors import RegistryError, ServerError
from tests.helpers import extractor_card


@contextmanager
def serving(handler: Callable[[Request], Response], delay: float = 0.0) -> Iterator[str]:
    """A stand-in registry on a loopback port that answers whatever ``handler`` says,
    after ``delay`` seconds."""

    async def endpoint(request: Request) -> Response:
        await asyncio.sleep(delay)
        return handler(request)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "HEAD", "POST"])])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _described() -> dict:
    card = extractor_card("lab/ext").model_dump(mode="json")
    return {
        "ref": "lab/ext@1",
        "name": "lab/ext",
        "version": 1,
        "digest": "sha256:" + "ab" * 32,
        "size": 10,
        "role": "extractor",
        "arch": "resnet_cifar",
        "created_at": "2026-01-01T00:00:00Z",
        "yanked": False,
        "card": card,
    }


HOSTILE = [
    ("digest", "sha256:../../../../tmp/evil"),
    ("digest", "sha256:" + "AB" * 32),
    ("digest", "ab" * 32),
    ("name", "../../etc"),
    ("name", "lab/../../x"),
    ("name", "lab/x\\y"),
    ("version", "../1"),
    ("version", -1),
    ("version", True),
    ("version", 2**70),
    ("ref", "lab/other@1"),
    ("size", -5),
]


@pytest.mark.parametrize("field, value", HOSTILE)
def test_every_server_supplied_path_part_is_checked(field, value, tmp_path):
    described = _described()
    described[field] = value

    with serving(lambda request: JSONResponse(described)) as url, Registry(url, cache_dir=tmp_path / "cache") as reg:
        with pytest.raises(RegistryError, match="invalid component description"):
            reg.pull("lab/ext@1")
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    assert all(str(p).startswith("cache") for p in written), written
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*")), "nothing was cached"


def test_an_answer_for_another_component_is_refused(tmp_path):
    other = copy.deepcopy(_described())
    with serving(lambda request: JSONResponse(other)) as url, Registry(url, cache_dir=tmp_path) as reg:
        with pytest.raises(RegistryError, match="asked for lab/ext@2"):
            reg.pull("lab/ext@2")


def test_damaged_cache_metadata_is_ignored_not_trusted(live, client_for, tmp_path):
    from tests.helpers import network

    reg = client_for(live, live.token("admin"))
    ext = reg.push(network(0).extractor(), extractor_card("lab/ext"))
    reg.pull(ext.ref)
    meta = reg.cache.meta_path(ext.hex)
    meta.write_text('{"ref": "lab/ext@1", "name": "../../x"')  # a crash mid-write, or tampering
    again = reg.pull(ext.ref)
    assert again.name == "lab/ext" and again.path == reg.cache.blob_path(ext.hex)
    assert reg.cache.load_meta(ext.hex)["name"] == "lab/ext", "rewritten whole"
    assert not list(meta.parent.glob(".*.tmp")), "no temporary file left"


def test_retry_after_is_capped_and_parsed_strictly():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("999999") == MAX_RETRY_AFTER
    assert parse_retry_after("9" * 5000) == MAX_RETRY_AFTER
    assert parse_retry_after("\u00b2") is None and parse_retry_after("-1") is None and parse_retry_after("") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT") == MAX_RETRY_AFTER

    calls = []

    def overloaded(request: Request) -> Response:
        calls.append(time.monotonic())
        return JSONResponse({"detail": "busy", "code": "overloaded"}, 503, headers={"Retry-After": "86400"})

    with serving(overloaded) as url, Registry(url) as reg:
        started = time.monotonic()
        with pytest.raises(ServerError):
            # The deadline stops it long before a day, or even the capped wait, has passed.
            with_retries(
                lambda: raise_for_status(reg._http.get("/components")), attempts=None, deadline=time.monotonic() + 1
            )
        assert time.monotonic() - started < 5
    assert len(calls) >= 1


def test_a_registry_that_stops_sending_times_out(tmp_path):
    with (
        serving(lambda request: JSONResponse({}), delay=2) as url,
        Registry(url, cache_dir=tmp_path, timeout=0.3) as reg,
    ):
        started = time.monotonic()
        with pytest.raises(Exception, match="could not reach the registry"):
            reg.pull("lab/ext@1")
        assert time.monotonic() - started < 15


def test_cache_paths_come_only_from_checked_parts(tmp_path):
    from partsbin.client.cache import Cache
    from partsbin.parts.names import InvalidName, Ref

    cache = Cache(Path(tmp_path))
    for digest in ("../x", "ab" * 31 + "/..", "AB" * 32):
        with pytest.raises(InvalidName):
            cache.blob_path(digest)
    with pytest.raises(InvalidName):
        cache.remember(Ref(kind="version", namespace="..", name="x", version=1), "ab" * 32)
    with pytest.raises(InvalidName):
        cache.remember(Ref(kind="version", namespace="lab", name="x", version=1), "../../evil")
    assert not any(tmp_path.iterdir())
