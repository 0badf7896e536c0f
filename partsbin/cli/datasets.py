"""Datasets in the registry: ``push-data``, ``pull-data`` and ``datasets``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from partsbin.cli._app import (
    PANEL_COMPONENTS,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    app,
    console,
    note,
    open_registry,
    print_json,
    table,
)


@app.command("push-data", rich_help_panel=PANEL_COMPONENTS)
def push_data(
    path: Annotated[
        Path, typer.Argument(metavar="FILE|FOLDER", help="an .npz, a tar of images, or a folder of <class>/<image>")
    ],
    name: Annotated[str, typer.Option("--name", help="NAMESPACE/NAME to register it as")],
    description: Annotated[str, typer.Option(help="what the data is, for people")] = "",
    license: Annotated[str | None, typer.Option(help="its license (e.g. CC-BY-4.0)")] = None,
    source: Annotated[str | None, typer.Option(help="where it came from (a URL, a paper)")] = None,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Register a dataset (content-addressed, like a component); jobs name it as {"dataset": "NS/NAME@V"}."""
    with open_registry(url, token) as reg:
        ds = reg.push_data(path, name=name, description=description, license=license, source=source)
    if json_out:
        print_json(
            {
                "ref": ds.ref,
                "digest": ds.digest,
                "size": ds.size,
                "created": ds.created,
                "card": ds.card.model_dump(mode="json"),
            }
        )
        return
    facts = ds.card.facts
    if not ds.created:
        note(f"already registered as {ds.ref} (identical bytes)")
    console.print(f"{ds.ref} {ds.digest}")
    if facts is not None:
        splits = ", ".join(f"{k} {v:,}" for k, v in facts.splits.items())
        shape = "x".join(str(d) for d in facts.shape) if facts.shape else "sizes vary"
        console.print(f"{facts.format}: {len(facts.classes)} classes, {splits} images, {shape}")


@app.command("pull-data", rich_help_panel=PANEL_COMPONENTS)
def pull_data(ref: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Download a registered dataset into the cache (verified); prints its path."""
    with open_registry(url, token) as reg:
        ds = reg.pull_data(ref)
    console.print(str(ds.path))


@app.command("datasets", rich_help_panel=PANEL_COMPONENTS)
def datasets(
    namespace: Annotated[str | None, typer.Option(help="only this namespace")] = None,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List the registered datasets."""
    with open_registry(url, token) as reg:
        found = reg.datasets(namespace=namespace)
    if json_out:
        print_json(
            [{"ref": d.ref, "digest": d.digest, "size": d.size, "card": d.card.model_dump(mode="json")} for d in found]
        )
        return
    if not found:
        note("no datasets")
        return
    t = table("ref", "format", "classes", "images", "size", "license")
    for d in found:
        f = d.card.facts
        t.add_row(
            d.ref,
            d.format,
            str(len(f.classes)) if f else "",
            ", ".join(f"{k} {v:,}" for k, v in f.splits.items()) if f else "",
            f"{d.size:,} B",
            d.card.license or "",
        )
    console.print(t)
