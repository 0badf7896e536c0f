"""The ``partsbin`` command line.

It sits above the parts it drives: commands for the registry server (``serve``, ``db``,
``token``), for components (``push``, ``pull``, ``ls`` ...), for training (``train``,
``worker``, ``jobs``, ``demo``), the benchmark and maintenance (``gc``), one module per group.
"""

# Imported in the order their groups appear in `partsbin --help`.
# isort: off
from partsbin.cli import components, archs, datasets, benchmark, training, job_verbs, bridges  # noqa: F401
from partsbin.cli import account, server, maintenance, webhooks  # noqa: F401

# isort: on
from partsbin.cli._app import app, main

__all__ = ["app", "main"]
