"""``cascadekit evaluate``: curves, AUC, APGR and speed-ups of saved stage outputs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.table import Table

if TYPE_CHECKING:
    pass

from ..errors import (
    ParameterError,
)
from .common import (
    BinaryOpt,
    ClassesOpt,
    CostsOpt,
    JsonOpt,
    KeyOpt,
    LabelsKeyOpt,
    StagesArg,
    TempOpt,
    app,
    err,
    fmt,
    friendly,
    load_labels,
    load_stages,
    note,
    note_costs,
    out,
    parse_classes,
    parse_floats,
    write_json,
)

__all__ = ["evaluate"]


@app.command()
@friendly
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
    from ..report import evaluate_all_scores, evaluate_report, plot_evaluation, stage_correctness
    from ..scores import compute_score

    names_ = parse_classes(classes)
    outs = load_stages(stages, key, names_, binary)
    y = load_labels(labels, labels_key, names_)
    cost_list = parse_floats(costs, "--costs")
    note_costs(cost_list)
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
            note(f"{name} left out: {why}; pass raw logits to compare it")
    else:
        rep = evaluate_report(
            outs,
            y,
            costs=cost_list,
            score=score,
            temperature=temperature,
            threshold=parse_floats(threshold, "--threshold"),
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
            fmt(b["auc"]),
            fmt(b["gap_captured"], 3),
            fmt(b["apgr"], 3),
            fmt(b["teacher_share_at_teacher_accuracy"], 3),
            fmt(b["speedup_at_teacher_accuracy"], 2) + "x",
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
    write_json(rep, json_out)
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
    from ..policies import auto_select
    from ..report import evaluate_report

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
        table.add_row(st["name"], fmt(st["accuracy"]), fmt(st["cost"], 3))
    out.print(table)
