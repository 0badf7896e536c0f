"""The typer application, its shared options and consoles.

Every command imports what it drives (the registry server, the trainer, torch) inside
its body, so that ``partsbin --help`` and the client commands start fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    help="partsbin: a registry of neural-network components that are compatible by training.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)

UrlOpt = Annotated[str | None, typer.Option("--url", help="registry URL [env: PARTSBIN_URL]")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="API token [env: PARTSBIN_TOKEN]")]


def _version(value: bool) -> None:
    if value:
        from partsbin import __version__

        print(f"partsbin {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """partsbin: a registry of neural-network components that are compatible by training."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; raise the returned Exit."""
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def open_registry(url: str | None, token: str | None) -> Any:
    from partsbin.client.registry import Registry

    return Registry(url=url, token=token, progress=sys.stderr.isatty())


def main() -> None:
    from partsbin.client.errors import PartsbinError

    try:
        app()
    except PartsbinError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(1)
