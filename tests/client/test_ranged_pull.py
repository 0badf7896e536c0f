"""Large pulls in ranges over several connections (client/ranged.py): the bytes arrive
whole and verified, the token stays with the registry, and a server that does not serve
ranges, or breaks a connection part way, still gives the right file or a clear error."""

from __future__ import annotations

import hashlib
import os
import re

import pytest
from starlette.requests import Request
from starlette.responses import Response

from partsbin import Registry
from partsbin.client import ranged
from partsbin.client.errors import ConnectionFailed, DigestMismatch, RegistryError
from partsbin.parts.archs import build
from partsbin.parts.describe import card_for
from tests.client.test_hostile_registry import serving
from tests.helpers import write_component

CFG = {"depth": 8, "width": 16, "in_chans": 1, "num_classes": 10}


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces small enough that a test component of ~100 kB comes in many ranges."""
    monkeypatch.setattr(ranged, "RANGED_THRESHOLD", 1)
    monkeypatch.setattr(ranged, "PIECE", 7_919)  # a prime: the last piece is short
    monkeypatch.setattr(ranged, "CONNECTIONS", 3)


@pytest.fixture
def counted(monkeypatch):
    """How many ranges each pull asked for, and the headers each carried."""
    seen: list[tuple[str, int, int, dict[str, str]]] = []
    get = ranged.RangedDownload.get

    def spy(self, url, start, end, headers):  # type: ignore[no-untyped-def]
        seen.append((url, start, end, dict(headers)))
        return get(self, url, start, end, headers)

    monkeypatch.setattr(ranged.RangedDownload, "get", spy)
    return seen


def _component(tmp_path):
    net = build("resnet_cifar", **CFG)
    card = card_for(
        name="lab/ranged-head", role="head", arch="resnet_cifar", config=CFG, split="stage2", labels=list("abcdefghij")
    )
    return write_component(tmp_path / "head.safetensors", net.head(), card)


def test_a_pull_comes_in_ranges_and_is_verified(live, small_pieces, counted, tmp_path):
    path = _component(tmp_path)
    with Registry(url=live.url, token=live.token("publish", ["lab"]), cache_dir=tmp_path / "push") as reg:
        pushed = reg.push(path)
    with Registry(url=live.url, cache_dir=tmp_path / "c") as reg:
        pulled = reg.pull(pushed.ref)
    assert pulled.path.read_bytes() == path.read_bytes()
    size = path.stat().st_size
    starts = sorted(start for _, start, _, _ in counted)
    assert starts == list(range(0, size, 7_919)) and len(starts) > 10
    assert all(end == min(start + 7_919, size) - 1 for _, start, end, _ in counted)
    assert not list((tmp_path / "c").rglob("*.incomplete"))


def test_corrupted_bytes_in_ranges_are_refused_and_nothing_is_cached(live, small_pieces, tmp_path):
    path = _component(tmp_path)
    with Registry(url=live.url, token=live.token("publish", ["lab"]), cache_dir=tmp_path / "push") as reg:
        pushed = reg.push(path)
    blob = next(p for p in (live.settings.data_dir / "blobs").rglob(pushed.hex))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with Registry(url=live.url, cache_dir=tmp_path / "c") as reg:
        with pytest.raises(DigestMismatch, match="expected sha256:" + pushed.hex):
            reg.pull(pushed.ref)
    assert not any((tmp_path / "c" / "blobs").rglob(f"{pushed.hex}*"))


def _file_server(data: bytes, *, ranges: bool = True, fail_once_at: int | None = None, redirect: str | None = None):
    """A stand-in for the file route: the metadata a pull asks for first, then the bytes."""
    digest = hashlib.sha256(data).hexdigest()
    failed: list[int] = []

    def handler(request: Request) -> Response:
        from tests.client.test_hostile_registry import _described

        if not request.url.path.endswith("/file"):
            described = _described()
            described.update(digest=f"sha256:{digest}", size=len(data))
            from starlette.responses import JSONResponse

            return JSONResponse(described)
        if redirect is not None and "signed" not in request.url.query:
            return Response(status_code=307, headers={"Location": f"{redirect}?signed=1"})
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", request.headers.get("range", ""))
        if not ranges or m is None:
            return Response(data, headers={"Content-Length": str(len(data))})
        start, end = int(m.group(1)), int(m.group(2))
        if fail_once_at is not None and start == fail_once_at and not failed:
            failed.append(start)
            return Response(
                data[start : start + 10],
                status_code=206,
                headers={  # cut short: a broken connection
                    "Content-Range": f"bytes {start}-{end}/{len(data)}",
                    "Content-Length": str(end - start + 1),
                },
            )
        return Response(
            data[start : end + 1], status_code=206, headers={"Content-Range": f"bytes {start}-{end}/{len(data)}"}
        )

    return handler, digest


def test_a_server_that_ignores_range_gets_one_stream(small_pieces, tmp_path):
    data = os.urandom(100_000)
    handler, digest = _file_server(data, ranges=False)
    with serving(handler) as url, Registry(url=url, cache_dir=tmp_path / "c") as reg:
        assert reg.pull(f"sha256:{digest}").path.read_bytes() == data


def test_a_piece_cut_short_is_asked_for_again(small_pieces, counted, tmp_path):
    data = os.urandom(100_000)
    handler, digest = _file_server(data, fail_once_at=7_919 * 5)
    with serving(handler) as url, Registry(url=url, cache_dir=tmp_path / "c") as reg:
        assert reg.pull(f"sha256:{digest}").path.read_bytes() == data
    assert [start for _, start, _, _ in counted].count(7_919 * 5) == 2


def test_the_token_does_not_follow_a_redirect_to_another_host(small_pieces, counted, tmp_path):
    data = os.urandom(50_000)
    storage_handler, digest = _file_server(data)
    with serving(storage_handler) as storage:
        handler, _ = _file_server(data, redirect=storage.replace("127.0.0.1", "localhost") + "/blob/file")
        with serving(handler) as url, Registry(url=url, token="secret", cache_dir=tmp_path / "c") as reg:
            assert reg.pull(f"sha256:{digest}").path.read_bytes() == data
    to_registry = [h for u, _, _, h in counted if u.startswith(url)]
    to_storage = [h for u, _, _, h in counted if "signed=1" in u]
    assert to_registry and all(h.get("authorization") == "Bearer secret" for h in to_registry)
    assert len(to_storage) > 5 and all("authorization" not in {k.lower() for k in h} for h in to_storage)


def _failing_after_the_first_piece(data: bytes, later: str):
    inner, digest = _file_server(data)

    def handler(request: Request) -> Response:
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", request.headers.get("range", ""))
        if not request.url.path.endswith("/file") or m is None or m.group(1) == "0":
            return inner(request)
        start, end = int(m.group(1)), int(m.group(2))
        if later == "cut":  # every later piece breaks off: a connection that keeps failing
            return Response(
                data[start : start + 10],
                status_code=206,
                headers={"Content-Range": f"bytes {start}-{end}/{len(data)}", "Content-Length": str(end - start + 1)},
            )
        return Response(data)  # the whole file: the server stopped honouring Range

    return handler, digest


@pytest.mark.parametrize(
    ("later", "error", "message"),
    [
        ("cut", ConnectionFailed, "failed after retries .*nothing was cached"),
        ("whole", RegistryError, "stopped serving .* in ranges part way .*nothing was cached"),
    ],
)
def test_a_download_that_fails_part_way_says_so_and_caches_nothing(small_pieces, tmp_path, later, error, message):
    data = os.urandom(100_000)
    handler, digest = _failing_after_the_first_piece(data, later)
    with serving(handler) as url, Registry(url=url, cache_dir=tmp_path / "c") as reg:
        with pytest.raises(error, match=message):
            reg.pull(f"sha256:{digest}")
    assert not [p for p in (tmp_path / "c" / "blobs").rglob("*") if p.is_file()]
