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
    as_correct,
    as_labels,
    as_scores,
    check_costs,
    check_score_suits,
    output_kind,
)
from .cascade import Cascade, Stage
from .errors import ParameterError
from .router import encode_threshold
from .scores import compute_score
from .selection import tune_temperature

__all__ = [
    "SCORE_WORDS",
    "Section",
    "describe_router",
    "evaluate_all_scores",
    "evaluate_report",
    "format_count",
    "format_ratio",
    "plot_evaluation",
    "plot_score_histogram",
    "stage_correctness",
    "threshold_knob_html",
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
    ths = [encode_threshold(float(t)) for t in curve.thresholds[i]]
    # the evaluate schema's form: a number for two stages, a list for more
    threshold: Any = ths[0] if curve.n_stages == 2 else ths
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
    n_resamples: int,
    n_thresholds: int,
    random_state: int,
) -> dict[str, Any]:
    stage_scores = [compute_score(score, o, temperature).astype(np.float64) for o in outs[:-1]]
    block: dict[str, Any] = {"score": score, "temperature": temperature}
    if len(outs) == 2:
        curve = curves.cascade_curve(stage_scores[0], correct[0], correct[1], costs=costs)
        summary = curves.summarize(curve, correct[0], correct[1], costs=costs)
    else:
        curve = curves.grid_curve(stage_scores, correct, costs=costs, n_thresholds=n_thresholds)
        summary = curves.summarize(curve, correct[0], correct[-1], costs=costs)
    if len(outs) == 2:
        orc = curves.oracle_curve(correct[0], correct[1], costs=costs)
        block["oracle_curve"] = [
            {
                "teacher_share": float(orc.teacher_share[i]),
                "accuracy": float(orc.accuracy[i]),
                "relative_cost": float(orc.relative_cost[i]),
            }
            for i in range(len(orc))
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
    if n_resamples and len(outs) == 2:
        ci = curves.bootstrap_summary(
            stage_scores[0],
            correct[0],
            correct[1],
            costs=costs,
            n_resamples=n_resamples,
            random_state=random_state,
        )
        block["bootstrap"] = {
            "n": int(n_resamples),
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
    n_resamples: int = 0,
    names: Sequence[str] | None = None,
    top_k: int = 1,
    n_thresholds: int = 24,
    random_state: int = 0,
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
    n_resamples : int
        With ``n > 0`` rows resampled ``n`` times, 95% intervals of auc and speed-up.
    """
    cascade, outs, y = _validated(outputs, labels, costs, names, score)
    cost_arr = check_costs(costs, len(outs))
    if max_points < 2:
        raise ParameterError(f"Expected max_points >= 2 (both ends); got {max_points}.")
    correct = stage_correctness(outs, y, top_k=top_k)
    ths = None
    if threshold is not None:
        ths = list(cascade.resolve_thresholds(threshold))
    report = _header(cascade, outs, correct, cost_arr)
    report.update(
        _score_block(
            outs,
            correct,
            cost_arr,
            score,
            temperature,
            ths,
            max_points,
            n_resamples,
            n_thresholds,
            random_state,
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
    n_resamples: int = 0,
    names: Sequence[str] | None = None,
    top_k: int = 1,
    n_thresholds: int = 24,
    random_state: int = 0,
    select_outputs: Sequence[ArrayLike] | None = None,
    select_labels: ArrayLike | None = None,
) -> dict[str, Any]:
    """Every score side by side: ``{"n_samples", "stages", "scores": {name: block}}``.

    Without ``scores``, every registered score; energy is left out (and ``"skipped"`` says
    why) when a non-final stage's outputs are probabilities or log-probabilities, on which it
    is constant.

    With ``select_outputs`` and ``select_labels`` (the same stages on a separate *select*
    split), each score's temperature is tuned there with
    :func:`cascadekit.selection.tune_temperature` (2 stages; its block then says
    ``"temperature_chosen_on": "select"``) instead of using ``temperature`` for all; the
    figures stay those of ``outputs``.
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
    temps = {name: temperature for name in names_}
    if (select_outputs is None) != (select_labels is None):
        raise ParameterError(
            "Expected both select_outputs and select_labels (the select split) or neither; "
            "got only one."
        )
    if select_outputs is not None and select_labels is not None:
        if len(outs) != 2:
            raise ParameterError(
                f"Tuning temperatures on a select split needs 2 stages; got {len(outs)}. Pass "
                "the student's and the teacher's outputs."
            )
        _, sel, y_sel = _validated(select_outputs, select_labels, costs, names)
        c_sel = stage_correctness(sel, y_sel, top_k=top_k)
        for name in names_:
            temps[name] = tune_temperature(name, sel[0], c_sel[0], c_sel[1], cost_arr).temperature
    report["scores"] = {
        name: _score_block(
            outs,
            correct,
            cost_arr,
            name,
            temps[name],
            None,
            max_points,
            n_resamples,
            n_thresholds,
            random_state,
        )
        for name in names_
    }
    if select_outputs is not None:
        for block in report["scores"].values():
            block["temperature_chosen_on"] = "select"
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
    stage_scores: Sequence[ArrayLike] | None = None,
    stage_correct: Sequence[ArrayLike] | None = None,
) -> None:
    """Write a PNG: accuracy vs relative cost with random and oracle curves, and (given the
    stages' scores and correctness, one array per stage) where the first stage's right and
    wrong answers fall (:func:`plot_score_histogram`, EBJR Fig. 4 on a rank scale).

    Raises
    ------
    InputShapeError, EmptyInputError
        ``stage_scores`` or ``stage_correct`` is not a list of 1-D arrays, one per stage.
    """
    with_hist = stage_scores is not None and stage_correct is not None
    if stage_scores is not None and stage_correct is not None:
        hist_s = as_scores(stage_scores[0] if len(stage_scores) else [], "stage_scores[0]")
        hist_c = as_correct(stage_correct[0] if len(stage_correct) else [], "stage_correct[0]")
    require("matplotlib", "plot", "Plotting").use("Agg")
    plt = require("matplotlib.pyplot", "plot", "Plotting")
    blocks = report["scores"] if "scores" in report else {report["score"]: report}
    stages = report["stages"]
    acc_s, acc_t = stages[0]["accuracy"], stages[-1]["accuracy"]
    costs = [s["cost"] for s in stages]
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
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)
    if with_hist:
        threshold = first.get("operating_point", {}).get("threshold")
        plot_score_histogram(
            axes[1],
            hist_s,
            hist_c,
            threshold if isinstance(threshold, float | int) else None,
            label=f"student's {first['score']} score",
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


SCORE_WORDS = {
    "energy": "energy score (the log-sum-exp of the logits, EBJR's negative free energy)",
    "max_softmax": "max-softmax score (the log-odds of the top class probability)",
    "margin": "margin score (the top logit minus the second)",
    "entropy": "entropy score (minus the log of the softmax's entropy)",
    "max_logit": "max-logit score (the largest logit)",
}
"""What each built-in score measures, in words (higher = keep on this stage)."""


def format_count(x: float | None, unit: str = "") -> str:
    """A count for people: three significant digits with a k / M / G suffix.

    Examples
    --------
    >>> format_count(8_482_000, "FLOPs"), format_count(203_264), format_count(12)
    ('8.48 M FLOPs', '203 k', '12')
    >>> format_count(None)
    '-'
    """
    if x is None or not math.isfinite(float(x)):
        return "-"
    x = float(x)
    for factor, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= factor:
            text = f"{x / factor:.3g}{suffix}"
            break
    else:
        text = f"{x:.3g}"
    return f"{text} {unit}" if unit else text


def format_ratio(x: float | None) -> str:
    """A speed-up or ratio for people: ``1.62x``.

    Examples
    --------
    >>> format_ratio(1.6234), format_ratio(float("nan"))
    ('1.62x', '-')
    """
    if x is None or not math.isfinite(float(x)):
        return "-"
    return f"{float(x):.2f}x"


def describe_router(
    score: str,
    temperature: float,
    threshold: float | None,
    *,
    student: str = "student",
    teacher: str = "teacher",
) -> str:
    """The routing rule of a 2-stage cascade in one English sentence.

    Parameters
    ----------
    score : str
        Score name (higher = keep on the student).
    temperature : float
        Temperature the score is computed at.
    threshold : float or None
        An input stays on the student when ``score >= threshold``; None means +inf (every input
        moves on).
    student, teacher : str
        Names of the two stages.

    Examples
    --------
    >>> print(describe_router("max_softmax", 0.71, 2.1972))  # doctest: +NORMALIZE_WHITESPACE
    The student keeps an input when its max-softmax score (the log-odds of the top class
    probability), at temperature 0.71, is at least 2.2, that is when its top class probability
    is at least 0.90; every other input goes on to the teacher.
    """
    what = SCORE_WORDS.get(score, f"{score} score")
    at = "" if temperature == 1.0 else f", at temperature {temperature:.2g},"
    if threshold is None or (isinstance(threshold, float) and math.isinf(threshold)):
        return f"Every input goes on to the {teacher} (the threshold is +inf)."
    t = float(threshold)
    text = f"The {student} keeps an input when its {what}{at} is at least {t:.3g}"
    if score == "max_softmax":
        p = 1.0 / (1.0 + math.exp(-t)) if t > -700 else 0.0
        text += f", that is when its top class probability is at least {p:.{_digits(p)}f}"
    elif score == "entropy":
        text += f", that is when the softmax's entropy is at most {math.exp(-t):.3g} nats"
    return text + f"; every other input goes on to the {teacher}."


def _digits(p: float) -> int:
    """Decimals that show how close a probability is to 1 (0.9 -> 1, 0.99958 -> 5)."""
    if p >= 1.0 or p <= 0.0:
        return 1
    return min(12, max(1, math.ceil(-math.log10(1.0 - p)) + 1))


def plot_score_histogram(
    ax: Any,
    scores: ArrayLike,
    correct: ArrayLike,
    threshold: float | None = None,
    *,
    label: str = "student score",
) -> None:
    """Draw where the inputs the student gets right and wrong fall, on a readable scale.

    The x axis is each input's rank among all scores (the share of inputs scoring lower), so
    the two groups separate visibly whatever the score's units: a score that saturates (entropy
    at a low temperature, ``p_max`` near 1) would put nearly everything in one bin of a plain
    histogram. A threshold at rank ``r`` sends the share ``r`` of these inputs on; it is drawn as
    a vertical line.

    Parameters
    ----------
    ax : matplotlib Axes
    scores : array-like of shape (n,)
        Routing scores (higher = keep).
    correct : array-like of bool, shape (n,)
        Whether the student is right on each input.
    threshold : float, optional
        The operating point's threshold.
    label : str
        Name of the score, for the axis label.
    """
    s = np.asarray(scores, dtype=np.float64)
    c = np.asarray(correct, dtype=bool)
    order = np.sort(s)
    rank = np.searchsorted(order, s, side="left") / max(len(s), 1)
    bins = np.linspace(0.0, 1.0, 41)
    ax.hist(rank[c], bins=bins, alpha=0.6, color="#4c72b0", label=f"student right ({c.sum():,})")
    ax.hist(
        rank[~c], bins=bins, alpha=0.75, color="#dd5555", label=f"student wrong ({(~c).sum():,})"
    )
    if threshold is not None and math.isfinite(float(threshold)):
        share = float(np.searchsorted(order, float(threshold), side="left")) / max(len(s), 1)
        ax.axvline(share, color="k", lw=1.2, label=f"threshold: {share:.0%} move on")
        ax.annotate(
            "<- move on",
            (share, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(-6, -14),
            textcoords="offset points",
            ha="right",
            fontsize=9,
        )
        ax.annotate(
            "stay ->",
            (share, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(6, -14),
            textcoords="offset points",
            ha="left",
            fontsize=9,
        )
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"rank of the {label} among all inputs (0 = least confident)")
    ax.set_ylabel("inputs")
    ax.set_title("Where right and wrong answers fall")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8, frameon=False)


def threshold_knob_html(
    curve: curves.Curve,
    *,
    teacher_cost: float,
    start_share: float | None = None,
    cost_unit: str = "FLOPs",
    max_points: int = 400,
) -> str:
    """A self-contained HTML fragment: a slider that moves the operating point along a curve.

    The curve's points are embedded as JSON and drawn with inline SVG and JavaScript (no
    network access); the slider shows each point's threshold, accuracy, teacher share and cost
    per input, as the server's admin knob would set them.

    Parameters
    ----------
    curve : Curve
        A 2-stage curve (``cascade_curve``); it is downsampled to ``max_points``.
    teacher_cost : float
        Cost of the last stage alone, in ``cost_unit``; costs shown are
        ``relative_cost * teacher_cost``.
    start_share : float, optional
        Where the slider starts: the point with this teacher share (the operating point's share
        on the same data selects it exactly; it is kept when the curve is thinned). By default
        the middle of the curve.
    cost_unit : str
        Unit of the costs, shown on the axis and in the text.
    max_points : int
        Points embedded at most (evenly spaced along the curve, both ends kept).

    Examples
    --------
    >>> import numpy as np
    >>> from cascadekit import curves
    >>> c = curves.cascade_curve(np.arange(5.0), [1, 1, 0, 1, 1], [1, 1, 1, 1, 0], costs=[1, 4])
    >>> html = threshold_knob_html(c, teacher_cost=4)
    >>> "<script>" in html, "<script src" in html, "<link" in html   # nothing is fetched
    (True, False, False)
    """
    import html as html_mod
    import json

    full = curve.thresholds[:, 0]
    n = len(full)
    share = np.asarray(curve.teacher_share, dtype=np.float64)
    start = n // 2 if start_share is None else int(np.argmin(np.abs(share - float(start_share))))
    # evenly spaced points, both ends and the starting point kept exactly
    keep = np.unique(np.r_[np.linspace(0, n - 1, min(n, max_points)).round().astype(int), start])
    th = full[keep]
    c = curve
    start = int(np.searchsorted(keep, start))
    data = {
        "threshold": [_json_float(float(t)) for t in th],
        "accuracy": [round(float(a), 6) for a in c.accuracy[keep]],
        "share": [round(float(v), 6) for v in c.teacher_share[keep]],
        "cost": [float(r) * float(teacher_cost) for r in c.relative_cost[keep]],
        "teacherCost": float(teacher_cost),
        "unit": cost_unit,
        "start": start,
    }
    payload = html_mod.escape(json.dumps(data), quote=False)
    return _KNOB_TEMPLATE.replace("__DATA__", payload)


_KNOB_TEMPLATE = """<div class="knob">
<svg id="knob-plot" viewBox="0 0 640 300" width="640" height="300" role="img"
 aria-label="accuracy against cost; the dot is the operating point"></svg>
<p><input id="knob" type="range" min="0" step="1" style="width:640px"
 aria-label="threshold"></p>
<p id="knob-text" class="knob-text"></p>
<script type="application/json" id="knob-data">__DATA__</script>
<script>
(function () {
  var d = JSON.parse(document.getElementById("knob-data").textContent);
  var n = d.accuracy.length, svg = document.getElementById("knob-plot");
  var slider = document.getElementById("knob"), text = document.getElementById("knob-text");
  var W = 640, H = 300, L = 60, R = 35, T = 15, B = 45;
  var cmin = Math.min.apply(null, d.cost), cmax = Math.max.apply(null, d.cost);
  var amin = Math.min.apply(null, d.accuracy), amax = Math.max.apply(null, d.accuracy);
  var pad = (amax - amin) * 0.08 || 0.01; amin -= pad; amax += pad;
  function x(v) { return L + (v - cmin) / ((cmax - cmin) || 1) * (W - L - R); }
  function y(v) { return H - B - (v - amin) / ((amax - amin) || 1) * (H - T - B); }
  function count(v) {
    var a = Math.abs(v), s = [[1e9, " G"], [1e6, " M"], [1e3, " k"]];
    for (var i = 0; i < s.length; i++) {
      if (a >= s[i][0]) { return (v / s[i][0]).toPrecision(3) + s[i][1]; }
    }
    return v.toPrecision(3);
  }
  var ns = "http://www.w3.org/2000/svg";
  function el(tag, attrs, txt) {
    var e = document.createElementNS(ns, tag);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (txt) { e.textContent = txt; }
    svg.appendChild(e); return e;
  }
  el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#888"});
  el("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#888"});
  for (var i = 0; i <= 4; i++) {
    var cv = cmin + (cmax - cmin) * i / 4, av = amin + (amax - amin) * i / 4;
    el("text", {x: x(cv), y: H - B + 16, "text-anchor": "middle", "font-size": 11},
       count(cv));
    el("text", {x: L - 6, y: y(av) + 4, "text-anchor": "end", "font-size": 11}, av.toFixed(3));
  }
  el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "font-size": 12},
     d.unit + " per input");
  el("text", {x: 14, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 12,
     transform: "rotate(-90 14 " + (T + H - B) / 2 + ")"}, "accuracy");
  var pts = [];
  for (var j = 0; j < n; j++) { pts.push(x(d.cost[j]) + "," + y(d.accuracy[j])); }
  el("polyline", {points: pts.join(" "), fill: "none", stroke: "#4c72b0", "stroke-width": 2});
  var dot = el("circle", {r: 6, fill: "#dd5555", stroke: "black"});
  slider.max = n - 1; slider.value = d.start;
  function show() {
    var k = +slider.value, t = d.threshold[k];
    dot.setAttribute("cx", x(d.cost[k])); dot.setAttribute("cy", y(d.accuracy[k]));
    var th = t === null ? "+inf (everything to the teacher)" : t.toPrecision(4);
    text.textContent = "threshold " + th + ": accuracy " + d.accuracy[k].toFixed(4) + ", " +
      (100 * d.share[k]).toFixed(1) + "% of inputs to the teacher, " + count(d.cost[k]) + " " +
      d.unit + " per input (" + (d.teacherCost / d.cost[k]).toFixed(2) +
      "x fewer than the teacher alone)";
  }
  slider.addEventListener("input", show); show();
})();
</script>
</div>"""


class Section:
    """One part of an HTML report: a heading, a sentence saying how to read it, a table.

    Parameters
    ----------
    heading : str
    sentence : str
        How to read the table, in one or two sentences (plain text).
    columns : sequence of str
    rows : sequence of sequences
        Cell values; strings are shown as they are (format numbers before), floats with four
        significant digits.
    """

    def __init__(
        self,
        heading: str,
        sentence: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        self.heading = heading
        self.sentence = sentence
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]


def write_html(
    path: str | os.PathLike[str],
    title: str,
    sections: Sequence[Section],
    images: Sequence[str | os.PathLike[str]] = (),
    notes: Sequence[str] = (),
    knob: str = "",
) -> None:
    """Write one self-contained HTML page: notes, a knob, tables and PNG images (base64).

    Nothing is fetched from the network: styles and scripts are inline.

    Parameters
    ----------
    sections : sequence of Section
    images : PNG files to embed
    notes : paragraphs shown under the title (plain text, escaped)
    knob : str
        An HTML fragment from :func:`threshold_knob_html`, shown after the notes.
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
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;",
        "line-height:1.45}table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px ",
        "solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}",
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}",
        ".lead{font-size:1.1em}.knob{margin:1em 0 2em}.knob-text{font-weight:600}",
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += [f"<p class='lead'>{html.escape(n)}</p>" for n in notes]
    if knob:
        parts += ["<h2>Move the threshold</h2>", knob]
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.heading)}</h2><p>{html.escape(sec.sentence)}</p>")
        parts.append("<table><tr>")
        parts += [f"<th>{html.escape(str(c))}</th>" for c in sec.columns]
        parts.append("</tr>")
        for row in sec.rows:
            parts.append("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>")
        parts.append("</table>")
    for img in images:
        data = base64.b64encode(Path(img).read_bytes()).decode("ascii")
        parts.append(
            f"<p><img alt='{html.escape(Path(img).name)}' src='data:image/png;base64,{data}'></p>"
        )
    parts.append("</body></html>")
    Path(path).write_text("\n".join(parts), encoding="utf-8")
