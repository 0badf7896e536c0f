"""The ``partsbin`` command line.

It sits above the parts it drives: commands for the registry server (``serve``, ``db``,
``token``), for components (``push``, ``pull``, ``ls`` ...), for training (``train``,
``worker``, ``jobs``, ``demo``), the benchmark and maintenance (``gc``), one module per group.
"""

# Imported in the order their groups appear in `partsbin --help`.
from partsbin.cli import components, datasets, benchmark, training, job_verbs, bridges, account, server, maintenance  # noqa: F401, I001  (registers the commands)
from partsbin.cli._app import app, main

__all__ = ["app", "main"]
