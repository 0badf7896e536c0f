"""The typer application, its shared options, consoles and error handling.

Every command imports what it drives (the registry server, the trainer, torch) inside
its body, so that ``partsbin --help`` and the client commands start fast.

A user mistake is one or two lines on stderr and a non-zero exit; ``--debug`` (or
``PARTSBIN_DEBUG=1``) shows the traceback as well.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    help="partsbin: a registry of neural-network components that are compatible by training.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

_TTY = sys.stdout.isatty()
# Markup and emoji codes are off on stdout: names, data sets and reasons are user strings
# (`npz:b:test` would print a 🅱). Piped output is not wrapped, so paths stay whole.
console = Console(markup=False, emoji=False, highlight=False, soft_wrap=not _TTY, width=None if _TTY else 10_000)
err = Console(stderr=True, emoji=False, highlight=False, soft_wrap=not sys.stderr.isatty())

UrlOpt = Annotated[str | None, typer.Option("--url", help="registry URL [env: PARTSBIN_URL]")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="API token [env: PARTSBIN_TOKEN; or `partsbin login`]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]

PANEL_COMPONENTS = "Components"
PANEL_TRAINING = "Training and measuring"
PANEL_SERVER = "Running a registry"
PANEL_ACCOUNT = "Account and cache"

_debug = {"on": bool(os.environ.get("PARTSBIN_DEBUG"))}


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
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks [env: PARTSBIN_DEBUG=1]")] = False,
) -> None:
    """partsbin: a registry of neural-network components that are compatible by training."""
    if debug:
        _debug["on"] = True


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; raise the returned Exit."""
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def note(message: str) -> None:
    """A line for the person at the terminal (stderr, so stdout stays parseable)."""
    err.print(escape(message))


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def table(*columns: str) -> Table:
    """A table whose cells wrap instead of being cut: two long names that share a prefix
    must never print as the same text."""
    t = Table()
    for column in columns:
        t.add_column(column, overflow="fold")
    return t


def open_registry(url: str | None, token: str | None) -> Any:
    from partsbin.client.registry import Registry

    return Registry(url=url, token=token, progress=sys.stderr.isatty())


def main() -> None:
    from partsbin.cli._commands import load_for
    from partsbin.client.errors import PartsbinError

    # httpcore imports trio when it is installed (Selenium, a test dependency, brings it),
    # ~120 ms of every start, though it uses it only under a running trio loop, which
    # this process never starts.
    sys.modules.setdefault("trio", None)  # type: ignore[arg-type]
    # httpx imports its own command line (httpx._main: click, rich.syntax, pygments; ~40
    # ms) inside a try that falls back to a stub when it cannot; this process never
    # calls httpx's command line.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    load_for(sys.argv[1:])
    try:
        app()
    except PartsbinError as exc:
        if _debug["on"]:
            raise
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if _debug["on"]:
            raise
        err.print(
            f"[red]error:[/red] unexpected {type(exc).__name__}: {escape(str(exc))}\n"
            "This is a bug in partsbin; run again with --debug for the traceback and report it."
        )
        sys.exit(1)
