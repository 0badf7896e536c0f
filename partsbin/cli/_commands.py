"""Which module registers each command, so that one command loads only its own module.

Registering every command means importing every job kind's spec (their options are
generated from the pydantic models: ~300 ms of the ~500 ms ``import partsbin.cli`` took);
``partsbin ls`` needs none of it. ``partsbin``, ``--help`` and anything not listed here
load all of them, so the full help and click's "did you mean" still see every command.
A test keeps :data:`COMMANDS` equal to what the modules register.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module

__all__ = ["MODULES", "COMMANDS", "load_all", "load_for"]

#: In the order their groups appear in ``partsbin --help``.
MODULES = (
    "components",
    "archs",
    "datasets",
    "benchmark",
    "training",
    "job_verbs",
    "bridges",
    "account",
    "server",
    "maintenance",
    "webhooks",
)

_BY_MODULE = {
    "components": ("push", "pull", "ls", "show", "versions", "compatible", "alias", "yank"),
    "archs": ("archs",),
    "datasets": ("push-data", "pull-data", "datasets"),
    "benchmark": ("bench",),
    "training": ("train", "worker", "demo", "jobs"),
    "job_verbs": ("adapt", "transfer", "stitch", "fct", "update-head"),
    "bridges": ("paths",),
    "account": ("login", "logout", "cache"),
    "server": ("serve", "db", "token"),
    "maintenance": ("gc",),
    "webhooks": ("webhooks",),
}
#: Top-level command (or group) name -> the module of ``partsbin.cli`` that registers it.
COMMANDS = {command: module for module, commands in _BY_MODULE.items() for command in commands}


def load_all() -> None:
    for module in MODULES:
        import_module(f"partsbin.cli.{module}")


def load_for(argv: Sequence[str]) -> None:
    """Load the module of the command ``argv`` names (the root options take no values, so
    it is the first word that is not an option), or every module."""
    name = next((a for a in argv if not a.startswith("-")), None)
    module = COMMANDS.get(name) if name is not None else None
    if module is None:
        load_all()
    else:
        import_module(f"partsbin.cli.{module}")
