"""Engine and session factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from partsbin.parts.extras import require_extra

__all__ = ["make_engine", "make_sessionmaker", "make_read_sessionmaker"]


def make_engine(url: str, *, pool_size: int | None = None, pool_timeout: float = 30.0) -> sa.Engine:
    """With ``pool_size``, that many connections at most (no overflow): the server sizes it
    to its worker threads (``registry/main.py``), so a thread never waits for a connection.
    Without it, SQLAlchemy's defaults (command-line tools, migrations)."""
    parsed = make_url(url)
    pool: dict[str, Any] = (
        {} if pool_size is None else {"pool_size": pool_size, "max_overflow": 0, "pool_timeout": pool_timeout}
    )
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        memory = parsed.database in (None, "", ":memory:")
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **({} if memory else pool)
        )

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
    # pre-ping: after a database restart, pooled connections are found dead and replaced
    # instead of failing one request each.
    return sa.create_engine(parsed, pool_pre_ping=True, **pool)


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
