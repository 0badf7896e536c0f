"""For operators: Prometheus metrics, the liveness and readiness probes, and structured
logs with the request id on every line, over the real server."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from partsbin import Registry
from partsbin.registry.config import Settings
from partsbin.registry.crud.tokens import create_token
from partsbin.registry.db.session import make_engine, make_sessionmaker
from partsbin.registry.server import prepare_database
from tests.conftest import free_port
from tests.helpers import aux_rp, extractor_card, network, write_component
from tests.registry.zoo import JOB_SPEC


def _scrape(http: httpx.Client, **kw) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = http.get("/metrics", **kw)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _upload(http: httpx.Client, token: str | None, data: bytes, card: str | None = None) -> httpx.Response:
    return http.post(
        "/components",
        files={"file": ("c.safetensors", data, "application/octet-stream")},
        data={"card": card} if card else {},
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )


def test_metrics_count_requests_bytes_and_upload_rejections(live, http, tmp_path):
    admin = live.token("admin")
    aux, card = aux_rp()
    blob = write_component(tmp_path / "aux.st", aux, card).read_bytes()
    assert _upload(http, admin, blob).status_code == 201
    junk = _upload(http, admin, b"not safetensors at all")
    assert junk.status_code == 422 and junk.headers["x-upload-check"] == "safetensors"
    assert junk.json()["code"] == "invalid_upload"  # the answer's code is unchanged
    other = write_component(tmp_path / "e.st", network(0).extractor(), extractor_card("lab/e")).read_bytes()
    assert _upload(http, admin, other, extractor_card("lab/other").model_dump_json()).status_code == 422
    assert _upload(http, None, blob).status_code == 401  # not a check: not counted
    assert http.get("/components/lab/rp/versions/1/file").content == blob
    assert http.get("/components/lab/nothing").status_code == 404

    m = _scrape(http)
    assert m[("partsbin_http_requests_total", (("method", "POST"), ("route", "/components"), ("status", "201")))] == 1
    assert m[("partsbin_http_requests_total", (("method", "POST"), ("route", "/components"), ("status", "422")))] == 2
    not_found = (("method", "GET"), ("route", "/components/{ns}/{name}"), ("status", "404"))
    assert m[("partsbin_http_requests_total", not_found)] == 1
    assert m[("partsbin_http_request_duration_seconds_count", not_found)] == 1
    assert m[("partsbin_http_request_duration_seconds_sum", not_found)] > 0
    uploaded = m[("partsbin_http_received_bytes_total", (("route", "/components"),))]
    assert uploaded > len(blob) + len(other)  # the bodies, multipart envelope included
    file_route = (("route", "/components/{ns}/{name}/versions/{version}/file"),)
    assert m[("partsbin_http_sent_bytes_total", file_route)] == len(blob)
    assert m[("partsbin_upload_rejections_total", (("reason", "safetensors"),))] == 1
    assert m[("partsbin_upload_rejections_total", (("reason", "card"),))] == 1
    assert sum(v for (name, _), v in m.items() if name == "partsbin_upload_rejections_total") == 2
    # Raw paths never become labels (a series per component would grow without bound).
    assert not any("lab/" in dict(labels).get("route", "") for _, labels in m)


def _queue_metrics(live) -> None:
    admin = live.token("admin")
    auth = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=live.url, headers=auth) as http:
        m = _scrape(http)
        assert m[("partsbin_jobs", (("state", "queued"),))] == 0
        assert m[("partsbin_job_queue_oldest_age_seconds", ())] == 0
        assert m[("partsbin_workers_active", ())] == 0
        for name in ("one", "two"):
            assert http.post("/jobs", json={"spec": {**JOB_SPEC, "name": name}}).status_code == 201
        time.sleep(0.05)
        claimed = http.post("/jobs/claim", json={"worker": "box-1", "lease_seconds": 60})
        assert claimed.status_code == 200
        m = _scrape(http)
        assert m[("partsbin_jobs", (("state", "queued"),))] == 1
        assert m[("partsbin_jobs", (("state", "running"),))] == 1
        assert m[("partsbin_jobs", (("state", "succeeded"),))] == 0
        assert 0.05 <= m[("partsbin_job_queue_oldest_age_seconds", ())] < 60
        assert m[("partsbin_workers_active", ())] == 1
        assert abs(m[("partsbin_worker_last_seen_timestamp_seconds", (("worker", "box-1"),))] - time.time()) < 60
        # A worker polling an empty queue is alive too.
        assert http.post("/jobs/claim", json={"worker": "box-2"}).status_code == 200
        assert http.post("/jobs/claim", json={"worker": "box-2"}).status_code == 204
        assert _scrape(http)[("partsbin_workers_active", ())] == 2


def test_metrics_report_jobs_queue_age_and_workers(live):
    _queue_metrics(live)


@pytest.mark.postgres
def test_metrics_report_jobs_queue_age_and_workers_on_postgres(make_registry, postgres_url):
    _queue_metrics(make_registry(database_url=postgres_url))


def test_metrics_need_a_token_when_anonymous_reads_are_off(make_registry):
    live = make_registry(anonymous_read=False)
    with httpx.Client(base_url=live.url) as http:
        assert http.get("/metrics").status_code == 401
        _scrape(http, headers={"Authorization": f"Bearer {live.token('read')}"})
        assert http.get("/healthz").status_code == 200 and http.get("/readyz").status_code == 200


def test_healthz_and_readyz(make_registry, tmp_path):
    live = make_registry()
    assert httpx.get(f"{live.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{live.url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "storage": "ok"}
    # A blob folder that cannot be made (a file stands where its parent should be).
    (tmp_path / "a-file").write_text("")
    broken = make_registry(storage_url=(tmp_path / "a-file" / "blobs").as_uri())
    assert httpx.get(f"{broken.url}/healthz").status_code == 200
    r = httpx.get(f"{broken.url}/readyz")
    assert r.status_code == 503 and r.headers["x-error-code"] == "not_ready" and r.headers["retry-after"]
    assert r.json()["checks"]["database"] == "ok"
    # Which part failed, not where it lies: anyone may ask /readyz (the log has the details).
    assert r.json()["checks"]["storage"].startswith("storage unreachable") and "/" not in r.json()["checks"]["storage"]


@pytest.mark.postgres
def test_readyz_says_when_the_database_is_gone(make_registry, postgres_url):
    live = make_registry(database_url=postgres_url)
    assert httpx.get(f"{live.url}/readyz").status_code == 200
    admin = make_engine(live.engine.url.set(database="postgres").render_as_string(hide_password=False))
    live.engine.dispose()
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'DROP DATABASE "{live.engine.url.database}" WITH (FORCE)'))
    admin.dispose()
    r = httpx.get(f"{live.url}/readyz")
    assert r.status_code == 503 and "database unreachable" in r.json()["checks"]["database"], r.text
    assert live.engine.url.database not in r.text and "/" not in r.json()["checks"]["database"]  # no driver text
    assert r.json()["checks"]["storage"] == "ok"
    assert httpx.get(f"{live.url}/healthz").status_code == 200  # the process is up: do not restart it


@pytest.mark.s3
def test_readyz_says_when_the_bucket_is_missing(make_registry, s3_server):
    good = make_registry(storage_url=f"s3://{s3_server.new_bucket()}/p", s3_endpoint_url=s3_server.endpoint)
    assert httpx.get(f"{good.url}/readyz").status_code == 200
    bad = make_registry(storage_url="s3://no-such-bucket-here/p", s3_endpoint_url=s3_server.endpoint)
    r = httpx.get(f"{bad.url}/readyz")
    assert r.status_code == 503 and r.json()["checks"]["storage"].startswith("storage unreachable")
    assert "no-such-bucket-here" not in r.text  # the bucket's name is for the log


# -- logs -----------------------------------------------------------------------------------------
@contextmanager
def _serve(data: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PARTSBIN_")}
    environ.update(PARTSBIN_DATA_DIR=str(data), **env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "partsbin", "serve", "--port", str(port)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(20)


def test_partsbin_serve_writes_json_lines_with_request_id_and_token_id(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    prepare_database(settings)
    engine = make_engine(settings.resolved_database_url)
    with make_sessionmaker(engine)() as session:
        row, secret = create_token(session=session, scope="admin")
        session.commit()
    engine.dispose()
    with _serve(settings.data_dir, PARTSBIN_LOG_FORMAT="json") as (url, proc):
        auth = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{url}/components", headers={**auth, "X-Request-ID": "trace-123"}).status_code == 200
        assert httpx.get(f"{url}/components/lab/nothing", headers={"X-Request-ID": "trace-404"}).status_code == 404
        anonymous = httpx.get(f"{url}/healthz")
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line is one JSON object
    access = {line.get("request_id"): line for line in lines if line["logger"] == "partsbin.registry.access"}
    ok = access["trace-123"]
    assert ok["token_id"] == row.id and ok["route"] == "/components" and ok["status"] == 200
    assert ok["method"] == "GET" and ok["duration_ms"] > 0 and ok["level"] == "info" and ok["time"].endswith("+00:00")
    assert access["trace-404"]["status"] == 404 and "token_id" not in access["trace-404"]
    assert access["trace-404"]["route"] == "/components/{ns}/{name}"
    # A request without an id gets one, the same in the answer and in the log.
    assert access[anonymous.headers["x-request-id"]]["path"] == "/healthz"
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # the server's own lines too
    assert secret not in err  # the token's id, never the token


class _Boom(RuntimeError):
    pass


def test_an_error_is_logged_once_with_its_traceback_and_every_line_has_the_request_id(tmp_path):
    """In-process, to add routes that log and fail: the real app and middleware under uvicorn."""
    from partsbin.registry.db.migrate import upgrade
    from partsbin.registry.main import create_app

    settings = Settings(data_dir=tmp_path / "d")
    upgrade(make_engine(settings.resolved_database_url))
    app = create_app(settings)
    log = logging.getLogger("partsbin.registry.test")

    @app.get("/work")
    def work() -> dict:  # a plain def: runs in a worker thread
        log.warning("inside the handler", extra={"step": 1})
        return {}

    @app.get("/boom")
    def boom() -> dict:
        raise _Boom("this is the error")

    root, access = logging.getLogger(), logging.getLogger("uvicorn.access")
    saved = (root.handlers[:], root.level, access.propagate)
    try:
        for stream_format in ("json", "text"):
            _serve_and_check(app, stream_format)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        access.propagate = saved[2]


def _serve_and_check(app, stream_format: str) -> None:  # type: ignore[no-untyped-def]
    import uvicorn

    from partsbin.registry.logs import configure_logging

    root = logging.getLogger()
    out = io.StringIO()
    handler = configure_logging(stream_format, "info", stream=out)  # type: ignore[arg-type]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            assert http.get("/work", headers={"X-Request-ID": "rid-work"}).status_code == 200
            failed = http.get("/boom", headers={"X-Request-ID": "rid-boom"})
            assert failed.status_code == 500
    finally:
        server.should_exit = True
        thread.join(10)
        root.removeHandler(handler)
    text = out.getvalue()
    assert text.count("Traceback (most recent call last)") == 1, text
    assert text.count("_Boom: this is the error") == 1
    if stream_format == "json":
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        inside = next(line for line in lines if line["message"] == "inside the handler")
        assert inside["request_id"] == "rid-work" and inside["step"] == 1
        errors = [line for line in lines if line.get("request_id") == "rid-boom" and line["level"] == "error"]
        # The registry's JSON 500 (UnexpectedErrorMiddleware) logs it, once, with the id.
        assert [e["message"] for e in errors if "traceback" in e] == [
            "unexpected error in GET /boom (request rid-boom)"
        ]
        access = next(
            line for line in lines if line["logger"] == "partsbin.registry.access" and line["request_id"] == "rid-boom"
        )
        assert access["status"] == 500 and access["route"] == "/boom"
    else:
        assert "[rid-work] inside the handler step=1" in text
        assert "partsbin.registry.access [rid-boom] GET /boom 500" in text


def test_partsbin_serve_says_where_it_is_and_how_to_make_the_first_token(tmp_path):
    data = tmp_path / "data"
    with _serve(data) as (url, proc):
        # Listening before PyTorch is loaded; uploads load it (or wait for the preload).
        assert httpx.get(f"{url}/components").status_code == 200
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert f"partsbin registry at {url}: pages at {url}/ui" in err
    assert "no API token yet: make the first with `partsbin token create --scope admin`" in err
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PARTSBIN_")}
    made = subprocess.run(
        [sys.executable, "-m", "partsbin", "token", "create", "--scope", "admin"],
        env={**environ, "PARTSBIN_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    with _serve(data) as (url, proc):
        aux, card = aux_rp()
        with Registry(url, token=secret) as reg:
            assert reg.push(aux, card).created  # the architectures load on demand
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "no API token yet" not in err and "partsbin registry at" in err
