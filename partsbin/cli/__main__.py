"""``python -m partsbin.cli``: the same as the ``partsbin`` command."""

from . import main

main()
