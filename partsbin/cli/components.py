"""Commands on stored components: ``push``, ``pull``, ``ls``, ``show``, ``compatible``,
``alias``, ``yank``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from partsbin.cli._app import TokenOpt, UrlOpt, app, console, fail, open_registry


@app.command()
def push(
    file: Annotated[Path, typer.Argument(help=".safetensors file (card embedded, or given with --card)")],
    card: Annotated[Path | None, typer.Option(help="card JSON file")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Publish a component file."""
    card_data = json.loads(card.read_text()) if card else None
    with open_registry(url, token) as reg:
        comp = reg.push(file, card_data)
    console.print(f"published {comp.ref} ({comp.digest})")


@app.command()
def pull(
    ref: str,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="also copy the file here")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download a component into the cache (sha256 verified)."""
    with open_registry(url, token) as reg:
        comp = reg.pull(ref)
    if output:
        shutil.copyfile(comp.path, output)
    console.print(f"{comp.ref} {comp.digest} -> {output or comp.path}")


def _table(comps: list[Any]) -> Table:
    table = Table("ref", "role", "arch", "junction", "dataset", "digest", "size")
    for c in comps:
        j = c.card.interface.junction
        ds = c.card.provenance.dataset.name if c.card.provenance.dataset else ""
        table.add_row(
            c.ref + (" (yanked)" if c.yanked else ""),
            c.role,
            c.card.arch.name,
            f"{j.channels}@{j.spatial}",
            ds,
            c.digest[:19] + "…",
            f"{c.size:,}",
        )
    return table


@app.command("ls")
def ls(
    role: str | None = None,
    arch: str | None = None,
    group: str | None = None,
    dataset: str | None = None,
    namespace: str | None = None,
    prefix: str | None = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List components."""
    with open_registry(url, token) as reg:
        comps = reg.list(role=role, arch=arch, group=group, dataset=dataset, namespace=namespace, prefix=prefix)
    console.print(_table(comps))


@app.command()
def show(ref: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show a component's card."""
    with open_registry(url, token) as reg:
        comp = reg.info(ref)
    console.print_json(json.dumps(comp.raw))


@app.command()
def compatible(
    head: Annotated[str | None, typer.Option(help="find extractors for this head")] = None,
    extractor: Annotated[str | None, typer.Option(help="find heads for this extractor")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Components that recombine with a head or an extractor, with the reason."""
    with open_registry(url, token) as reg:
        items = reg.compatible(head=head, extractor=extractor)
    table = Table("ref", "role", "status", "why")
    for it in items:
        why = "; ".join(f"{r['detail']} ({r.get('anchor_ref') or r.get('anchor')})" for r in it["reasons"])
        table.add_row(it["component"].ref, it["role"], it["status"], why)
    console.print(table)


@app.command()
def alias(
    name: Annotated[str, typer.Argument(help="ns/name")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS")],
    version: Annotated[int | None, typer.Argument(help="version to point at")] = None,
    delete: Annotated[bool, typer.Option(help="remove the alias")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Point an alias (e.g. stable) at a version, or remove it (admin or namespace owner)."""
    with open_registry(url, token) as reg:
        if delete:
            reg.delete_alias(name, alias_name)
            console.print(f"removed {name}:{alias_name}")
            return
        if version is None:
            raise fail("give the VERSION to point at, or --delete")
        reg.set_alias(name, alias_name, version)
    console.print(f"{name}:{alias_name} -> {name}@{version}")


@app.command()
def yank(
    ref: Annotated[str, typer.Argument(help="ns/name@VERSION")],
    reason: Annotated[str, typer.Option(help="why (shown to users)")] = "",
    undo: Annotated[bool, typer.Option(help="undo a yank")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Hide a version from lists and lookups (still downloadable by exact version)."""
    with open_registry(url, token) as reg:
        if undo:
            comp = reg.unyank(ref)
            console.print(f"unyanked {comp.ref}")
            return
        if not reason:
            raise fail("--reason is required")
        comp = reg.yank(ref, reason)
    console.print(f"yanked {comp.ref}: {reason}")
