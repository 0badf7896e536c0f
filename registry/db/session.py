"""Engine and session factory."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from partsbin.parts.extras import require_extra

__all__ = ["make_engine", "make_sessionmaker", "make_read_sessionmaker"]


def make_engine(url: str) -> sa.Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers proceed while an upload commits; foreign keys are off by
            # default in SQLite.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if (
        parsed.get_backend_name() == "postgresql"
        and parsed.get_driver_name() in ("", "psycopg2")
        and parsed.drivername == "postgresql"
    ):
        # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_driver_name() == "psycopg":
        require_extra("server", "PostgreSQL", "psycopg")
    return sa.create_engine(parsed, pool_pre_ping=True)


def make_sessionmaker(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def make_read_sessionmaker(engine: sa.Engine) -> sessionmaker[Session]:
    """Sessions for requests that only read, on the same pool, in driver autocommit.

    A transaction buys a read nothing here: PostgreSQL's default READ COMMITTED gives
    every statement its own snapshot either way, and SQLite reads see committed data.
    It costs a BEGIN and a ROLLBACK round trip per request, a third of the database
    time of a ``GET /compatible`` on PostgreSQL (9.3 -> 5.9 ms p50, in-process).
    """
    return sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)
