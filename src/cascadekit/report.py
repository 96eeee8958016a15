"""Reports: the JSON documents of ``cascadekit evaluate`` / ``calibrate`` and their plots.

The evaluate report's JSON Schema is ``schemas/evaluate.schema.json``. Curve thresholds are
numbers, with ``null`` for +inf (the all-teacher end).

Examples
--------
>>> from cascadekit.data.digits import load_digits_pair
>>> from cascadekit.report import evaluate_report
>>> pair = load_digits_pair()
>>> outs = [pair.logits["test"]["student"], pair.logits["test"]["teacher"]]
>>> rep = evaluate_report(outs, pair.labels["test"], costs=[1, 25], score="margin")
>>> rep["curve"][0]["teacher_share"], rep["curve"][-1]["threshold"]
(0.0, None)
>>> rep["random_auc"] < rep["auc"] < rep["oracle_auc"]
True
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import curves
from ._optional import require
from ._validation import (
    LOGSUMEXP_SCORES,
    as_labels,
    check_costs,
    check_score_suits,
    output_kind,
)
from .cascade import Cascade, Stage
from .errors import ParameterError
from .router import encode_threshold
from .scores import compute_score

__all__ = [
    "evaluate_all_scores",
    "evaluate_report",
    "plot_evaluation",
    "stage_correctness",
    "write_html",
]


def _json_float(x: float) -> float | None:
    return None if (x is None or not math.isfinite(x)) else float(x)


def stage_correctness(
    outputs: Sequence[np.ndarray], labels: ArrayLike, top_k: int = 1
) -> list[NDArray[np.bool_]]:
    """Per-stage correctness (top-k) of validated outputs against ``labels``."""
    return [curves.correctness(o, labels, top_k=top_k if o.ndim == 2 else 1) for o in outputs]


def _validated(
    outputs: Sequence[ArrayLike],
    labels: ArrayLike,
    costs: ArrayLike | None,
    names: Any,
    score: Any = "max_softmax",
) -> tuple[Cascade, list[np.ndarray], NDArray[np.integer[Any]]]:
    # validated as routed by ``score`` (energy is refused on probabilities)
    cascade = Cascade.from_outputs(list(outputs), costs=costs, names=names, score=score)
    outs = cascade.stage_outputs()
    n_classes = next((o.shape[1] for o in reversed(outs) if o.ndim == 2), None)
    y = as_labels(labels, n_samples=outs[0].shape[0], n_classes=n_classes)
    return cascade, outs, y


def _point(curve: curves.Curve, i: int) -> dict[str, Any]:
    th = curve.thresholds[i]
    if np.ndim(th) == 0:
        threshold: Any = encode_threshold(float(th))
    else:
        threshold = [encode_threshold(float(t)) for t in np.asarray(th)]
    rec: dict[str, Any] = {
        "threshold": threshold,
        "teacher_share": float(curve.teacher_share[i]),
        "accuracy": float(curve.accuracy[i]),
        "relative_cost": float(curve.relative_cost[i]),
    }
    if curve.stage_shares is not None:
        rec["stage_shares"] = [float(v) for v in curve.stage_shares[i]]
    return rec


def _score_block(
    outs: list[np.ndarray],
    correct: list[NDArray[np.bool_]],
    costs: NDArray[np.floating[Any]],
    score: str,
    temperature: float,
    threshold: Sequence[float] | None,
    max_points: int,
    bootstrap: int,
    grid_size: int,
    seed: int,
) -> dict[str, Any]:
    stage_scores = [compute_score(score, o, temperature).astype(np.float64) for o in outs[:-1]]
    block: dict[str, Any] = {"score": score, "temperature": temperature}
    if len(outs) == 2:
        curve = curves.cascade_curve(stage_scores[0], correct[0], correct[1], costs=costs)
        summary = curves.summarize(curve, correct[0], correct[1], costs=costs)
    else:
        curve = curves.grid_curve(stage_scores, correct, costs=costs, grid_size=grid_size)
        summary = curves.summarize(curve, correct[0], correct[-1], costs=costs)
    if len(outs) == 2:
        q = float(np.mean(~correct[0] & correct[1]))
        acc_s = float(np.mean(correct[0]))
        block["oracle_curve"] = [
            {
                "teacher_share": k,
                "accuracy": acc_s + min(k, q),
                "relative_cost": float((costs[0] + k * costs[1]) / costs[1]),
            }
            for k in (0.0, q, 1.0)
        ]
    shown = curves.downsample(curve, max_points)
    block["curve"] = [_point(shown, i) for i in range(len(shown.teacher_share))]
    block["n_curve_points"] = len(curve.teacher_share)
    for key in (
        "auc",
        "random_auc",
        "oracle_auc",
        "gap_captured",
        "apgr",
        "teacher_share_at_teacher_accuracy",
        "speedup_at_teacher_accuracy",
    ):
        block[key] = _json_float(float(summary[key]))
    if threshold is not None:
        stage = Cascade.from_outputs(outs, costs=list(costs), score=score, temperature=temperature)
        r = stage.route(thresholds=threshold)
        acc = float(np.mean(np.choose(r.stage, np.stack(correct))))
        op: dict[str, Any] = {
            "threshold": (
                encode_threshold(threshold[0])
                if len(outs) == 2
                else [encode_threshold(t) for t in threshold]
            ),
            "teacher_share": r.teacher_share,
            "accuracy": acc,
            "relative_cost": r.relative_cost,
        }
        if len(outs) > 2:
            op["stage_shares"] = [float(v) for v in r.stage_shares]
        block["operating_point"] = op
    if bootstrap and len(outs) == 2:
        ci = curves.bootstrap_summary(
            stage_scores[0], correct[0], correct[1], costs=costs, n_boot=bootstrap, seed=seed
        )
        block["bootstrap"] = {
            "n": int(bootstrap),
            "confidence": 0.95,
            "auc": [float(v) for v in ci["auc"]],
            "speedup_at_teacher_accuracy": [float(v) for v in ci["speedup_at_teacher_accuracy"]],
        }
    return block


def evaluate_report(
    outputs: Sequence[ArrayLike],
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    score: str = "energy",
    temperature: float = 1.0,
    threshold: Sequence[float] | float | None = None,
    max_points: int = 200,
    bootstrap: int = 0,
    names: Sequence[str] | None = None,
    top_k: int = 1,
    grid_size: int = 24,
    seed: int = 0,
) -> dict[str, Any]:
    """The evaluate report of one score on saved outputs (see ``schemas/evaluate.schema.json``).

    Parameters
    ----------
    outputs : sequence of arrays
        One per stage, in cascade order. The last may be labels only.
    labels : array-like of int
    costs : array-like, optional
        One per stage; default 1 each ("stage calls").
    score, temperature : routing score and its temperature.
    threshold : float or sequence, optional
        Adds the ``operating_point`` at these thresholds.
    max_points : int
        Downsample the curve to at most this many points, keeping both ends.
    bootstrap : int
        With ``n > 0`` rows resampled ``n`` times, 95% intervals of auc and speed-up.
    """
    cascade, outs, y = _validated(outputs, labels, costs, names, score)
    cost_arr = check_costs(costs, len(outs))
    if max_points < 2:
        raise ParameterError(f"Expected max_points >= 2 (both ends); got {max_points}.")
    correct = stage_correctness(outs, y, top_k=top_k)
    ths = None
    if threshold is not None:
        ths = list(cascade._check_thresholds(threshold))
    report = _header(cascade, outs, correct, cost_arr)
    report.update(
        _score_block(
            outs, correct, cost_arr, score, temperature, ths, max_points, bootstrap, grid_size, seed
        )
    )
    return report


def evaluate_all_scores(
    outputs: Sequence[ArrayLike],
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    scores: Sequence[str] | None = None,
    temperature: float = 1.0,
    max_points: int = 200,
    bootstrap: int = 0,
    names: Sequence[str] | None = None,
    top_k: int = 1,
    grid_size: int = 24,
    seed: int = 0,
) -> dict[str, Any]:
    """Every score side by side: ``{"n_samples", "stages", "scores": {name: block}}``.

    Without ``scores``, every registered score; energy is left out (and ``"skipped"`` says
    why) when a non-final stage's outputs are probabilities or log-probabilities, on which it
    is constant.
    """
    from .scores import available_scores

    cascade, outs, y = _validated(outputs, labels, costs, names)
    cost_arr = check_costs(costs, len(outs))
    correct = stage_correctness(outs, y, top_k=top_k)
    report = _header(cascade, outs, correct, cost_arr)
    names_ = list(scores or available_scores())
    kinds = [output_kind(np.asarray(o)) for o in list(outputs)[:-1]]
    normalized = [k for k in kinds if k != "logits"]
    if scores is None and normalized:
        dropped = [s for s in names_ if s in LOGSUMEXP_SCORES]
        names_ = [s for s in names_ if s not in LOGSUMEXP_SCORES]
        report["skipped"] = {
            s: f"not defined on {normalized[0].replace('_', '-')} (constant logsumexp)"
            for s in dropped
        }
    for k, kind in enumerate(kinds):
        for s in names_:
            check_score_suits(kind, s, f"the outputs of stage {k}")
    report["scores"] = {
        name: _score_block(
            outs, correct, cost_arr, name, temperature, None, max_points, bootstrap, grid_size, seed
        )
        for name in names_
    }
    return report


def _header(
    cascade: Cascade,
    outs: list[np.ndarray],
    correct: list[NDArray[np.bool_]],
    costs: NDArray[np.floating[Any]],
) -> dict[str, Any]:
    stages: list[Stage] = cascade.stages
    return {
        "n_samples": int(outs[0].shape[0]),
        "stages": [
            {"name": str(st.name), "accuracy": float(np.mean(c)), "cost": float(cost)}
            for st, c, cost in zip(stages, correct, costs, strict=True)
        ],
    }


def plot_evaluation(
    report: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    student_scores: ArrayLike | None = None,
    student_correct: ArrayLike | None = None,
) -> None:
    """Write a PNG: accuracy vs relative cost with random and oracle curves, and (given the
    student's scores and correctness) the two score histograms of EBJR Fig. 4."""
    require("matplotlib", "plot", "Plotting").use("Agg")
    plt = require("matplotlib.pyplot", "plot", "Plotting")
    blocks = report["scores"] if "scores" in report else {report["score"]: report}
    stages = report["stages"]
    acc_s, acc_t = stages[0]["accuracy"], stages[-1]["accuracy"]
    costs = [s["cost"] for s in stages]
    with_hist = student_scores is not None and student_correct is not None
    fig, axes = plt.subplots(1, 2 if with_hist else 1, figsize=(12 if with_hist else 6.5, 4.6))
    ax = axes[0] if with_hist else axes
    lo = costs[0] / costs[-1]
    hi = sum(costs) / costs[-1]
    ax.plot([lo, hi], [acc_s, acc_t], "k--", lw=1, label="random")
    for name, block in blocks.items():
        xs = [p["relative_cost"] for p in block["curve"]]
        ys = [p["accuracy"] for p in block["curve"]]
        ax.plot(xs, ys, lw=1.6, label=f"{name} (gap {block['gap_captured']:.2f})")
    first = next(iter(blocks.values()))
    if "oracle_curve" in first:
        oc = first["oracle_curve"]
        ax.plot(
            [p["relative_cost"] for p in oc],
            [p["accuracy"] for p in oc],
            ":",
            color="grey",
            label="oracle",
        )
    ax.scatter([lo, 1.0], [acc_s, acc_t], color="black", zorder=5)
    ax.annotate(stages[0]["name"], (lo, acc_s), textcoords="offset points", xytext=(5, -12))
    ax.annotate(stages[-1]["name"], (1.0, acc_t), textcoords="offset points", xytext=(-40, 6))
    ax.axhline(acc_t, color="grey", lw=0.6)
    ax.set_xlabel("relative cost (cascade cost / last-stage cost)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Accuracy vs cost, {report['n_samples']} samples")
    ax.legend(fontsize=8)
    if with_hist:
        s = np.asarray(student_scores, dtype=np.float64)
        c = np.asarray(student_correct, dtype=bool)
        bins = np.histogram_bin_edges(s, bins=50)
        axes[1].hist(s[c], bins=bins, density=True, alpha=0.55, label="student right")
        axes[1].hist(s[~c], bins=bins, density=True, alpha=0.55, label="student wrong")
        axes[1].set_xlabel(f"student score ({first['score']}, higher = keep)")
        axes[1].set_ylabel("density")
        axes[1].set_title("Score distributions (EBJR Fig. 4)")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_html(
    path: str | os.PathLike[str],
    title: str,
    sections: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]],
    images: Sequence[str | os.PathLike[str]] = (),
    notes: Sequence[str] = (),
) -> None:
    """Write one self-contained HTML page: tables, notes and PNG images embedded as base64.

    Parameters
    ----------
    sections : sequence of (heading, column names, rows)
    images : PNG files to embed
    notes : paragraphs shown under the title (plain text, escaped)
    """
    import base64
    import html

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if math.isfinite(v) else "-"
        return html.escape("-" if v is None else str(v))

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}",
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;",
        "padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}",
        "img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]
    for heading, cols, rows in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><table><tr>")
        parts += [f"<th>{html.escape(str(c))}</th>" for c in cols]
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>")
        parts.append("</table>")
    for img in images:
        data = base64.b64encode(Path(img).read_bytes()).decode("ascii")
        parts.append(
            f"<p><img alt='{html.escape(Path(img).name)}' src='data:image/png;base64,{data}'></p>"
        )
    parts.append("</body></html>")
    Path(path).write_text("\n".join(parts), encoding="utf-8")
