"""``python -m partsbin.cli``: the same as the ``partsbin`` command."""

from partsbin.cli import main

main()
