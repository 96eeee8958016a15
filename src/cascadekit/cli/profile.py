"""``cascadekit profile``: FLOPs and latency of an ONNX or torch model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

if TYPE_CHECKING:
    pass

from ..errors import (
    ParameterError,
)
from .common import JsonOpt, app, friendly, out, parse_floats, write_json

__all__ = ["profile"]


@app.command()
@friendly
def profile(
    models: Annotated[
        list[str], typer.Argument(help="NAME=PATH.onnx, one per model, in cascade order.")
    ],
    inputs: Annotated[Path, typer.Option(help="Real inputs (.npy) to time the models on.")],
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,32,256",
    repeats: Annotated[int, typer.Option(help="Timed passes per batch size.")] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed passes first.")] = 3,
    flops: Annotated[bool, typer.Option(help="Count FLOPs from the graph.")] = True,
    json_out: JsonOpt = None,
) -> None:
    """FLOPs per input and latency per batch size of ONNX models on real inputs."""
    from ..io import load_array
    from ..profiling import profile_models

    named = {}
    for spec in models:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ParameterError(
                f"Expected NAME=PATH for each model (e.g. student=student.onnx); got {spec!r}."
            )
        named[name] = path
    sizes = [int(b) for b in (parse_floats(batch_sizes, "--batch-sizes") or [])]
    doc = profile_models(
        named, load_array(inputs), sizes, repeats=repeats, warmup=warmup, flops=flops
    )
    table = Table(title="Cost per input")
    table.add_column("model")
    table.add_column("FLOPs", justify="right")
    for b in sizes:
        table.add_column(f"ms @ batch {b}", justify="right")
    for name, m in doc["models"].items():
        lat = {r["batch_size"]: r["seconds_per_input"] for r in m["latency"]}
        f = m.get("flops_per_input")
        table.add_row(
            name, "-" if f is None else f"{f:.3g}", *[f"{1e3 * lat[b]:.4f}" for b in sizes]
        )
    out.print(table)
    write_json(doc, json_out)
