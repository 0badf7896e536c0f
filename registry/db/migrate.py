"""Schema migrations: apply them, and tell whether a database is at the code's head.

Applying migrations goes through Alembic. Telling the state does not: importing Alembic
costs ~420 ms (measured with ``python -X importtime``), most of the start-up of
``partsbin token list``, which only needs to know whether the database is at head. The
revision graph is read from the migration files' ``revision``/``down_revision`` lines
(Alembic writes them; ``tests/registry/test_migrations.py`` checks that this reading
agrees with Alembic's), and the current revision with one query.
"""

from __future__ import annotations

import functools
import re
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from partsbin import migrations

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "SchemaState",
    "alembic_config",
    "upgrade",
    "downgrade",
    "schema_state",
    "head_revision",
    "current_revision",
    "revision_graph",
]

MIGRATIONS_DIR = Path(migrations.__file__).parent
_REVISION = re.compile(r"^revision(?:\s*:[^=]*)?\s*=\s*['\"](\w+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision(?:\s*:[^=]*)?\s*=\s*(None|['\"]\w+['\"])", re.M)


class SchemaState(Enum):
    EMPTY = "empty"
    AT_HEAD = "at_head"
    BEHIND = "behind"
    UNKNOWN = "unknown"  # tables but no (or a foreign) alembic revision


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@functools.cache
def revision_graph() -> dict[str, str | None]:
    """Every revision of the migration files, with the one it revises."""
    graph: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        text = path.read_text()
        rev, down = _REVISION.search(text), _DOWN.search(text)
        if rev is None or down is None:
            continue
        graph[rev.group(1)] = None if down.group(1) == "None" else down.group(1).strip("'\"")
    return graph


def head_revision() -> str:
    graph = revision_graph()
    heads = sorted(set(graph) - set(graph.values()))
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads; merge them into one")
    return heads[0]


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _run(engine: sa.Engine, fn: Any, *args: Any) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        fn(cfg, *args)


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    from alembic import command

    _run(engine, command.upgrade, revision)


def downgrade(engine: sa.Engine, revision: str = "base") -> None:
    from alembic import command

    _run(engine, command.downgrade, revision)


def schema_state(engine: sa.Engine) -> SchemaState:
    current = current_revision(engine)
    if current is None:
        tables = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
        return SchemaState.EMPTY if not tables else SchemaState.UNKNOWN
    if current == head_revision():
        return SchemaState.AT_HEAD
    if current not in revision_graph():  # a revision this code does not know
        return SchemaState.UNKNOWN
    return SchemaState.BEHIND
