"""Metrics of a curve: AUC, gap captured, APGR, speed-up and teacher share at the teacher's
accuracy, accuracy at a budget, :func:`summarize` and :func:`bootstrap_summary`."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from .._validation import (
    as_scores,
    check_costs,
    check_open_unit,
    check_same_samples,
)
from ..errors import InfeasibleTargetError, ParameterError
from ._common import Float64Array, accuracy_tol, as_value_pair, direction_sign
from .exact import (
    Curve,
    check_curve,
    oracle_curve,
    relative_cost_2,
    tie_blocks,
)

__all__ = [
    "accuracy_at_budget",
    "apgr",
    "auc",
    "bootstrap_summary",
    "gap_captured",
    "oracle_auc",
    "random_auc",
    "speedup_at_teacher_accuracy",
    "summarize",
    "teacher_share_at_teacher_accuracy",
]


def _auc_x(curve: Curve) -> Float64Array:
    if curve.n_stages == 2:
        return curve.teacher_share
    rc = curve.relative_cost
    span = rc[-1] - rc[0]
    out: Float64Array = (rc - rc[0]) / span if span > 0 else np.zeros_like(rc)
    return out


def auc(curve: Curve) -> float:
    """Trapezoid area under accuracy over teacher share in ``[0, 1]`` (RouteLLM's AUC).

    For an N-stage curve (N > 2) the x-axis is the relative cost normalised to ``[0, 1]``
    between the curve's cheapest and dearest points; for 2 stages the two coincide.

    Examples
    --------
    >>> from cascadekit.curves import random_curve
    >>> auc(random_curve(0.7, 0.9))
    0.8
    """
    curve = check_curve(curve)
    return float(np.trapezoid(curve.accuracy, _auc_x(curve)))


def random_auc(student_accuracy: float, teacher_accuracy: float) -> float:
    """Area under the random router's curve: ``(acc_S + acc_T) / 2``.

    Examples
    --------
    >>> random_auc(0.7, 0.8)
    0.75
    """
    return (float(student_accuracy) + float(teacher_accuracy)) / 2.0


def oracle_auc(
    value_student: ArrayLike, value_teacher: ArrayLike, *, higher_is_better: bool = True
) -> float:
    """Exact area under the oracle curve (:func:`oracle_curve`).

    For 0/1 correctness it equals ``acc_S + q - q**2 / 2``.

    Examples
    --------
    >>> oracle_auc([1, 0, 0, 1], [1, 1, 0, 0])   # 0.5 + 0.25 - 0.25**2 / 2
    0.71875
    """
    return auc(oracle_curve(value_student, value_teacher, higher_is_better=higher_is_better))


def _gap(a: float, rand: float, orc: float) -> float:
    den = orc - rand
    return (a - rand) / den if abs(den) > accuracy_tol(orc) else math.nan


def _apgr_arrays(
    x: Float64Array, acc: Float64Array, acc_s: float | None = None, acc_t: float | None = None
) -> float:
    a = float(np.trapezoid(acc, x))
    width = float(x[-1] - x[0])
    a_s = float(acc[0]) if acc_s is None else float(acc_s)
    a_t = float(acc[-1]) if acc_t is None else float(acc_t)
    weak, strong = a_s * width, a_t * width
    den = strong - weak
    return (a - weak) / den if abs(den) > accuracy_tol(strong) else math.nan


def apgr(
    curve: Curve,
    student_accuracy: float | None = None,
    teacher_accuracy: float | None = None,
) -> float:
    """Average performance gap recovered (RouteLLM), computed exactly.

    ``(AUC - AUC_weak) / (AUC_strong - AUC_weak)`` where the weak and strong curves are the
    constants ``acc_S`` and ``acc_T`` over the same x-range: ``(AUC - acc_S) / (acc_T - acc_S)``
    for a curve over ``[0, 1]``. NaN when ``acc_S == acc_T``. The random router scores 0.5, the
    oracle can exceed 1.

    Parameters
    ----------
    curve : Curve
    student_accuracy, teacher_accuracy : float, optional
        Default to the curve's first point (all on the student) and last point (all on the
        teacher). Pass them for curves that do not end at the teacher, such as
        :func:`oracle_curve`.

    Examples
    --------
    >>> from cascadekit.curves import oracle_curve, random_curve
    >>> apgr(random_curve(0.7, 0.8))
    0.5
    >>> import numpy as np   # acc_S = 0.7, acc_T = 0.8, q = 0.15: (q - q**2 / 2) / 0.1
    >>> vs, vt = np.repeat([1, 0, 1, 0], [65, 15, 5, 15]), np.repeat([1, 1, 0, 0], [65, 15, 5, 15])
    >>> apgr(oracle_curve(vs, vt), 0.7, 0.8)
    1.3875
    """
    curve = check_curve(curve)
    return _apgr_arrays(_auc_x(curve), curve.accuracy, student_accuracy, teacher_accuracy)


def _check_values_match(curve: Curve, vs: Float64Array, vt: Float64Array) -> tuple[float, float]:
    """Means of the values; the student's must be where every curve starts."""
    acc_s, acc_t = float(np.mean(vs)), float(np.mean(vt))
    start = float(curve.accuracy[0])
    if abs(acc_s - start) > 1e-9 * max(1.0, abs(start)):
        raise ParameterError(
            f"value_student has mean {acc_s:.6g} but the curve starts (all on the student) at "
            f"{start:.6g}. Pass the values the curve was computed from, student first."
        )
    return acc_s, acc_t


def gap_captured(curve: Curve, value_student: ArrayLike, value_teacher: ArrayLike) -> float:
    """Share of the random-to-oracle gap the curve captures.

    ``(AUC - AUC_random) / (AUC_oracle - AUC_random)``: 0 for a random router, 1 for the
    oracle; NaN when the oracle is no better than random.

    Examples
    --------
    >>> from cascadekit.curves import cascade_curve
    >>> import numpy as np
    >>> vs, vt = np.array([1, 0, 0, 1]), np.array([1, 1, 0, 1])
    >>> gap_captured(cascade_curve([4, 1, 2, 3], vs, vt), vs, vt)   # ranks like the oracle
    1.0
    """
    curve = check_curve(curve)
    vs, vt = as_value_pair(value_student, value_teacher)
    acc_s, acc_t = _check_values_match(curve, vs, vt)
    orc = oracle_auc(vs, vt, higher_is_better=curve.higher_is_better)
    return _gap(auc(curve), random_auc(acc_s, acc_t), orc)


def _cheapest_reaching(
    acc: Float64Array, cost: Float64Array, target: float, higher_is_better: bool
) -> int:
    """Index of the cheapest point whose value reaches ``target`` (-1 when none does)."""
    sign = direction_sign(higher_is_better)
    ok = np.flatnonzero(sign * acc >= sign * target - accuracy_tol(target))
    if ok.shape[0] == 0:
        return -1
    return int(ok[np.argmin(cost[ok])])


def _target_index(curve: Curve, teacher_accuracy: float | None) -> int:
    target = float(curve.accuracy[-1]) if teacher_accuracy is None else float(teacher_accuracy)
    i = _cheapest_reaching(curve.accuracy, curve.relative_cost, target, curve.higher_is_better)
    if i < 0:
        best = float(curve.accuracy.max() if curve.higher_is_better else curve.accuracy.min())
        raise InfeasibleTargetError(
            f"No point of the curve reaches accuracy {target:.6g}; the best is {best:.6g}. "
            "Lower the target or use a stronger teacher.",
            best=best,
        )
    return i


def teacher_share_at_teacher_accuracy(curve: Curve, teacher_accuracy: float | None = None) -> float:
    """Teacher share at the cheapest point whose accuracy reaches the teacher's.

    ``teacher_accuracy`` defaults to the curve's last point (all on the teacher), which always
    qualifies, so the answer is at most 1. With ``higher_is_better=False`` "reaches" means a
    loss at most the teacher's. A tolerance of 1e-12 absorbs floating-point noise.

    Examples
    --------
    >>> from cascadekit.curves import cascade_curve
    >>> c = cascade_curve([0.9, 0.8, 0.4, 0.1], [1, 1, 0, 0], [1, 0, 1, 1])
    >>> teacher_share_at_teacher_accuracy(c)   # accuracy 0.75 = the teacher's at share 0.25
    0.25
    """
    curve = check_curve(curve)
    return float(curve.teacher_share[_target_index(curve, teacher_accuracy)])


def speedup_at_teacher_accuracy(curve: Curve, teacher_accuracy: float | None = None) -> float:
    """``1 / relative_cost`` at the cheapest point whose accuracy reaches the teacher's.

    See :func:`teacher_share_at_teacher_accuracy` for the point chosen. Below 1 when even the
    best cascade point costs more than the teacher alone (it always exists).

    Examples
    --------
    >>> from cascadekit.curves import cascade_curve
    >>> c = cascade_curve([0.9, 0.8, 0.4, 0.1], [1, 1, 0, 0], [1, 0, 1, 1], costs=[1, 10])
    >>> speedup_at_teacher_accuracy(c)   # share 0.25: relative cost (1 + 0.25 * 10) / 10
    2.857142857142857
    """
    curve = check_curve(curve)
    return float(1.0 / curve.relative_cost[_target_index(curve, teacher_accuracy)])


def accuracy_at_budget(curve: Curve, max_relative_cost: float) -> float:
    """Best accuracy among the points whose relative cost is at most ``max_relative_cost``.

    Examples
    --------
    >>> from cascadekit.curves import cascade_curve
    >>> c = cascade_curve([0.9, 0.8, 0.4, 0.1], [1, 1, 0, 0], [1, 0, 1, 1], costs=[1, 10])
    >>> accuracy_at_budget(c, 0.4), accuracy_at_budget(c, 0.6)
    (0.75, 1.0)
    """
    curve = check_curve(curve)
    b = float(max_relative_cost)
    if not math.isfinite(b):
        raise ParameterError(f"Expected a finite max_relative_cost; got {max_relative_cost!r}.")
    ok = curve.relative_cost <= b + accuracy_tol(b)
    if not ok.any():
        cheapest = float(curve.relative_cost.min())
        raise InfeasibleTargetError(
            f"No point of the curve costs at most {b:.6g} (relative to the last stage); the "
            f"cheapest costs {cheapest:.6g}. Raise the budget.",
            best=cheapest,
        )
    acc = curve.accuracy[ok]
    return float(acc.max() if curve.higher_is_better else acc.min())


def summarize(
    curve: Curve,
    value_student: ArrayLike,
    value_teacher: ArrayLike,
    costs: ArrayLike | None = None,
) -> dict[str, float]:
    """Every scalar metric of a curve in one dict.

    Keys: ``auc``, ``random_auc``, ``oracle_auc``, ``gap_captured``, ``apgr``,
    ``teacher_share_at_teacher_accuracy``, ``speedup_at_teacher_accuracy``,
    ``student_accuracy``, ``teacher_accuracy`` (the means of the values). The values must be
    those the curve was computed from (first and last stage for an N-stage curve; the oracle is
    then the 2-model oracle between them). The teacher accuracy is the mean of
    ``value_teacher``, so baseline curves that do not end at the teacher are summarised right.

    ``costs`` is optional and only checked: every metric uses the curve's own relative costs, so
    costs that differ from those the curve was computed with raise :class:`ParameterError`.

    Examples
    --------
    >>> from cascadekit.curves import cascade_curve
    >>> vs, vt = [1, 0, 0, 1], [1, 1, 0, 1]
    >>> s = summarize(cascade_curve([4, 1, 2, 3], vs, vt), vs, vt)
    >>> s["auc"], s["apgr"], s["gap_captured"]
    (0.71875, 0.875, 1.0)
    """
    curve = check_curve(curve)
    if costs is not None and curve.costs is not None:
        given = check_costs(costs, curve.n_stages)
        if not np.allclose(given, curve.costs, rtol=1e-12, atol=0.0):
            raise ParameterError(
                f"The curve was computed with costs {curve.costs.tolist()}, not "
                f"{given.tolist()}. Recompute the curve with the costs you mean."
            )
    vs, vt = as_value_pair(value_student, value_teacher)
    acc_s, acc_t = _check_values_match(curve, vs, vt)
    a = auc(curve)
    rand = random_auc(acc_s, acc_t)
    orc = oracle_auc(vs, vt, higher_is_better=curve.higher_is_better)
    i = _target_index(curve, acc_t)
    return {
        "auc": a,
        "random_auc": rand,
        "oracle_auc": orc,
        "gap_captured": _gap(a, rand, orc),
        "apgr": apgr(curve, acc_s, acc_t),
        "teacher_share_at_teacher_accuracy": float(curve.teacher_share[i]),
        "speedup_at_teacher_accuracy": float(1.0 / curve.relative_cost[i]),
        "student_accuracy": acc_s,
        "teacher_accuracy": acc_t,
    }


def bootstrap_summary(
    scores: ArrayLike,
    value_student: ArrayLike,
    value_teacher: ArrayLike,
    costs: ArrayLike | None = None,
    *,
    n_resamples: int = 1000,
    random_state: int | None = 0,
    confidence: float = 0.95,
    higher_is_better: bool = True,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of the curve's AUC and iso-accuracy speed-up.

    Rows are resampled with replacement ``n_resamples`` times. The scores are sorted once; each
    replicate reweights the sorted rows, so it costs O(n).

    Returns
    -------
    dict
        ``{"auc": (low, high), "speedup_at_teacher_accuracy": (low, high),
        "teacher_share_at_teacher_accuracy": (low, high)}``, the teacher accuracy being the
        replicate's own.

    Examples
    --------
    >>> from cascadekit.curves import cascade_curve
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> s = rng.normal(size=500)
    >>> vs, vt = rng.random(500) < 0.5 + 0.1 * s, rng.random(500) < 0.8
    >>> ci = bootstrap_summary(s, vs, vt, costs=[1, 5], n_resamples=200)
    >>> lo, hi = ci["auc"]
    >>> bool(lo < auc(cascade_curve(s, vs, vt)) < hi)
    True
    """
    s = as_scores(scores, "scores")
    vs, vt = as_value_pair(value_student, value_teacher)
    check_same_samples([("scores", s.shape[0]), ("value_student", vs.shape[0])])
    c = check_costs(costs, 2)
    if (
        isinstance(n_resamples, bool)
        or not isinstance(n_resamples, (int, np.integer))
        or n_resamples < 1
    ):
        raise ParameterError(
            f"Expected n_resamples to be a positive integer; got {n_resamples!r}. 1000 is typical."
        )
    conf = check_open_unit("confidence", confidence)
    n = s.shape[0]
    order, starts = tie_blocks(s)
    d = (vt - vs)[order]
    vs_sorted = vs[order]
    rng = np.random.default_rng(random_state)
    stats = np.empty((int(n_resamples), 3), dtype=np.float64)
    cw = np.empty(n + 1, dtype=np.float64)
    gain = np.empty(n + 1, dtype=np.float64)
    cw[0] = gain[0] = 0.0
    pos = np.append(starts, n)
    for b in range(int(n_resamples)):
        w = np.bincount(rng.integers(0, n, n), minlength=n)[order].astype(np.float64)
        np.cumsum(w, out=cw[1:])
        np.cumsum(w * d, out=gain[1:])
        share = cw[pos] / n
        acc = (np.dot(w, vs_sorted) + gain[pos]) / n
        rc = relative_cost_2(share, c)
        i = _cheapest_reaching(acc, rc, float(acc[-1]), higher_is_better)
        stats[b] = (np.trapezoid(acc, share), 1.0 / rc[i], share[i])
    lo, hi = np.quantile(stats, [(1 - conf) / 2, 1 - (1 - conf) / 2], axis=0)
    names = ("auc", "speedup_at_teacher_accuracy", "teacher_share_at_teacher_accuracy")
    return {nm: (float(lo[j]), float(hi[j])) for j, nm in enumerate(names)}
