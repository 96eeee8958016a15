"""The ``cascadekit`` command line: a thin layer that parses arguments and calls the library.

Stage outputs are positional, one file per stage, in cascade order. Every user mistake ends with
a one-line message on stderr and exit code 1, never a traceback; the library's parameter names
in a message are replaced by the options of this command line (``max_relative_cost`` ->
``--max-cost``). Whatever was assumed to produce a number (probabilities read as such, dropped
index columns, equal costs, a threshold outside the scores' range) is printed as a
``note:`` line on stderr and listed under ``"notes"`` in the JSON output.
"""

from __future__ import annotations

import os

from .common import app, cli_message

# Each command registers itself on ``app`` when its module is imported; ``--help`` lists them
# in this order.
# isort: off
from . import evaluate, calibrate, route, profile, demo, serve
# isort: on

__all__ = ["app", "cli_message", "main"]

_COMMANDS = (evaluate, calibrate, route, profile, demo, serve)


def main() -> None:
    """Entry point of the ``cascadekit`` command."""
    # torch's OpenMP threads spin while waiting, which makes a 2-core machine under any other
    # load 10-100x slower; passive waiting costs nothing when the machine is idle.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()
