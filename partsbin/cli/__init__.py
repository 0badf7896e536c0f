"""The ``partsbin`` command line.

It sits above the parts it drives: commands for the registry server (``serve``, ``db``,
``token``), for components (``push``, ``pull``, ``ls`` ...), for training (``train``,
``worker``, ``jobs``, ``demo``), the benchmark and maintenance (``gc``), one module per group.

``main`` (the ``partsbin`` command) loads only the module of the command it runs
(:mod:`partsbin.cli._commands`); ``app`` is the application with every command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from partsbin.cli._app import main

__all__ = ["app", "main"]

if TYPE_CHECKING:
    from partsbin.cli._app import app


def __getattr__(name: str) -> Any:
    if name == "app":
        from partsbin.cli import _app
        from partsbin.cli._commands import load_all

        load_all()
        return _app.app
    raise AttributeError(f"module 'partsbin.cli' has no attribute {name!r}")
