"""Commands that keep a registry's storage tidy: ``gc``."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import partial
from typing import Annotated

import typer

from partsbin.cli._app import app, console, fail

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd])$", re.ASCII)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> timedelta:
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise typer.BadParameter(f"{text!r}: give a number and a unit, e.g. 30m, 6h or 2d")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


@app.command()
def gc(
    delete: Annotated[bool, typer.Option("--delete", help="remove what is found (default: only report it)")] = False,
    grace: Annotated[
        str, typer.Option(help="leave blobs and leftovers younger than this alone (uploads in flight)")
    ] = "1h",
) -> None:
    """Find blobs no component references, leftovers of interrupted writes and staging
    files of crashed registry processes; with --delete, remove them.

    Works on PARTSBIN_DATABASE_URL and PARTSBIN_STORAGE_URL directly, like `token`."""
    from partsbin.registry.config import Settings
    from partsbin.registry.db.migrate import SchemaState, schema_state
    from partsbin.registry.db.session import make_engine
    from partsbin.registry.gc import collect
    from partsbin.registry.staging import StagingArea
    from partsbin.registry.storage import StorageError, make_storage

    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        if schema_state(engine) is not SchemaState.AT_HEAD:
            raise fail("the registry database is not at the current schema: run `partsbin db upgrade` first")
        storage = make_storage(settings.resolved_storage_url, settings.s3_endpoint_url)
        try:
            report = collect(
                engine=engine,
                storage=storage,
                staging=StagingArea(settings.staging_dir),
                grace=_duration(grace),
                delete=delete,
            )
        except StorageError as exc:
            raise fail(str(exc)) from None
    finally:
        engine.dispose()
    verb = "removed" if delete else "found"
    say = partial(console.print, soft_wrap=True, highlight=False, markup=False)  # one line per item, for grep
    for obj in report.orphans:
        say(f"orphan blob  sha256:{obj.digest}  {_size(obj.size)}  {obj.modified:%Y-%m-%d %H:%M}")
    for obj in report.leftovers:
        say(f"leftover     {obj.key}  {_size(obj.size)}  {obj.modified:%Y-%m-%d %H:%M}")
    for st in report.staging:
        say(f"staging      {st.path}  {st.files} files  {_size(st.bytes)}")
    for digest in report.kept:
        say(f"kept         sha256:{digest} (an upload of these bytes took it back)")
    say(
        f"{verb} {len(report.orphans)} orphan blobs, {len(report.leftovers)} leftovers and "
        f"{len(report.staging)} stale staging folders ({_size(report.bytes)})"
        + (
            ""
            if delete or not (report.orphans or report.leftovers or report.staging)
            else "; run with --delete to remove them"
        )
    )
