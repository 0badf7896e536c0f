"""Crashes and outages, on loopback only and bounded in time.

- the registry ``kill -9``-ed during 50 concurrent uploads, on SQLite + a local folder
  and on PostgreSQL + S3: after a restart every acknowledged upload is listed and
  downloads with its digest, nothing is listed without its blob, no staging file is
  left, and ``partsbin gc`` finds the orphan blobs the crash left and removes them;
- a worker ``kill -9``-ed mid-job: another worker finishes the job exactly once, and the
  dead one published nothing.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from partsbin.registry.config import Settings
from partsbin.registry.crud.tokens import create_token
from partsbin.registry.db.migrate import upgrade
from partsbin.registry.db.session import make_engine, make_sessionmaker
from tests.conftest import free_port
from tests.helpers import extractor_card, network, write_component

UPLOADS = 50


class RegistryProcess:
    """``partsbin serve`` in a process of its own, so that it can be killed outright."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARTSBIN_")}
        env["PARTSBIN_DATA_DIR"] = str(self.settings.data_dir)
        for key in ("database_url", "storage_url", "s3_endpoint_url"):
            value = getattr(self.settings, key)
            if value:
                env[f"PARTSBIN_{key.upper()}"] = value
        return env

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "partsbin", "serve", "--port", str(self.port)],
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"the registry exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the registry did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def registry_process(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    started: list[RegistryProcess] = []

    def factory(settings: Settings) -> tuple[RegistryProcess, str]:
        engine = make_engine(settings.resolved_database_url)
        upgrade(engine)
        with make_sessionmaker(engine)() as session:
            _, token = create_token(session=session, scope="admin")
            session.commit()
        engine.dispose()
        proc = RegistryProcess(settings, tmp_path / f"registry-{len(started)}.log")
        started.append(proc)
        return proc, token

    yield factory
    for proc in started:
        proc.stop()


def _slow_upload(http: httpx.Client, token: str, data: bytes) -> httpx.Response:
    """A multipart upload streamed in pieces with pauses, so that many are mid-body at once."""
    boundary = "chaosboundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="c"\r\n\r\n'.encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        step = max(1, len(data) // 8)
        for i in range(0, len(data), step):
            time.sleep(0.03)
            yield data[i : i + step]
        yield tail

    return http.post(
        "/components",
        content=body(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


def _files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def _kill_during_uploads(settings: Settings, registry_process, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc, token = registry_process(settings)
    proc.start()
    bodies = [
        write_component(tmp_path / f"c{i}.st", network(i).extractor(), extractor_card(f"lab/c{i}")).read_bytes()
        for i in range(UPLOADS)
    ]
    acknowledged: list[dict] = []
    lock = threading.Lock()

    def upload(i: int) -> None:
        time.sleep(0.02 * i)  # staggered: some finish while others are still streaming
        try:
            r = _slow_upload(http, token, bodies[i])
        except httpx.TransportError:
            return
        if r.status_code in (200, 201):
            with lock:
                acknowledged.append(r.json())

    with httpx.Client(base_url=proc.url, timeout=60, limits=httpx.Limits(max_connections=UPLOADS)) as http:
        with ThreadPoolExecutor(UPLOADS) as pool:
            futures = [pool.submit(upload, i) for i in range(UPLOADS)]
            deadline = time.monotonic() + 60
            while len(acknowledged) < UPLOADS // 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            proc.kill()
            for f in futures:
                f.result()
    assert UPLOADS // 4 <= len(acknowledged) < UPLOADS, "the kill landed while uploads were in flight"
    staging = settings.staging_dir
    assert _files_under(staging), "the crash left partial uploads behind (what the sweep must remove)"

    proc.start()
    assert not _files_under(staging), "start-up swept every staged file of the killed process"
    with httpx.Client(base_url=proc.url, timeout=60) as http:
        for ack in acknowledged:
            got = http.get(f"/components/{ack['name']}/versions/{ack['version']}")
            assert got.status_code == 200 and got.json()["digest"] == ack["digest"], ack["ref"]
        listed, cursor = [], None
        while True:
            page = http.get("/components", params={"include_yanked": True, **({"cursor": cursor} if cursor else {})})
            listed += page.json()["items"]
            if not (cursor := page.json()["next_cursor"]):
                break
        assert {c["ref"] for c in acknowledged} <= {c["ref"] for c in listed}
        for c in listed:  # nothing is listed without its blob
            # With S3 the file route redirects to the bucket (a presigned URL).
            body = http.get(f"/components/{c['name']}/versions/{c['version']}/file", follow_redirects=True)
            assert body.status_code == 200 and "sha256:" + hashlib.sha256(body.content).hexdigest() == c["digest"]

        # The crash may have left blobs stored but never recorded: gc finds exactly those.
        from partsbin.registry.gc import collect
        from partsbin.registry.staging import StagingArea
        from partsbin.registry.storage import make_storage

        storage = make_storage(settings.resolved_storage_url, settings.s3_endpoint_url)
        engine = make_engine(settings.resolved_database_url)
        try:
            recorded = {c["digest"].removeprefix("sha256:") for c in listed}
            stored = {b.digest for b in storage.list_blobs()}
            kwargs = dict(engine=engine, storage=storage, staging=StagingArea(staging), grace=timedelta(0))
            report = collect(**kwargs)  # type: ignore[arg-type]
            assert {o.digest for o in report.orphans} == stored - recorded
            assert {b.digest for b in storage.list_blobs()} == stored, "a dry run removes nothing"
            collect(**kwargs, delete=True)  # type: ignore[arg-type]
            assert {b.digest for b in storage.list_blobs()} == recorded
            assert not list(storage.list_leftovers())
        finally:
            engine.dispose()
        for c in listed:
            got = http.get(f"/components/{c['name']}/versions/{c['version']}/file", follow_redirects=True)
            assert got.status_code == 200


def test_kill_9_during_concurrent_uploads_sqlite(registry_process, tmp_path):
    _kill_during_uploads(Settings(data_dir=tmp_path / "data"), registry_process, tmp_path)


@pytest.mark.postgres
@pytest.mark.s3
def test_kill_9_during_concurrent_uploads_postgres_s3(registry_process, tmp_path, postgres_url, s3_server):
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=postgres_url,
        storage_url=f"s3://{s3_server.new_bucket()}/pb",
        s3_endpoint_url=s3_server.endpoint,
    )
    _kill_during_uploads(settings, registry_process, tmp_path)


def test_killed_worker_job_is_finished_exactly_once_by_another(live, client_for, tmp_path):
    from partsbin.trainer.worker import Worker
    from tests.trainer.test_worker import tiny_spec

    admin = client_for(live, live.token("admin"))
    token = live.token("publish", ["jobs"])
    spec = tiny_spec("crash", settings={"steps": 300, "batch_size": 16, "threads": 1})
    job = admin.jobs.submit(spec)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTSBIN_")}
    env.update(PARTSBIN_URL=live.url, PARTSBIN_TOKEN=token, PARTSBIN_CACHE_DIR=str(tmp_path / "worker-cache"))
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "partsbin", "worker", "--lease", "2", "--once", "--name", "doomed"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while not (admin.jobs.get(job["id"])["progress"] or {}).get("step"):
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker never reported progress"
            time.sleep(0.1)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    mid = admin.jobs.get(job["id"])
    assert mid["status"] == "running" and mid["worker"] == "doomed"
    assert admin.list(namespace="jobs") == [], "the killed run published nothing"

    time.sleep(2.2)  # the dead worker's lease runs out
    Worker(client_for(live, token), name="survivor", poll_seconds=0.2).run(exit_when_idle=True)
    done = admin.jobs.get(job["id"])
    assert done["status"] == "succeeded" and done["worker"] == "survivor" and done["attempts"] == 2
    published = admin.list(namespace="jobs")
    assert sorted(c.ref for c in published) == sorted(done["result_refs"])
    assert all(ref.endswith("@1") for ref in done["result_refs"]), "each part published once"
