"""Schema migrations: apply them, and tell whether a database is at the code's head."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from partsbin import migrations

__all__ = ["SchemaState", "alembic_config", "upgrade", "downgrade", "schema_state", "head_revision", "current_revision"]

MIGRATIONS_DIR = Path(migrations.__file__).parent


class SchemaState(Enum):
    EMPTY = "empty"
    AT_HEAD = "at_head"
    BEHIND = "behind"
    UNKNOWN = "unknown"  # tables but no (or a foreign) alembic revision


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads; merge them into one")
    return heads[0]


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _run(engine: sa.Engine, fn, *args) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        fn(cfg, *args)


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    _run(engine, command.upgrade, revision)


def downgrade(engine: sa.Engine, revision: str = "base") -> None:
    _run(engine, command.downgrade, revision)


def schema_state(engine: sa.Engine) -> SchemaState:
    current = current_revision(engine)
    if current is None:
        tables = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
        return SchemaState.EMPTY if not tables else SchemaState.UNKNOWN
    if current == head_revision():
        return SchemaState.AT_HEAD
    script = ScriptDirectory.from_config(alembic_config())
    try:
        script.get_revision(current)
    except CommandError:  # a revision this code does not know
        return SchemaState.UNKNOWN
    return SchemaState.BEHIND
