"""``login``/``logout`` (a stored token per registry) and ``cache`` (the local cache of
component files), as huggingface-cli's ``login`` and ``scan-cache``/``delete-cache``."""

from __future__ import annotations

import math
import time
from typing import Annotated

import typer

from partsbin.cli._app import PANEL_ACCOUNT, JsonOpt, UrlOpt, app, console, fail, note, print_json, table
from partsbin.cli.components import _size

cache_app = typer.Typer(help="The local cache of component files (PARTSBIN_CACHE_DIR).", no_args_is_help=True)
app.add_typer(cache_app, name="cache", rich_help_panel=PANEL_ACCOUNT)


def _url(url: str | None) -> str:
    import os

    from partsbin.client.registry import DEFAULT_URL

    return (url or os.environ.get("PARTSBIN_URL") or DEFAULT_URL).rstrip("/")


@app.command(rich_help_panel=PANEL_ACCOUNT)
def login(
    token: Annotated[str | None, typer.Option("--token", help="the token (asked for, hidden, when not given)")] = None,
    url: UrlOpt = None,
) -> None:
    """Store a token for a registry (mode 0600 in the config folder); used when PARTSBIN_TOKEN is unset."""
    from partsbin.client.credentials import store_token
    from partsbin.client.registry import Registry

    target = _url(url)
    secret = token or typer.prompt(f"token for {target}", hide_input=True)
    with Registry(url=target, token=secret) as reg:
        me = reg.whoami()  # a wrong token fails here, before it is stored
    path = store_token(target, secret)
    where = f", namespaces {', '.join(me['namespaces'])}" if me["namespaces"] else ""
    console.print(f"logged in to {target} ({me['scope']} token {me['token_id']}{where}); token stored in {path}")


@app.command(rich_help_panel=PANEL_ACCOUNT)
def logout(url: UrlOpt = None) -> None:
    """Forget the token stored for a registry."""
    from partsbin.client.credentials import forget_token

    target = _url(url)
    if forget_token(target):
        console.print(f"logged out of {target}")
    else:
        note(f"no token was stored for {target}")


@cache_app.command("ls")
def cache_ls(json_out: JsonOpt = False) -> None:
    """Cached component files: refs, role, size, when downloaded and last used."""
    from partsbin.client.cache_scan import scan

    report = scan()
    if json_out:
        print_json(report.as_dict())
        return
    if not report.entries:
        note(f"the cache at {report.root} is empty")
        return
    t = table("refs", "role", "size", "downloaded", "last used", "digest")
    for e in report.entries:
        t.add_row(
            ", ".join(e.refs) or "(no metadata)",
            e.role or "",
            _size(e.size),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(e.downloaded)),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used)),
            e.digest[:12] + "…",
        )
    console.print(t)
    extra = f"; {_size(report.incomplete_bytes)} in unfinished downloads" if report.incomplete_bytes else ""
    console.print(f"{len(report.entries)} components, {_size(report.total_bytes)} in {report.root}{extra}")


@cache_app.command("prune")
def cache_prune(
    older_than: Annotated[
        float | None, typer.Option("--older-than", metavar="DAYS", help="remove files not used for DAYS days")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="remove every cached file")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would go, remove nothing")] = False,
) -> None:
    """Remove unfinished downloads, and cached files not used for a while (--older-than) or all (--all)."""
    from partsbin.client.cache_scan import prune

    if all_ and older_than is not None:
        raise fail("give --older-than DAYS or --all, not both")
    if older_than is not None and not (older_than >= 0 and math.isfinite(older_than)):
        # A negative age would take every file, nan none of them: neither is what was meant.
        raise fail(f"--older-than takes a number of days, 0 or more (got {older_than}); --all removes everything")
    removed = prune(older_than_days=older_than, everything=all_, dry_run=dry_run)
    freed = sum(size for _, size in removed)
    verb = "would remove" if dry_run else "removed"
    for path, size in removed:
        note(f"{verb} {path} ({_size(size)})")
    console.print(f"{verb} {len(removed)} files, {_size(freed)}")
