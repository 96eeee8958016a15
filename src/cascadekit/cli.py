"""The ``cascadekit`` command line: a thin layer that parses arguments and calls the library.

Stage outputs are positional, one file per stage, in cascade order. Every user mistake ends with
a one-line message on stderr and exit code 1, never a traceback; the library's parameter names
in a message are replaced by the options of this command line (``max_relative_cost`` ->
``--max-cost``). Whatever was assumed to produce a number (probabilities read as such, dropped
index columns, equal costs, a threshold outside the scores' range) is printed as a
``note:`` line on stderr and listed under ``"notes"`` in the JSON output.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from .calibration import Target

from .errors import (
    CascadeError,
    ClassCountError,
    InputShapeError,
    ParameterError,
    ThresholdRangeWarning,
)

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


def _note(text: str) -> None:
    if text not in _NOTES:
        _NOTES.append(text)


def _friendly(fn: F) -> F:
    """Turn a CascadeError into a one-line message and exit code 1; print the notes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _NOTES.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("always", ThresholdRangeWarning)
            shown = warnings.showwarning

            def show(message: Any, category: Any, *rest: Any, **kw: Any) -> None:
                if issubclass(category, ThresholdRangeWarning):
                    _note(cli_message(str(message)))
                else:  # pragma: no cover - other warnings go their usual way
                    shown(message, category, *rest, **kw)

            warnings.showwarning = show
            try:
                result = fn(*args, **kwargs)
            except CascadeError as exc:
                _print_notes()
                err.print(
                    f"[bold red]error:[/] {cli_message(str(exc))}", highlight=False, soft_wrap=True
                )
                raise typer.Exit(1) from None
            finally:
                warnings.showwarning = shown
        _print_notes()
        return result

    return wrapper  # type: ignore[return-value]


def _print_notes() -> None:
    for text in _NOTES:
        err.print(f"[yellow]note:[/] {text}", highlight=False, soft_wrap=True)
    _NOTES.clear()


def _floats(text: str | None, what: str) -> list[float] | None:
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


def _classes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [c.strip() for c in text.split(",")]
    if len(names) < 2 or any(not c for c in names) or len(set(names)) != len(names):
        raise ParameterError(
            f"Expected --classes as 2 or more distinct comma-separated names in class order "
            f"(e.g. cat,dog,bird); got {text!r}."
        )
    return names


def _load_stages(
    paths: list[Path],
    key: str | None,
    classes: list[str] | None = None,
    binary: str | None = None,
    *,
    min_stages: int = 2,
    same_classes: bool = True,
) -> list[np.ndarray]:
    """Read the stage files, saying what was assumed, with command-line advice on errors."""
    from ._validation import binary_logits, output_kind
    from .io import read_array

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
            _note(text)
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
            _note(
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
                _note(f"{p.name}: outputs are probabilities (rows sum to 1): using their logs")
            elif kind == "log_probabilities":
                _note(f"{p.name}: outputs are log-probabilities (each row's logsumexp is 0)")
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


def _load_labels(
    path: Path, key: str | None = None, classes: list[str] | None = None
) -> np.ndarray:
    from .io import read_array

    r = read_array(path, key=key, classes=classes)
    for text in r.notes:
        _note(text.replace("key=NAME", "--labels-key NAME"))
    return r.array


def _note_costs(costs: list[float] | None) -> None:
    if costs is None:
        _note(
            "costs assumed equal (1 per stage): relative cost and speed-up count stage calls, "
            "not compute. Pass the real ones with --costs, e.g. --costs 1,7 (FLOPs or ms per "
            "input; `cascadekit profile` measures them)"
        )


def _write_json(doc: dict[str, Any], path: Path | None) -> None:
    if _NOTES:
        doc["notes"] = list(_NOTES)
    if path is not None:
        path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        err.print(f"wrote {path}", highlight=False)


def _fmt(v: Any, digits: int = 4) -> str:
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


@app.command()
@_friendly
def evaluate(
    stages: StagesArg,
    labels: Annotated[Path, typer.Option(help="True labels (1-D integers).")],
    costs: CostsOpt = None,
    score: Annotated[
        str, typer.Option(help="Routing score, or 'all' to compare every score side by side.")
    ] = "energy",
    temperature: TempOpt = 1.0,
    threshold: Annotated[
        str | None, typer.Option(help="Report the operating point here (t, or t1,t2 for N>2).")
    ] = None,
    json_out: JsonOpt = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of the curve.")] = None,
    max_points: Annotated[int, typer.Option(help="Downsample the curve to N points.")] = 200,
    n_resamples: Annotated[int, typer.Option(help="Bootstrap resamples for 95% intervals.")] = 0,
    top_k: Annotated[int, typer.Option(help="Count a prediction right if in the top k.")] = 1,
    key: KeyOpt = None,
    labels_key: LabelsKeyOpt = None,
    classes: ClassesOpt = None,
    binary: BinaryOpt = None,
) -> None:
    """Trade-off curves of a cascade on saved logits: accuracy vs teacher share and cost."""
    from .report import evaluate_all_scores, evaluate_report, plot_evaluation, stage_correctness
    from .scores import compute_score

    names_ = _classes(classes)
    outs = _load_stages(stages, key, names_, binary)
    y = _load_labels(labels, labels_key, names_)
    cost_list = _floats(costs, "--costs")
    _note_costs(cost_list)
    names = [p.stem for p in stages]
    if score == "auto":
        rep = _evaluate_auto(outs, y, cost_list, max_points, n_resamples, names, top_k)
        blocks = {rep["score"]: rep}
    elif score == "all":
        if threshold is not None:
            raise ParameterError("--threshold applies to one score; drop it with --score all.")
        rep = evaluate_all_scores(
            outs,
            y,
            costs=cost_list,
            temperature=temperature,
            max_points=max_points,
            n_resamples=n_resamples,
            names=names,
            top_k=top_k,
        )
        blocks = rep["scores"]
        for name, why in rep.get("skipped", {}).items():
            _note(f"{name} left out: {why}; pass raw logits to compare it")
    else:
        rep = evaluate_report(
            outs,
            y,
            costs=cost_list,
            score=score,
            temperature=temperature,
            threshold=_floats(threshold, "--threshold"),
            max_points=max_points,
            n_resamples=n_resamples,
            names=names,
            top_k=top_k,
        )
        blocks = {score: rep}
    _print_stages(rep)
    table = Table(title=f"Routers on {rep['n_samples']} samples (higher is better)")
    for col in (
        "score",
        "auc",
        "gap captured",
        "apgr",
        "teacher share @ T acc",
        "speed-up @ T acc",
    ):
        table.add_column(col, justify="right")
    for name, b in blocks.items():
        table.add_row(
            name,
            _fmt(b["auc"]),
            _fmt(b["gap_captured"], 3),
            _fmt(b["apgr"], 3),
            _fmt(b["teacher_share_at_teacher_accuracy"], 3),
            _fmt(b["speedup_at_teacher_accuracy"], 2) + "x",
        )
    first = next(iter(blocks.values()))
    table.caption = (
        f"random auc {first['random_auc']:.4f}, oracle auc {first['oracle_auc']:.4f}; "
        "gap captured = share of the random-to-oracle gap"
    )
    out.print(table)
    if "operating_point" in rep:
        op = rep["operating_point"]
        out.print(
            f"operating point: threshold {op['threshold']}, teacher share "
            f"{op['teacher_share']:.3f}, accuracy {op['accuracy']:.4f}, relative cost "
            f"{op['relative_cost']:.3f}"
        )
    _write_json(rep, json_out)
    if plot is not None:
        ref = score if score not in ("all", "auto") else "energy"
        student_scores = compute_score(ref, outs[0], temperature)
        correct = stage_correctness([np.asarray(o) for o in outs[:1]], y, top_k=top_k)
        plot_evaluation(rep, plot, stage_scores=[student_scores], stage_correct=correct)
        err.print(f"wrote {plot}", highlight=False)


def _evaluate_auto(
    outs: list[np.ndarray],
    y: np.ndarray,
    costs: list[float] | None,
    max_points: int,
    n_resamples: int,
    names: list[str],
    top_k: int,
) -> dict[str, Any]:
    """--score auto: choose by cross-fitting (cascadekit.policies.auto_select), then report
    the chosen router; a learned one is scored out of fold, so no row judges its own model."""
    from .policies import auto_select
    from .report import evaluate_report

    res = auto_select(outs, y, costs)
    oof = res.out_of_fold
    if oof is None:
        score_arg: Any = res.score
    else:

        def score_arg(logits: Any, temperature: float = 1.0) -> np.ndarray:
            return oof

    rep = evaluate_report(
        outs,
        y,
        costs=costs,
        score=score_arg,
        temperature=res.temperature,
        max_points=max_points,
        n_resamples=n_resamples,
        names=names,
        top_k=top_k,
    )
    rep["score"] = res.name
    rep["auto"] = res.to_dict()
    return rep


def _print_stages(rep: dict[str, Any]) -> None:
    table = Table(title="Stages")
    for col in ("stage", "accuracy", "cost"):
        table.add_column(col, justify="right")
    for st in rep["stages"]:
        table.add_row(st["name"], _fmt(st["accuracy"]), _fmt(st["cost"], 3))
    out.print(table)


@app.command()
@_friendly
def calibrate(
    stages: StagesArg,
    labels: Annotated[
        Path | None, typer.Option(help="True labels; not needed with --label-free.")
    ] = None,
    costs: CostsOpt = None,
    score: ScoreOpt = "energy",
    temperature: TempOpt = 1.0,
    teacher_share: Annotated[
        float | None, typer.Option(help="Send this share of inputs to the last stage.")
    ] = None,
    target_accuracy: Annotated[
        float | None, typer.Option(help="Cheapest threshold reaching this accuracy (labels).")
    ] = None,
    target_agreement: Annotated[
        float | None,
        typer.Option(
            help="With --label-free: cheapest threshold whose answers agree with the last "
            "stage's on this share of inputs."
        ),
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option(help="Most accurate threshold within this relative cost.")
    ] = None,
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(help="Guarantee: accuracy drop vs the last stage at most epsilon."),
    ] = None,
    delta: Annotated[
        float,
        typer.Option(
            help="With --max-accuracy-drop: the risk level, the allowed probability that the "
            "guarantee fails (0.1: it holds with probability 0.9)."
        ),
    ] = 0.1,
    crossing: Annotated[
        bool, typer.Option(help="EBJR Fig. 4: where right/wrong score densities cross.")
    ] = False,
    label_free: Annotated[
        bool, typer.Option(help="Use agreement with the last stage instead of labels.")
    ] = False,
    method: Annotated[
        str,
        typer.Option(
            help="Guarantee test: auto (trinomial with labels, binomial label-free), "
            "trinomial, betting, binomial or hb."
        ),
    ] = "auto",
    json_out: JsonOpt = None,
    save_router: Annotated[
        Path | None, typer.Option(help="Save the router (JSON) for `cascadekit route`.")
    ] = None,
    key: KeyOpt = None,
    labels_key: LabelsKeyOpt = None,
    classes: ClassesOpt = None,
    binary: BinaryOpt = None,
) -> None:
    """Choose thresholds on calibration data for a target share, accuracy, cost or guarantee.

    Without labels (--label-free) correctness is agreement with the last stage: the target is
    --target-agreement, and the report says agreement, never accuracy.
    """
    from .calibration import calibrate_outputs
    from .router import Router

    names_ = _classes(classes)
    outs = _load_stages(stages, key, names_, binary)
    chosen = [
        name
        for name, val in (
            ("--teacher-share", teacher_share),
            ("--target-accuracy", target_accuracy),
            ("--target-agreement", target_agreement),
            ("--max-cost", max_cost),
            ("--max-accuracy-drop", max_accuracy_drop),
            ("--crossing", crossing or None),
        )
        if val is not None
    ]
    if len(chosen) != 1:
        raise ParameterError(
            "Expected exactly one target: --teacher-share, --target-accuracy (or "
            "--target-agreement with --label-free), --max-cost, --max-accuracy-drop or "
            f"--crossing; got {len(chosen)} ({', '.join(chosen) or 'none'})."
        )
    if labels is None and not label_free:
        raise ParameterError(
            "Expected --labels with the true labels of the calibration data; got none. Pass "
            "--labels y.npy, or --label-free to calibrate on agreement with the last stage."
        )
    if label_free and labels is not None:
        raise ParameterError("Pass either --labels or --label-free, not both.")
    if label_free and target_accuracy is not None:
        raise ParameterError(
            "--target-accuracy needs --labels: without labels cascadekit measures agreement with "
            "the last stage, not accuracy. Pass --target-agreement A (the share of inputs "
            "answered as the last stage answers them), or --labels y.npy."
        )
    if target_agreement is not None and not label_free:
        raise ParameterError(
            "--target-agreement is the label-free target: add --label-free (and drop --labels), "
            "or use --target-accuracy with --labels."
        )
    if label_free:
        _note(
            "label-free: 'agreement' is the share of inputs answered as the last stage answers "
            "them, not accuracy (the last stage's accuracy is unknown without labels)"
            + (
                "; the guarantee bounds the disagreement with the last stage, which bounds the "
                "accuracy drop from above"
                if max_accuracy_drop is not None
                else ""
            )
        )
    y = None if labels is None else _load_labels(labels, labels_key, names_)
    cost_list = _floats(costs, "--costs")
    _note_costs(cost_list)
    if max_cost is not None:
        c = [1.0] * len(outs) if cost_list is None else cost_list
        cheapest = c[0] / c[-1] if len(c) == len(outs) and c[-1] > 0 else None
        if cheapest is not None and max_cost < cheapest:
            raise ParameterError(
                f"--max-cost {max_cost:g} is below the cheapest cascade: answering every input "
                f"on the first stage costs {cheapest:.4g} of the last stage alone with costs "
                f"{','.join(f'{v:g}' for v in c)}"
                + (
                    " (assumed equal). Pass the stages' real costs with --costs (e.g. --costs "
                    "1,7), or raise --max-cost."
                    if cost_list is None
                    else f". Raise --max-cost to at least {cheapest:.4g}."
                )
            )
    target = _cli_target(
        teacher_share,
        target_accuracy if target_agreement is None else target_agreement,
        max_cost,
        max_accuracy_drop,
        delta,
        method,
        crossing,
    )
    if score == "auto":
        _calibrate_auto(outs, y, cost_list, stages, target, json_out, save_router)
        return
    result = calibrate_outputs(
        outs, y, target, costs=cost_list, score=score, temperature=temperature
    )
    doc = {"score": score, "temperature": temperature, **result.to_dict()}
    table = Table(title=f"Calibrated on {len(outs[0])} samples")
    table.add_column("field")
    table.add_column("value", justify="right")
    for k, v in doc.items():
        if k in ("grid", "p_values", "notes"):
            continue  # long lists: in the JSON only
        table.add_row(k, _fmt(v) if not isinstance(v, list) else ", ".join(map(_fmt, v)))
    out.print(table)
    _write_json(doc, json_out)
    if save_router is not None:
        router = Router.from_calibration(
            result,
            score,
            temperature=temperature,
            costs=cost_list,
            stage_names=[p.stem for p in stages],
            calibration={k: v for k, v in doc.items() if k not in ("score", "temperature")},
        )
        router.save(save_router)
        err.print(f"wrote {save_router}", highlight=False)


def _cli_target(
    teacher_share: float | None,
    accuracy: float | None,
    max_cost: float | None,
    max_accuracy_drop: float | None,
    delta: float,
    method: str,
    crossing: bool,
) -> Target:
    """The one :class:`~cascadekit.calibration.Target` the calibrate options describe (the
    caller has checked that exactly one is given)."""
    from .calibration import Target

    if teacher_share is not None:
        return Target("teacher_share", teacher_share)
    if accuracy is not None:
        return Target("accuracy", accuracy)
    if max_cost is not None:
        return Target("relative_cost", max_cost)
    if max_accuracy_drop is not None:
        return Target("accuracy_drop", max_accuracy_drop, delta=delta, method=method)
    assert crossing
    return Target("crossing")


def _calibrate_auto(
    outs: list[np.ndarray],
    y: np.ndarray | None,
    cost_list: list[float] | None,
    stages: list[Path],
    target: Target,
    json_out: Path | None,
    save_router: Path | None,
) -> None:
    """--score auto for calibrate: choose the router, then its threshold on rows it left."""
    from .calibration import calibrate_cascade
    from .policies import PolicyRouter, auto_select, save_policy_router
    from .router import Router

    if y is None:
        raise ParameterError("--score auto needs --labels (it compares routers on accuracy).")
    if target.kind in ("accuracy_drop", "crossing"):
        raise ParameterError(
            "--score auto chooses the router on the calibration data, so a guarantee or "
            "crossing threshold on the same data would be void. Choose the score on separate "
            "data, then calibrate it with --score NAME."
        )
    res = auto_select(outs, y, cost_list)
    rows = res.calibration_rows
    z = outs[0][rows]
    t_out = outs[-1][rows]
    t_pred = t_out if t_out.ndim == 1 else np.argmax(t_out, axis=1)
    cs, ct = np.argmax(z, axis=1) == y[rows], t_pred == y[rows]
    result = calibrate_cascade([res.scores(z)], [cs, ct], target, costs=cost_list)
    threshold = result.thresholds[0]
    doc = {"score": res.name, "temperature": res.temperature, **result.to_dict()}
    doc["auto"] = res.to_dict()
    table = Table(title=f"--score auto on {len(outs[0])} samples (threshold on {rows.size})")
    table.add_column("router")
    table.add_column(f"{res.criterion} (cross-fitted)", justify="right")
    for c in res.candidates:
        table.add_row(c["name"] + (" *" if c["name"] == res.name else ""), _fmt(c["mean"], 3))
    out.print(table)
    out.print(
        f"chosen {res.name}: threshold {_fmt(threshold)}, teacher share "
        f"{result.teacher_share:.3f}, accuracy {result.accuracy:.4f}"
    )
    _write_json(doc, json_out)
    if save_router is None:
        return
    cal = {k: v for k, v in doc.items() if k not in ("score", "temperature", "auto")}
    if res.router is not None:
        pol = res.router.policy
        pol.thresholds_ = [threshold, 0.0]
        save_policy_router(
            PolicyRouter(pol, res.router.spec, cal, [p.stem for p in stages]),
            save_router,
            allow_pickle=False,
        )
    else:
        Router.from_calibration(
            result,
            res.score,
            temperature=res.temperature,
            costs=cost_list,
            stage_names=[p.stem for p in stages],
            calibration=cal,
        ).save(save_router)
    err.print(f"wrote {save_router}", highlight=False)


@app.command()
@_friendly
def route(
    router: Annotated[Path, typer.Argument(help="Router file from `calibrate --save-router`.")],
    stages: StagesArg,
    labels: Annotated[Path | None, typer.Option(help="True labels, to report accuracy.")] = None,
    json_out: JsonOpt = None,
    key: KeyOpt = None,
    features: Annotated[
        Path | None,
        typer.Option(help="Extra features (n, k) of a learned router that needs more than logits."),
    ] = None,
    labels_key: LabelsKeyOpt = None,
    classes: ClassesOpt = None,
    binary: BinaryOpt = None,
) -> None:
    """Apply a saved router to new saved logits: per-input stage and prediction."""
    from .router import Router

    rt = Router.load(router)
    names_ = _classes(classes)
    mapped = any(m is not None for m in (rt.class_maps or []))
    outs = _load_stages(stages, key, names_, binary, min_stages=1, same_classes=not mapped)
    y = None if labels is None else _load_labels(labels, labels_key, names_)
    if rt.costs is None:
        _note_costs(None)
    if rt.policy is not None and (features is not None or not _is_chain_policy(rt)):
        _route_policy(router, outs, features, y, json_out)  # a DAG, or extra feature columns
        return
    if features is not None:
        raise ParameterError("--features applies to learned routers only; this one uses a score.")
    result = rt.to_cascade(outs).route()  # a learned chain policy too: the same engine
    doc: dict[str, Any] = {
        "n_samples": int(result.stage.shape[0]),
        "thresholds": [None if math.isinf(t) and t > 0 else t for t in rt.thresholds],
        **({"score": "learned"} if rt.policy is not None else {}),
        "teacher_share": result.teacher_share,
        "relative_cost": result.relative_cost,
        "stage_shares": [float(v) for v in result.stage_shares],
        "stage": result.stage.tolist(),
        "prediction": result.predictions.tolist(),
    }
    if y is not None:
        doc["accuracy"] = result.accuracy(y)
    msg = f"routed {doc['n_samples']} inputs: teacher share {doc['teacher_share']:.3f}"
    if "accuracy" in doc:
        msg += f", accuracy {doc['accuracy']:.4f}"
    out.print(msg)
    _write_json(doc, json_out)


def _is_chain_policy(rt: Any) -> bool:
    """A learned router that runs as a cascade (a chain on logit features alone)."""
    from .policies import PolicyGraph

    policy = rt.policy or {}
    graph = PolicyGraph.from_dict(policy["graph"])
    return graph.is_chain and not (policy.get("features") or {}).get("n_extra")


def _route_policy(
    router: Path,
    outs: list[np.ndarray],
    features: Path | None,
    labels: np.ndarray | None,
    json_out: Path | None,
) -> None:
    from .io import load_array
    from .policies import load_policy_router

    pr = load_policy_router(router)
    extra = None if features is None else load_array(features)
    r, preds = pr.predict(outs, extra)
    doc: dict[str, Any] = {
        "n_samples": int(r.exit_node.shape[0]),
        "score": "learned",
        "teacher_share": r.teacher_share,
        "relative_cost": r.relative_cost,
        "stage_shares": [float(v) for v in r.node_shares],
        "stage": r.exit_node.tolist(),
        "prediction": preds.tolist(),
    }
    if labels is not None:
        doc["accuracy"] = float(np.mean(preds == labels))
    msg = f"routed {doc['n_samples']} inputs: teacher share {doc['teacher_share']:.3f}"
    if "accuracy" in doc:
        msg += f", accuracy {doc['accuracy']:.4f}"
    out.print(msg)
    _write_json(doc, json_out)


@app.command()
@_friendly
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
    from .io import load_array
    from .profiling import profile_models

    named = {}
    for spec in models:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ParameterError(
                f"Expected NAME=PATH for each model (e.g. student=student.onnx); got {spec!r}."
            )
        named[name] = path
    sizes = [int(b) for b in (_floats(batch_sizes, "--batch-sizes") or [])]
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
    _write_json(doc, json_out)


@app.command()
@_friendly
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
    from .demo import run_demo

    run_demo(benchmark, out_dir, console=out)


@app.command()
@_friendly
def recalibrate(
    log: Annotated[Path, typer.Argument(help="Monitoring log (JSONL) written by the server.")],
    router: Annotated[Path, typer.Option(help="The router file the server uses.")],
    max_accuracy_drop: Annotated[
        float, typer.Option(help="Guarantee: accuracy drop vs the teacher at most this.")
    ],
    delta: Annotated[float, typer.Option(help="Hold with probability 1 - delta.")] = 0.05,
    model: Annotated[
        str | None, typer.Option(help="Model in the log (needed when it holds several).")
    ] = None,
    save_router: Annotated[
        Path | None, typer.Option(help="Write the router with the new threshold here.")
    ] = None,
    apply: Annotated[
        str | None,
        typer.Option(
            help="Apply the new threshold on this server (http://host:port) through its admin "
            "API, which audits the change; the token comes from $CASCADEKIT_ADMIN_TOKEN."
        ),
    ] = None,
    json_out: JsonOpt = None,
) -> None:
    """Propose a new student threshold from the logged shadow audits, with the label-free
    guarantee; print old and new; apply it only when asked."""
    from .monitoring.recalibrate import apply_thresholds, propose_from_log
    from .router import Router

    rt = Router.load(router)
    if not rt.thresholds:
        raise ParameterError(f"The router {str(router)!r} has no threshold to recalibrate.")
    name, p = propose_from_log(log, rt.thresholds[0], max_accuracy_drop, delta, model=model)
    table = Table(title=f"recalibration of {name!r} ({p.n_audits:,} audits)")
    for col in ("", "threshold", "teacher share", "disagreement", f"upper bound ({1 - delta:g})"):
        table.add_column(col)
    table.add_row(
        "old",
        _fmt(p.old_threshold),
        _fmt(p.old_teacher_share),
        _fmt(p.old_drop.disagreement),
        _fmt(p.old_drop.upper),
    )
    table.add_row(
        "new",
        _fmt(p.new_threshold),
        _fmt(p.new_teacher_share),
        _fmt(p.new_drop.disagreement),
        f"guaranteed <= {max_accuracy_drop:g}",
    )
    out.print(table)
    out.print(
        f"the new threshold keeps the accuracy drop against the teacher <= "
        f"{max_accuracy_drop:g} with probability >= {1 - delta:g} (label-free; certifying "
        f"anything needs >= {p.needed:,} audits)",
        highlight=False,
    )
    doc: dict[str, Any] = {"model": name, **p.to_dict(), "applied": False}
    new = [p.new_threshold, *rt.thresholds[1:]]
    if save_router is not None:
        rt.thresholds = new
        rt.calibration = {
            "method": "recalibrate",
            "label_free": True,
            "epsilon": p.epsilon,
            "delta": p.delta,
            "n_calibration": p.n_audits,
            "source": str(log),
        }
        rt.save(save_router)
        err.print(f"wrote {save_router}", highlight=False)
    if apply is not None:
        from .serve.config import ADMIN_TOKEN_ENV

        answer = apply_thresholds(apply, name, new, os.environ.get(ADMIN_TOKEN_ENV))
        doc["applied"] = True
        doc["server"] = answer
        out.print(
            f"applied on {apply}: thresholds {answer.get('previous')} -> "
            f"{answer.get('thresholds')}",
            highlight=False,
        )
    else:
        out.print("not applied (pass --apply URL to apply it through the admin API)")
    _write_json(doc, json_out)


#: What ``cascadekit serve --demo NAME`` serves.
_SERVE_DEMOS = ("fashion-mnist", "text")


@app.command()
@_friendly
def serve(
    config_file: Annotated[
        Path | None,
        typer.Argument(
            help="YAML file describing the cascade (models, score, thresholds...); with --demo, "
            "which demo: fashion-mnist (default) or text."
        ),
    ] = None,
    demo_model: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Serve a demo cascade: Fashion-MNIST images, or `--demo text`: tweet sentiment "
            "on strings (MiniLM -> MPNet-base; needs `scripts/setup.sh --text`).",
        ),
    ] = False,
    reduced: Annotated[
        bool,
        typer.Option(
            "--reduced",
            help="With --demo: the reduced recipe (Fashion-MNIST: small splits, same networks, "
            "trains in about a minute on a new machine; text: 300 tweets, MiniLM-L3 -> MiniLM-L6).",
        ),
    ] = False,
    teacher_only: Annotated[
        bool,
        typer.Option(
            "--teacher-only",
            help="With --demo: serve the demo's teacher alone behind the same server (every "
            "input answered by the teacher), to compare with the cascade.",
        ),
    ] = False,
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default 127.0.0.1: loopback only).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000; 0 = any free).")] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            help="Also serve the protocol's gRPC service on this port (0 = any free; default: "
            "no gRPC). Needs the grpc extra."
        ),
    ] = None,
    torch_threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="torch.set_num_threads at start-up (overrides the config file; 1 suits a small "
            "machine: each stage's thread then uses one core).",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes on the one port (local backend), each loading the models; "
            "metrics, admin threshold changes, readiness and drain are the server's.",
        ),
    ] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    backend: Annotated[
        str,
        typer.Option(
            help="local (one process, uvicorn) or ray (Ray Serve: one deployment per stage "
            "plus a router, each scaled on its own)."
        ),
    ] = "local",
    ray_config: Annotated[
        Path | None,
        typer.Option(help="With --backend ray: a Ray Serve config file (examples/ray_serve.yaml)."),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="With --backend ray: Ray cluster address ('auto').")
    ] = None,
) -> None:
    """Serve a cascade over the Open Inference Protocol (KServe v2) with uvicorn or Ray Serve."""
    from .serve import ServeConfig, create_app, run
    from .serve.workers import ServeSpec, check_workers, run_workers

    if backend not in ("local", "ray"):
        raise ParameterError(f"Expected --backend local or ray; got {backend!r}.")
    if grpc_port is not None and backend != "local":
        raise ParameterError("--grpc-port goes with --backend local (the uvicorn server).")
    check_workers(workers)
    if workers > 1 and backend == "ray":
        raise ParameterError(
            "--workers goes with the local backend; with --backend ray, scale the router and "
            "stage deployments with their replicas in the Ray Serve config."
        )
    if backend == "ray" and ray_config is not None:
        from .serve.ray import serve_from_cli

        serve_from_cli(None, ServeConfig(), ray_config=ray_config, address=ray_address)
        return
    if reduced and not demo_model:
        raise ParameterError("--reduced goes with --demo: `cascadekit serve --demo --reduced`.")
    if teacher_only and not demo_model:
        raise ParameterError(
            "--teacher-only goes with --demo: `cascadekit serve --demo --teacher-only`; for "
            "your own cascade, serve a config file whose thresholds are all -inf."
        )
    demo_name = str(config_file) if demo_model and config_file is not None else None
    if demo_name is not None and demo_name not in _SERVE_DEMOS:
        raise ParameterError(
            f"Expected the demo to be one of {', '.join(_SERVE_DEMOS)}; got {demo_name!r}. "
            "Serve a config file without --demo: `cascadekit serve config.yaml`."
        )
    if not demo_model and config_file is None:
        raise ParameterError(
            "Expected either --demo or a config file: `cascadekit serve --demo` or "
            "`cascadekit serve config.yaml`."
        )
    spec = ServeSpec(
        None if demo_model else str(config_file),
        demo=demo_name or "fashion-mnist",
        reduced=reduced,
        teacher_only=teacher_only,
        host=host,
        port=port,
        torch_threads=torch_threads,
        grpc_port=grpc_port,
    )
    if workers > 1:
        run_workers(spec, workers, log_level=log_level)
        return
    served, config = spec.load()
    if backend == "ray":
        from .serve.ray import serve_from_cli

        serve_from_cli(served, config, address=ray_address)
        return
    web = create_app(served, config)
    if grpc_port is not None:
        from .serve.grpc import add_grpc

        add_grpc(web, grpc_port)
    run(web, config, log_level=log_level)


def main() -> None:
    """Entry point of the ``cascadekit`` command."""
    # torch's OpenMP threads spin while waiting, which makes a 2-core machine under any other
    # load 10-100x slower; passive waiting costs nothing when the machine is idle.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
