"""What every ``cascadekit`` command shares: the typer app, messages in the command line's words,
notes, stage and label loading, and the common options."""

from __future__ import annotations

import functools
import json
import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console

if TYPE_CHECKING:
    pass

from ..errors import (
    CascadeError,
    ClassCountError,
    InputShapeError,
    ParameterError,
    ThresholdRangeWarning,
)

__all__ = [
    "BinaryOpt",
    "ClassesOpt",
    "CostsOpt",
    "JsonOpt",
    "KeyOpt",
    "LabelsKeyOpt",
    "ScoreOpt",
    "StagesArg",
    "TempOpt",
    "app",
    "cli_message",
    "err",
    "fmt",
    "friendly",
    "load_labels",
    "load_stages",
    "note",
    "note_costs",
    "out",
    "parse_classes",
    "parse_floats",
    "print_notes",
    "write_json",
]

app = typer.Typer(
    name="cascadekit",
    help="Adaptive inference with model cascades: evaluate, calibrate and apply routers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

#: What was assumed during the current command (printed as ``note:`` lines, and in the JSON).
_NOTES: list[str] = []

#: The library's parameter names in messages, and the options that set them here.
_CLI_WORDS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(r"\bmax_relative_cost\b"), "--max-cost"),
    (re.compile(r"\btarget_accuracy\b"), "--target-accuracy"),
    (re.compile(r"\btarget_agreement\b"), "--target-agreement"),
    (re.compile(r"\bteacher_share=(\S)"), r"--teacher-share \1"),
    (re.compile(r"\bdelta=(\S)"), r"--delta \1"),
    (re.compile(r"\bbatch_sizes=\[([^\]]*)\]"), lambda m: "--batch-sizes " + m[1].replace(" ", "")),
    (re.compile(r"\bclasses=\[\.\.\.\]"), "--classes NAME,NAME,..."),
    (re.compile(r"\bkind='(decision|probability)'"), r"--binary \1"),
    (re.compile(r"\bkey=NAME\b"), "--key NAME (--labels-key NAME for the labels file)"),
    (re.compile(r"\bcosts=\[([^\]]*)\]"), lambda m: "--costs " + m[1].replace(" ", "")),
]


def cli_message(text: str) -> str:
    """A library message with its parameter names replaced by this command line's options.

    Examples
    --------
    >>> cli_message("Raise max_relative_cost or time it at batch_sizes=[8].")
    'Raise --max-cost or time it at --batch-sizes 8.'
    """
    for pattern, repl in _CLI_WORDS:
        text = pattern.sub(repl, text)
    return text


def note(text: str) -> None:
    if text not in _NOTES:
        _NOTES.append(text)


def friendly(fn: F) -> F:
    """Turn a CascadeError into a one-line message and exit code 1; print the notes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _NOTES.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("always", ThresholdRangeWarning)
            shown = warnings.showwarning

            def show(message: Any, category: Any, *rest: Any, **kw: Any) -> None:
                if issubclass(category, ThresholdRangeWarning):
                    note(cli_message(str(message)))
                else:  # pragma: no cover - other warnings go their usual way
                    shown(message, category, *rest, **kw)

            warnings.showwarning = show
            try:
                result = fn(*args, **kwargs)
            except CascadeError as exc:
                print_notes()
                err.print(
                    f"[bold red]error:[/] {cli_message(str(exc))}", highlight=False, soft_wrap=True
                )
                raise typer.Exit(1) from None
            finally:
                warnings.showwarning = shown
        print_notes()
        return result

    return wrapper  # type: ignore[return-value]


def print_notes() -> None:
    for text in _NOTES:
        err.print(f"[yellow]note:[/] {text}", highlight=False, soft_wrap=True)
    _NOTES.clear()


def parse_floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    vals = []
    for part in text.split(","):
        p = part.strip().lower()
        try:
            vals.append(math.inf if p in ("inf", "+inf") else float(p))
        except ValueError:
            raise ParameterError(
                f"Expected {what} as comma-separated numbers (e.g. 1,7); got {text!r}."
            ) from None
    return vals


def parse_classes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [c.strip() for c in text.split(",")]
    if len(names) < 2 or any(not c for c in names) or len(set(names)) != len(names):
        raise ParameterError(
            f"Expected --classes as 2 or more distinct comma-separated names in class order "
            f"(e.g. cat,dog,bird); got {text!r}."
        )
    return names


def load_stages(
    paths: list[Path],
    key: str | None,
    classes: list[str] | None = None,
    binary: str | None = None,
    *,
    min_stages: int = 2,
    same_classes: bool = True,
) -> list[np.ndarray]:
    """Read the stage files, saying what was assumed, with command-line advice on errors."""
    from .._validation import binary_logits, output_kind
    from ..io import read_array

    if len(paths) < min_stages:
        raise ParameterError(
            f"Expected at least 2 stage files (student first, teacher last); got {len(paths)}."
        )
    if binary is not None and binary not in ("decision", "probability"):
        raise ParameterError(f"Expected --binary decision or probability; got {binary!r}.")
    outs = []
    for i, p in enumerate(paths):
        r = read_array(p, key=key, classes=classes)
        for text in r.notes:
            note(text)
        arr = r.array
        last = i == len(paths) - 1
        if arr.ndim == 1 and not (last and np.issubdtype(arr.dtype, np.integer)):
            if binary is None:
                raise InputShapeError(
                    f"{p.name} holds one number per input (shape {arr.shape}), not one column "
                    "per class. A binary classifier's decision_function or predict_proba[:, 1]? "
                    "Say which with --binary decision or --binary probability. (Labels, as "
                    "integers, are accepted from the last stage only: only the last stage may "
                    "give labels only.)"
                )
            arr = binary_logits(arr, binary)
            note(
                f"{p.name}: one number per input, read as a binary classifier's "
                + (
                    "decision_function d (class 1 when d > 0; logits [-d/2, d/2])"
                    if binary == "decision"
                    else "probability of class 1, p (logits log[1 - p, p])"
                )
            )
        elif arr.ndim == 2:
            kind = output_kind(arr)
            if kind == "probabilities":
                note(f"{p.name}: outputs are probabilities (rows sum to 1): using their logs")
            elif kind == "log_probabilities":
                note(f"{p.name}: outputs are log-probabilities (each row's logsumexp is 0)")
        outs.append(arr)
    widths = [(p.name, o.shape[1]) for p, o in zip(paths, outs, strict=True) if o.ndim == 2]
    if same_classes and len({w for _, w in widths}) > 1:
        shown = ", ".join(f"{n} has {w}" for n, w in widths)
        raise ClassCountError(
            f"Expected every stage file to have one column per class, the same classes in the "
            f"same order; {shown} columns. Check for an index or id column or a missing class; "
            "stages with different classes need the Python API (Stage class maps)."
        )
    return outs


def load_labels(path: Path, key: str | None = None, classes: list[str] | None = None) -> np.ndarray:
    from ..io import read_array

    r = read_array(path, key=key, classes=classes)
    for text in r.notes:
        note(text.replace("key=NAME", "--labels-key NAME"))
    return r.array


def note_costs(costs: list[float] | None) -> None:
    if costs is None:
        note(
            "costs assumed equal (1 per stage): relative cost and speed-up count stage calls, "
            "not compute. Pass the real ones with --costs, e.g. --costs 1,7 (FLOPs or ms per "
            "input; `cascadekit profile` measures them)"
        )


def write_json(doc: dict[str, Any], path: Path | None) -> None:
    if _NOTES:
        doc["notes"] = list(_NOTES)
    if path is not None:
        path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        err.print(f"wrote {path}", highlight=False)


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


StagesArg = Annotated[
    list[Path],
    typer.Argument(
        help="Saved outputs, one file per stage in cascade order (.npy/.npz/.csv/.parquet)."
    ),
]
CostsOpt = Annotated[
    str | None, typer.Option(help="Per-stage costs, comma-separated (default 1 each).")
]
KeyOpt = Annotated[str | None, typer.Option(help="Array name inside .npz stage files.")]
LabelsKeyOpt = Annotated[
    str | None, typer.Option(help="Array name inside an .npz labels file (e.g. y).")
]
ClassesOpt = Annotated[
    str | None,
    typer.Option(
        help="Class names in class order, comma-separated: named CSV/parquet columns are "
        "matched to them, and text labels encoded by them."
    ),
]
BinaryOpt = Annotated[
    str | None,
    typer.Option(
        help="Stage files with one number per input hold a binary classifier's "
        "'decision' (decision_function) or 'probability' (predict_proba[:, 1])."
    ),
]
ScoreOpt = Annotated[
    str, typer.Option(help="Routing score: energy, max_softmax, margin, entropy, max_logit.")
]
TempOpt = Annotated[float, typer.Option(help="Temperature of the score.")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here.")]
