"""Commands that work on the registry itself: ``serve``, ``db``, ``token``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from partsbin.cli._app import PANEL_SERVER, app, console, err, fail, note

db_app = typer.Typer(help="Registry database schema.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (works on the registry database directly).", no_args_is_help=True)
app.add_typer(db_app, name="db", rich_help_panel=PANEL_SERVER)
app.add_typer(token_app, name="token", rich_help_panel=PANEL_SERVER)


def _settings() -> Any:
    from partsbin.registry.config import Settings

    return Settings()


@app.command(rich_help_panel=PANEL_SERVER)
def serve(
    host: Annotated[str | None, typer.Option(help="bind address [env: PARTSBIN_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port [env: PARTSBIN_PORT]")] = None,
) -> None:
    """Serve the registry (embedded default: SQLite and a local folder under PARTSBIN_DATA_DIR)."""
    from partsbin.registry.server import SchemaBehind
    from partsbin.registry.server import serve as run

    try:
        run(_settings(), host=host, port=port)
    except SchemaBehind as exc:
        raise fail(str(exc)) from None


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply the schema migrations to PARTSBIN_DATABASE_URL."""
    from partsbin.registry.db.migrate import current_revision, upgrade
    from partsbin.registry.db.session import make_engine

    settings = _settings()
    note(f"database: {_shown(settings.resolved_database_url)}")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine, revision)
    console.print(f"database at revision {current_revision(engine)}")
    engine.dispose()


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision and whether it is at head."""
    from partsbin.registry.db.migrate import current_revision, head_revision
    from partsbin.registry.db.session import make_engine

    url = _settings().resolved_database_url
    if _missing_sqlite_file(url):
        raise fail(f"there is no database at {_shown(url)}")
    note(f"database: {_shown(url)}")
    engine = make_engine(url)
    cur, head = current_revision(engine), head_revision()
    state = "up to date" if cur == head else "run `partsbin db upgrade`"
    console.print(f"current: {cur or '(empty)'}  head: {head}  {state}")
    engine.dispose()


def _shown(url: str) -> str:
    """A database URL as people read it: the file of a SQLite URL, no password."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(parsed.database)
    return parsed.render_as_string(hide_password=True)


def _missing_sqlite_file(url: str) -> bool:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return (
        parsed.get_backend_name() == "sqlite"
        and parsed.database not in (None, "", ":memory:")
        and not Path(str(parsed.database)).is_file()
    )


def _session() -> Any:
    """A session on the registry's database, which must exist already: a token made in
    a database that no server uses would be refused by the running one."""
    from partsbin.registry.db.migrate import SchemaState, schema_state
    from partsbin.registry.db.session import make_engine, make_sessionmaker

    settings = _settings()
    url = settings.resolved_database_url
    where = "PARTSBIN_DATABASE_URL" if settings.database_url else f"PARTSBIN_DATA_DIR ({settings.data_dir.resolve()})"
    if _missing_sqlite_file(url):
        raise fail(
            f"there is no registry database at {_shown(url)}. Run this with the same {where.split(' ')[0]} as the "
            "registry's `partsbin serve`, or create the database first with `partsbin serve` or `partsbin db upgrade`"
        )
    engine = make_engine(url)
    state = schema_state(engine)
    if state is SchemaState.EMPTY:
        engine.dispose()
        raise fail(
            f"the database at {_shown(url)} is empty: create the schema with `partsbin db upgrade` (or `partsbin serve`) "
            f"using the same {where}"
        )
    if state is not SchemaState.AT_HEAD:
        raise fail(
            f"the registry database at {_shown(url)} is not at the current schema: run `partsbin db upgrade` first"
        )
    note(f"database: {_shown(url)}")
    return make_sessionmaker(engine)()


@token_app.command("create")
def token_create(
    scope: Annotated[str, typer.Option(help="read, publish or admin")],
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="namespace a publish token may publish into (repeatable)"),
    ] = None,
    owner: Annotated[
        bool, typer.Option(help="publish token that also moves aliases and yanks in its namespaces")
    ] = False,
    name: Annotated[str, typer.Option(help="a label for the token")] = "",
    expires_days: Annotated[float | None, typer.Option(help="expire after this many days")] = None,
) -> None:
    """Create a token. The token alone is printed on the last line."""
    from partsbin.registry.crud.tokens import create_token
    from partsbin.registry.errors import APIError

    with _session() as session:
        try:
            row, secret = create_token(
                session=session,
                scope=scope,
                name=name,
                namespaces=namespace or [],
                owner=owner,
                expires_in=timedelta(days=expires_days) if expires_days else None,
            )
        except APIError as exc:
            raise fail(exc.detail) from None
        session.commit()
        namespaces = f", namespaces {','.join(row.namespaces)}" if row.namespaces else ""
        err.print(f"created token {row.id} ({row.scope}{namespaces}); it is shown only now:")
    print(secret)


@token_app.command("list")
def token_list(all: Annotated[bool, typer.Option("--all", help="include revoked tokens")] = False) -> None:
    """List tokens (never their secrets)."""
    from partsbin.registry.crud.tokens import list_tokens

    with _session() as session:
        table = Table("id", "prefix", "scope", "namespaces", "owner", "name", "expires", "revoked")
        for t in list_tokens(session, include_revoked=all):
            table.add_row(
                str(t.id),
                t.prefix + "…",
                t.scope,
                ",".join(t.namespaces or []),
                "yes" if t.owner else "",
                t.name,
                str(t.expires_at or ""),
                "yes" if t.revoked_at else "",
            )
        console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token by id."""
    from partsbin.registry.crud.tokens import revoke_token
    from partsbin.registry.errors import APIError

    with _session() as session:
        try:
            revoke_token(session=session, token_id=token_id)
        except APIError as exc:
            raise fail(exc.detail) from None
        session.commit()
    console.print(f"revoked token {token_id}")
