"""``partsbin paths``: the ways from an extractor to a head, through bridges (the bridge
jobs ``stitch`` and ``fct`` are verbs of their kinds, :mod:`partsbin.cli.job_verbs`)."""

from __future__ import annotations

from typing import Annotated

import typer

from partsbin.cli._app import PANEL_TRAINING, JsonOpt, TokenOpt, UrlOpt, app, console, fail, open_registry, print_json


@app.command(rich_help_panel=PANEL_TRAINING)
def paths(
    extractor: Annotated[str, typer.Option("--extractor", help="ref of the extractor")],
    head: Annotated[str, typer.Option("--head", help="ref of the head")],
    max_bridges: Annotated[int | None, typer.Option("--max-bridges", help="longest chain of bridges")] = None,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Ways from EXTRACTOR to HEAD: direct (a shared group), or through bridges; best first."""
    with open_registry(url, token) as reg:
        found = reg.paths(extractor=extractor, head=head, max_bridges=max_bridges)
    if json_out:
        print_json(found)
        return
    if not found["paths"]:
        # Like `compatible` with nothing to show: exit 1, so scripts can tell.
        raise fail(
            f"no path from {extractor} to {head}: no shared group and no bridge is known "
            "(train one with `partsbin stitch`, or measure the pair with `partsbin bench`)",
            code=1,
        )
    for i, p in enumerate(found["paths"], 1):
        acc = "unmeasured" if p["measured_accuracy"] is None else f"measured {p['measured_accuracy']:.1%}"
        console.print(f"{i}. {p['kind']} ({len(p['bridges'])} bridges, {acc})")
        for step in p["steps"]:
            console.print(f"   - {step['why']}")
