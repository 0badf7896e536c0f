"""The database and storage layers against a real PostgreSQL and a real S3 server."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from partsbin.registry.config import Settings
from partsbin.registry.storage import make_storage
from tests.helpers import aux_rp, extractor_card, head_card, network, write_component

pytestmark = [pytest.mark.postgres, pytest.mark.s3]


def _auth(token):
    return {"Authorization": f"Bearer {token}"}


def _upload(http, token, path):
    return http.post("/components", files={"file": ("c.safetensors", path.read_bytes())}, headers=_auth(token))


def test_s3_storage_round_trip(s3_server, tmp_path):
    bucket = s3_server.new_bucket()
    storage = make_storage(f"s3://{bucket}/registry", s3_server.endpoint)
    blob = tmp_path / "b"
    blob.write_bytes(b"x" * 100_000)
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    assert not storage.exists(digest)
    storage.put_file(digest, blob)
    assert storage.exists(digest)
    keys = [o["Key"] for o in storage.client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"registry/blobs/sha256/{digest[:2]}/{digest}"]

    def read(start, end):
        reader = storage.open_range(digest, start, end)
        try:
            return reader.read(10**6)
        finally:
            reader.close()

    assert read(0, 99_999) == blob.read_bytes()
    assert read(10, 19) == b"x" * 10
    assert [b.digest for b in storage.list_blobs()] == [digest]
    storage.delete(digest)
    assert not storage.exists(digest)


def test_registry_on_postgres_and_s3(make_registry, postgres_url, s3_server, tmp_path):
    bucket = s3_server.new_bucket()
    # The registry serves the bytes itself here (ranges, ETag, HEAD); the redirects to
    # presigned URLs that S3 storage uses by default are tested in test_direct_transfers.
    live = make_registry(
        database_url=postgres_url,
        storage_url=f"s3://{bucket}/pb",
        s3_endpoint_url=s3_server.endpoint,
        s3_direct_transfers=False,
    )
    assert live.settings.resolved_database_url.startswith("postgresql")
    admin = live.token("admin")
    aux, aux_card = aux_rp()
    with httpx.Client(base_url=live.url) as http:
        r = _upload(http, admin, write_component(tmp_path / "a", aux, aux_card))
        assert r.status_code == 201, r.text
        anchor = r.json()["digest"]
        net = network(2)
        assert (
            _upload(
                http, admin, write_component(tmp_path / "e", net.extractor(), extractor_card("lab/ext", [anchor]))
            ).status_code
            == 201
        )
        assert (
            _upload(
                http, admin, write_component(tmp_path / "h", net.head(), head_card("lab/head", [anchor]))
            ).status_code
            == 201
        )
        assert [
            i["component"]["ref"] for i in http.get("/compatible", params={"head": "lab/head"}).json()["items"]
        ] == ["lab/ext@1"]
        body = (tmp_path / "e").read_bytes()
        f = http.get("/components/lab/ext/file")
        assert f.content == body and f.headers["etag"] == f'"{hashlib.sha256(body).hexdigest()}"'
        part = http.get("/components/lab/ext/file", headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == body[100:200]
        assert http.get("/components/lab/ext/file", headers={"Range": f"bytes={len(body)}-"}).status_code == 416
        head = http.head("/components/lab/ext/file")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(body)) and head.headers["etag"] == f.headers["etag"]
        assert live.blob_count() == 3 and live.row_count() == 3
        # The same bad upload is refused with nothing stored, on this backend too.
        bad = _upload(
            http,
            admin,
            write_component(tmp_path / "m", net.extractor(), extractor_card("lab/x", ["sha256:" + "1" * 64])),
        )
        assert bad.status_code == 422
        assert live.blob_count() == 3 and live.row_count() == 3


def test_s3_failure_answers_503_and_leaves_no_row(make_registry, postgres_url, tmp_path):
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    live = make_registry(database_url=postgres_url, storage_url="s3://nobucket/x", s3_endpoint_url=dead)
    aux, card = aux_rp()
    with httpx.Client(base_url=live.url, timeout=60) as http:
        r = _upload(http, live.token("admin"), write_component(tmp_path / "a", aux, card))
        assert r.status_code == 503 and r.headers["x-error-code"] == "storage_unavailable"
    assert live.row_count() == 0


def test_concurrent_publishes_get_distinct_versions(make_registry, postgres_url, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    live = make_registry(database_url=postgres_url)
    admin = live.token("admin")
    paths = [write_component(tmp_path / f"e{i}", network(i).extractor(), extractor_card("lab/race")) for i in range(6)]
    with httpx.Client(base_url=live.url, timeout=60) as http, ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda p: _upload(http, admin, p), paths))
    assert all(r.status_code == 201 for r in results), [r.text for r in results]
    assert sorted(r.json()["version"] for r in results) == [1, 2, 3, 4, 5, 6]


def test_two_registry_processes_on_one_database_keep_versions_unique_and_dense(make_registry, postgres_url, tmp_path):
    """The registry is stateless: several processes behind a load balancer share one
    PostgreSQL and one blob store, and concurrent uploads of one name spread over both
    get distinct, dense versions."""
    from concurrent.futures import ThreadPoolExecutor

    shared = {"database_url": postgres_url, "storage_url": (tmp_path / "blobs").as_uri()}
    first = make_registry(data_dir=tmp_path / "one", **shared)
    second = make_registry(data_dir=tmp_path / "two", **shared)
    admin = first.token("admin")
    paths = [write_component(tmp_path / f"e{i}", network(i).extractor(), extractor_card("lab/race")) for i in range(10)]
    with (
        httpx.Client(base_url=first.url, timeout=60) as a,
        httpx.Client(base_url=second.url, timeout=60) as b,
        ThreadPoolExecutor(10) as pool,
    ):
        results = list(pool.map(lambda ip: _upload((a, b)[ip[0] % 2], admin, ip[1]), enumerate(paths)))
        assert all(r.status_code == 201 for r in results), [r.text for r in results]
        assert sorted(r.json()["version"] for r in results) == list(range(1, 11))
        # Each process serves what the other stored.
        for r in results:
            assert b.get(f"/components/lab/race/versions/{r.json()['version']}/file").status_code == 200


def test_concurrent_identical_uploads_make_one_version(make_registry, postgres_url, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    live = make_registry(database_url=postgres_url)
    admin = live.token("admin")
    path = write_component(tmp_path / "same", network(0).extractor(), extractor_card("lab/twice"))
    with httpx.Client(base_url=live.url, timeout=60) as http, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _upload(http, admin, path), range(4)))
    assert sorted(r.status_code for r in results) == [200, 200, 200, 201], [r.text for r in results]
    assert {r.json()["version"] for r in results} == {1}
    assert live.row_count() == 1


def test_settings_refuse_s3_without_bucket():
    with pytest.raises(ValueError, match="needs a bucket"):
        Settings(storage_url="s3://")
    with pytest.raises(ValueError, match="file:// or s3://"):
        Settings(storage_url="ftp://x")


def test_storage_keys_come_only_from_digests(tmp_path):
    storage = make_storage((tmp_path / "blobs").as_uri())
    with pytest.raises(ValueError):
        storage.put_file("../../etc/passwd", tmp_path)
    with pytest.raises(ValueError):
        storage.exists("ab" * 31 + "/x")
