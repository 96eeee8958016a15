"""``cascadekit demo``: the embedded benchmark protocol, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    pass


from .common import app, friendly, out

__all__ = ["demo"]


@app.command()
@friendly
def demo(
    benchmark: Annotated[
        str,
        typer.Argument(
            help="fashion-mnist (default; trains three torch models once, then cached), "
            "fashion-mnist-reduced, digits (seconds) or text (three pretrained encoders)."
        ),
    ] = "fashion-mnist",
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the report files.")] = Path(
        "cascadekit-report"
    ),
) -> None:
    """Run the embedded real benchmark end to end and write a report."""
    from ..demo import run_demo

    run_demo(benchmark, out_dir, console=out)
