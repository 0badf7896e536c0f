"""With S3 storage, bytes go straight between clients and the bucket: downloads redirect
to presigned URLs, uploads go to a staging key that the registry checks before it
records the component (tested against a real `weed mini`)."""

from __future__ import annotations

import hashlib
import threading
import time

import httpx
import pytest

from partsbin.parts.archs import build
from partsbin.parts.describe import card_for
from tests.helpers import aux_rp, write_component

pytestmark = [pytest.mark.s3]

# A head of about 20 MB: above the client's threshold for direct uploads, and split into
# two parts of 16 MiB (the client's piece size).
BIG = {"depth": 16, "widen": 6, "in_chans": 1, "num_classes": 10}


def _big_file(tmp_path, name="lab/big-head"):
    net = build("wide_resnet", **BIG)
    card = card_for(name=name, role="head", arch="wide_resnet", config=BIG, split="stage2", labels=list("abcdefghij"))
    return write_component(tmp_path / "big.safetensors", net.head(), card)


@pytest.fixture
def live_s3(make_registry, s3_server):
    bucket = s3_server.new_bucket()
    return make_registry(storage_url=f"s3://{bucket}/pb", s3_endpoint_url=s3_server.endpoint)


def _staged(live) -> list[str]:
    from partsbin.registry.storage import make_storage

    storage = make_storage(live.settings.resolved_storage_url, live.settings.s3_endpoint_url)
    return [o.key for o in storage.list_staged()]  # type: ignore[attr-defined]


def test_push_and_pull_go_straight_to_s3(live_s3, client_for, tmp_path):
    path = _big_file(tmp_path)
    reg = client_for(live_s3, live_s3.token("publish", ["lab"]))
    comp = reg.push(path)
    assert reg.direct is True and comp.created and comp.size == path.stat().st_size
    assert comp.hex == hashlib.sha256(path.read_bytes()).hexdigest()
    assert _staged(live_s3) == []  # the staged copy went once the blob was stored
    # Downloads: a redirect to a presigned URL of the bucket, which serves ranges too.
    with httpx.Client(base_url=live_s3.url) as http:
        r = http.get(f"/components/{comp.name}/versions/1/file")
        assert r.status_code == 307 and r.headers["location"].startswith(live_s3.settings.s3_endpoint_url)
        assert r.headers["etag"] == f'"{comp.hex}"' and r.headers["cache-control"] == "no-store"
        part = httpx.get(r.headers["location"], headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == path.read_bytes()[10:20]
        assert http.head(f"/components/{comp.name}/versions/1/file").headers["content-length"] == str(comp.size)
    pulled = client_for(live_s3).pull(comp.ref)
    assert pulled.path.read_bytes() == path.read_bytes()
    # The same bytes again: the existing version, nothing new stored.
    again = reg.push(path)
    assert not again.created and again.version == 1 and _staged(live_s3) == []


def test_an_upload_whose_bytes_differ_from_what_was_declared_is_not_recorded(live_s3, tmp_path):
    path = _big_file(tmp_path)
    data = path.read_bytes()
    auth = {"Authorization": f"Bearer {live_s3.token('publish', ['lab'])}"}
    with httpx.Client(base_url=live_s3.url, headers=auth, timeout=60) as http:
        for declared_size, declared_sha, fragment in (
            (len(data), "0" * 64, "hash to"),
            (len(data) + 1, hashlib.sha256(data).hexdigest(), "bytes"),
        ):
            plan = http.post("/uploads", json={"size": declared_size, "sha256": declared_sha, "part_size": 8 * 1024**2})
            assert plan.status_code == 201, plan.text
            p = plan.json()
            etags = []
            for i, url in enumerate(p["urls"]):
                chunk = data[i * p["part_size"] : (i + 1) * p["part_size"]]
                if chunk:
                    etags.append(httpx.put(url, content=chunk).headers["etag"])
            done = http.post(
                f"/uploads/{p['upload_id']}/complete", json={"multipart_id": p["multipart_id"], "etags": etags}
            )
            assert done.status_code == 422 and fragment in done.json()["detail"], done.text
    assert live_s3.row_count() == 0 and _staged(live_s3) == []
    assert live_s3.blob_count() == 0


def test_direct_uploads_are_checked_like_any_other(live_s3, client_for, tmp_path):
    from partsbin import Unauthorized

    path = _big_file(tmp_path, name="elsewhere/big-head")
    reg = client_for(live_s3, live_s3.token("publish", ["lab"]))
    with pytest.raises(Unauthorized, match="namespace 'elsewhere'"):
        reg.push(path)
    assert live_s3.row_count() == 0 and _staged(live_s3) == []


def test_a_local_folder_keeps_serving_bytes_itself(live, client_for, tmp_path):
    aux, card = aux_rp()
    small = write_component(tmp_path / "rp.safetensors", aux, card)
    reg = client_for(live, live.token("admin"))
    comp = reg.push(_big_file(tmp_path))
    assert reg.direct is False  # the registry answered 409: pushed through it instead
    reg.push(small)
    with httpx.Client(base_url=live.url) as http:
        assert http.get(f"/components/{comp.name}/file").status_code == 200
        r = http.post(
            "/uploads",
            json={"size": 100, "sha256": "0" * 64},
            headers={"Authorization": f"Bearer {live.token('admin')}"},
        )
        assert r.status_code == 409 and r.json()["code"] == "direct_upload_unavailable"


def _staged_upload(http: httpx.Client, data: bytes) -> dict:
    plan = http.post(
        "/uploads", json={"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "part_size": 8 * 1024**2}
    )
    assert plan.status_code == 201, plan.text
    p = plan.json()
    p["etags"] = [
        httpx.put(url, content=data[i * p["part_size"] : (i + 1) * p["part_size"]]).headers["etag"]
        for i, url in enumerate(p["urls"])
    ]
    return p


def test_an_upload_aborted_while_it_is_completed_answers_what_happened(live_s3, tmp_path):
    """Complete and abort race: each round ends published (201) or gone (410), never a
    500 or a 503 that clients would retry; nothing is half-recorded."""
    from concurrent.futures import ThreadPoolExecutor

    path = _big_file(tmp_path)
    data = path.read_bytes()
    auth = {"Authorization": f"Bearer {live_s3.token('publish', ['lab'])}"}
    outcomes = set()
    with httpx.Client(base_url=live_s3.url, headers=auth, timeout=60) as http, ThreadPoolExecutor(2) as pool:
        for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4):
            p = _staged_upload(http, data)
            body = {"multipart_id": p["multipart_id"], "etags": p["etags"]}
            done = pool.submit(http.post, f"/uploads/{p['upload_id']}/complete", json=body)
            time.sleep(delay)
            aborted = http.post(f"/uploads/{p['upload_id']}/abort", json={"multipart_id": p["multipart_id"]})
            answer = done.result()
            assert aborted.status_code == 204, aborted.text
            assert answer.status_code in (200, 201, 410), answer.text
            if answer.status_code == 410:
                assert answer.json()["code"] == "upload_gone" and "nothing was published" in answer.json()["detail"]
            outcomes.add(answer.status_code)
            assert _staged(live_s3) == []
        # Completing again after the abort is the same answer, at once.
        again = http.post(f"/uploads/{p['upload_id']}/complete", json=body)
        assert again.status_code == 410 and again.json()["code"] == "upload_gone", again.text
    assert live_s3.row_count() <= 1 and live_s3.blob_count() == live_s3.row_count()
    assert 410 in outcomes


def test_completing_another_tokens_upload_is_gone_for_it(live_s3, tmp_path):
    path = _big_file(tmp_path)
    mine = {"Authorization": f"Bearer {live_s3.token('publish', ['lab'])}"}
    theirs = {"Authorization": f"Bearer {live_s3.token('publish', ['lab'])}"}
    with httpx.Client(base_url=live_s3.url, timeout=60) as http:
        http.headers.update(mine)
        p = _staged_upload(http, path.read_bytes())
        r = http.post(
            f"/uploads/{p['upload_id']}/complete",
            json={"multipart_id": p["multipart_id"], "etags": p["etags"]},
            headers=theirs,
        )
        assert r.status_code == 410 and "started by another token" in r.json()["detail"], r.text
        assert "NoSuch" not in r.text
    assert live_s3.row_count() == 0


def test_a_large_pull_from_s3_comes_in_ranges_from_the_bucket(live_s3, client_for, tmp_path, monkeypatch):
    from partsbin.client import ranged

    path = _big_file(tmp_path)
    comp = client_for(live_s3, live_s3.token("publish", ["lab"])).push(path)
    monkeypatch.setattr(ranged, "RANGED_THRESHOLD", 1)  # ~20 MB: in pieces of PIECE bytes
    asked: list[str] = []
    get = ranged.RangedDownload.get
    monkeypatch.setattr(ranged.RangedDownload, "get", lambda self, url, *a: asked.append(url) or get(self, url, *a))
    pulled = client_for(live_s3, cache_dir=tmp_path / "fresh").pull(comp.ref)
    assert pulled.path.read_bytes() == path.read_bytes()
    # The first range goes to the registry, which redirects; every range after to the bucket.
    pieces = -(-comp.size // ranged.PIECE)
    assert pieces >= 2 and asked[0].startswith(live_s3.url) and len(asked) == 1 + pieces
    assert all(u.startswith(live_s3.settings.s3_endpoint_url) for u in asked[1:])


def test_a_direct_push_sends_its_parts_over_several_connections(live_s3, client_for, tmp_path, monkeypatch):
    from partsbin.client import ranged

    monkeypatch.setattr(ranged, "CONNECTIONS", 2)
    monkeypatch.setattr(ranged, "PIECE", 8 * 1024**2)  # ~20 MB: three parts
    path = _big_file(tmp_path)
    lock, in_flight, peak, threads = threading.Lock(), [0], [0], set()
    put = httpx.Client.put

    def observing(self, url, **kwargs):  # type: ignore[no-untyped-def]
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            threads.add(threading.current_thread().name)
        try:
            time.sleep(0.3)  # the other part's PUT starts meanwhile
            return put(self, url, **kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(httpx.Client, "put", observing)
    comp = client_for(live_s3, live_s3.token("publish", ["lab"])).push(path)
    assert comp.created and comp.hex == hashlib.sha256(path.read_bytes()).hexdigest()
    assert peak[0] == 2 and len(threads) == 2, (peak, threads)
    assert _staged(live_s3) == []
    monkeypatch.setattr(httpx.Client, "put", put)
    assert client_for(live_s3, cache_dir=tmp_path / "fresh").pull(comp.ref).path.read_bytes() == path.read_bytes()
