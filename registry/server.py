"""Starting the registry: the schema check that ``partsbin serve`` runs first."""

from __future__ import annotations

import gc

from partsbin.registry.config import Settings
from partsbin.registry.db.migrate import SchemaState, schema_state, upgrade
from partsbin.registry.db.session import make_engine

__all__ = ["SchemaBehind", "prepare_database", "serve"]


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


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    from partsbin.registry.logs import configure_logging
    from partsbin.registry.main import create_app

    configure_logging(settings.log_format, settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    prepare_database(settings)
    app = create_app(settings)
    # Everything loaded by now lives as long as the server (~240,000 objects, most of
    # them PyTorch's), yet every full garbage collection would walk it all again: a
    # 135 ms pause here, landing in some request's latency. Freezing takes it out of
    # the collector's way (the gc module's documented use of gc.freeze()).
    gc.collect()
    gc.freeze()
    # Logging is configured above (one handler, text or JSON lines); the middleware
    # writes the access log, so uvicorn's own is off.
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        log_level=settings.log_level,
        access_log=False,
    )
