"""Starting the registry: the schema check that ``partsbin serve`` runs first."""

from __future__ import annotations

import gc
import importlib
import logging
import threading
from typing import Any

from partsbin.registry.config import Settings
from partsbin.registry.db.migrate import SchemaState, schema_state, upgrade
from partsbin.registry.db.session import make_engine

__all__ = ["SchemaBehind", "prepare_database", "serve"]

log = logging.getLogger("partsbin.registry")


class SchemaBehind(RuntimeError):
    pass


def prepare_database(settings: Settings) -> str:
    """Create a brand-new database at the current schema; refuse one that is behind.

    Migrating an existing database is a step of its own (``partsbin db upgrade``), never
    a side effect of starting a server.
    """
    engine = make_engine(settings.resolved_database_url)
    try:
        state = schema_state(engine)
        if state is SchemaState.EMPTY:
            upgrade(engine)
            return "created"
        if state is SchemaState.BEHIND:
            raise SchemaBehind(
                "the registry database is behind this version of partsbin: run `partsbin db upgrade` first"
            )
        if state is SchemaState.UNKNOWN:
            raise SchemaBehind(
                "the database has tables but no known partsbin schema revision; point PARTSBIN_DATABASE_URL at a "
                "partsbin database or an empty one"
            )
        return "ready"
    finally:
        engine.dispose()


def _freeze_what_is_loaded() -> None:
    # Everything loaded by now lives as long as the server (~240,000 objects with
    # PyTorch's), yet every full garbage collection would walk it all again: a 135 ms
    # pause landing in some request's latency. Freezing takes it out of the collector's
    # way (the gc module's documented use of gc.freeze()).
    gc.collect()
    gc.freeze()


def _load_the_rest() -> None:
    importlib.import_module("partsbin.parts.archs")
    _freeze_what_is_loaded()


def _first_token_hint(settings: Settings) -> str | None:
    """What to do next on a registry that has no token yet: publishing needs one."""
    from sqlalchemy.orm import Session

    from partsbin.registry.crud.tokens import list_tokens

    engine = make_engine(settings.resolved_database_url)
    try:
        with Session(engine) as session:
            if list_tokens(session):
                return None
    finally:
        engine.dispose()
    return (
        "this registry has no API token yet: make the first with `partsbin token create --scope admin` "
        "(same PARTSBIN_* settings as this server), then `partsbin login` with it"
    )


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    from partsbin.registry.logs import configure_logging
    from partsbin.registry.main import create_app
    from partsbin.registry.zerocopy import uvicorn_config

    configure_logging(settings.log_format, settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    prepare_database(settings)
    first_token_hint = _first_token_hint(settings)
    app = create_app(settings)
    _freeze_what_is_loaded()

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            # Listening now: load what only uploads and job submissions need (the
            # architectures, with PyTorch: seconds on a busy host) beside the first
            # requests; one that needs them meanwhile waits on the import lock.
            threading.Thread(target=_load_the_rest, name="partsbin-preload", daemon=True).start()
            url = f"http://{config.host}:{config.port}"
            log.info("partsbin registry at %s: pages at %s/ui, the API's documentation at %s/docs", url, url, url)
            if first_token_hint:
                log.info(first_token_hint)

    # Logging is configured above (one handler, text or JSON lines); the middleware
    # writes the access log, so uvicorn's own is off.
    config = uvicorn_config(
        app,
        settings.zero_copy,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        log_level=settings.log_level,
        access_log=False,
    )
    Server(config).run()
