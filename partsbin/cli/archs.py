"""``partsbin archs``: the architectures installed here (built-in and from plugins), or a registry's."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from partsbin.cli._app import (
    PANEL_COMPONENTS,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    app,
    console,
    open_registry,
    print_json,
    table,
)


def _installed() -> list[dict[str, Any]]:
    from dataclasses import asdict

    from partsbin.parts.archs import arch_info

    return [asdict(a) for a in arch_info()]


@app.command(rich_help_panel=PANEL_COMPONENTS)
def archs(
    registry: Annotated[
        bool, typer.Option("--registry", help="list what the registry at --url builds, not what is installed here")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the architectures parts can be built from: name, the distribution that
    provides it (partsbin, or a plugin of the partsbin.archs entry-point group), its
    version and split points."""
    if registry:
        with open_registry(url, token) as reg:
            found = reg.archs()
    else:
        found = _installed()
    if as_json:
        print_json(found)
        return
    t = table("arch", "provided by", "split points", "default split")
    for a in found:
        provider = f"{a['distribution']} {a['version']}" if a["distribution"] else "(no distribution)"
        points = ", ".join(a["split_points"]) if a["split_points"] is not None else "(set by the config)"
        t.add_row(a["name"], provider, points, a["default_split"] or "")
    console.print(t)
