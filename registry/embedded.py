"""An in-process registry on the embedded default (SQLite and a local folder), for
``partsbin train --local`` and ``partsbin demo`` when no PARTSBIN_URL is set."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from partsbin.registry.config import Settings
from partsbin.registry.crud.tokens import create_token
from partsbin.registry.db.session import make_engine, make_sessionmaker
from partsbin.registry.server import prepare_database

__all__ = ["EmbeddedRegistry", "embedded_registry", "running_server"]


@dataclass
class EmbeddedRegistry:
    url: str
    token: str
    settings: Settings


@contextmanager
def running_server(settings: Settings) -> Iterator[str]:
    """Serve the registry from a thread on a free loopback port; yields its URL."""
    import uvicorn

    from partsbin.registry.main import create_app
    from partsbin.registry.zerocopy import uvicorn_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn_config(create_app(settings), settings.zero_copy, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="partsbin-registry", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the registry did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def embedded_registry(settings: Settings | None = None) -> Iterator[EmbeddedRegistry]:
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    prepare_database(settings)
    engine = make_engine(settings.resolved_database_url)
    with make_sessionmaker(engine)() as session:
        # A short-lived admin token for this process only.
        row, token = create_token(session=session, scope="admin", name="embedded session")
        session.commit()
    try:
        with running_server(settings) as url:
            yield EmbeddedRegistry(url, token, settings)
    finally:
        from partsbin.registry.crud.tokens import revoke_token

        with make_sessionmaker(engine)() as session:
            revoke_token(session=session, token_id=row.id)
            session.commit()
        engine.dispose()
