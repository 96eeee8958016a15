"""``python -m cascadekit.cli``: the ``cascadekit`` command."""

from . import main

main()
