"""Calibration targets (:class:`Target`) and the thresholds that reach them, as reductions of
one curve: a teacher share, an accuracy, a cost, the crossing point."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._validation import (
    as_correct,
    as_scores,
    check_costs,
    check_open_unit,
    check_same_samples,
    check_unit,
)
from ..curves.exact import Curve, cascade_curve
from ..errors import (
    InfeasibleTargetError,
    InsufficientDataError,
    ParameterError,
)
from ..scores import (
    numerical_margin,
    separating_threshold_of,
)
from ._common import TOL, FloatArray, check_method, mean_of, two_stage
from .result import CalibrationResult

_KDE_MAX = 5000


# --------------------------------------------------------------------------------------------
# targets: one vocabulary for the library, CascadeClassifier, Cascade.calibrate and the CLI

#: The kinds of :class:`Target`.
TARGET_KINDS = ("teacher_share", "accuracy", "relative_cost", "accuracy_drop", "crossing")


@dataclass(frozen=True)
class Target:
    """What thresholds are calibrated for (one of :data:`TARGET_KINDS`).

    * ``teacher_share``: the share of inputs answered by the last stage closest to ``value``;
    * ``accuracy``: the cheapest thresholds whose calibration accuracy is at least ``value``
      (label-free calibration reads it as agreement with the last stage);
    * ``relative_cost``: the most accurate thresholds whose mean cost per input is at most
      ``value`` times the last stage's;
    * ``accuracy_drop``: the guarantee: the population accuracy drop against the last stage is
      at most ``value`` (epsilon) with probability at least ``1 - delta``
      (:func:`guaranteed_threshold`; ``method`` picks its test);
    * ``crossing``: where the score densities of right and wrong answers cross (2 stages,
      no value).

    Build one directly or with :meth:`parse`, which accepts every form the library, the
    estimator and the CLI take.

    Examples
    --------
    >>> Target.parse(0.3)
    Target(kind='teacher_share', value=0.3, delta=0.1, method='auto')
    >>> Target.parse({"accuracy_drop": 0.01, "delta": 0.05}).delta
    0.05
    >>> Target.parse("crossing").kind
    'crossing'
    >>> Target.parse({"recall": 0.9})
    Traceback (most recent call last):
    ...
    cascadekit.errors.ParameterError: Expected a target: a teacher share in [0, 1], ...
    """

    kind: str
    value: float | None = None
    delta: float = 0.1
    method: str = "auto"

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ParameterError(
                f"Unknown target kind {self.kind!r}; expected one of {list(TARGET_KINDS)}."
            )
        if self.kind == "crossing":
            if self.value is not None:
                raise ParameterError(
                    f"The crossing target takes no value; got {self.value!r}. Use "
                    "Target('crossing')."
                )
            return
        v = self.value
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise ParameterError(
                f"Expected a number as the {self.kind} target; got {v!r}. For example "
                f"Target({self.kind!r}, {_EXAMPLE_VALUES[self.kind]})."
            )
        fv = float(v)
        object.__setattr__(self, "value", fv)
        if self.kind == "relative_cost":
            if not (fv > 0.0 and math.isfinite(fv)):
                raise ParameterError(
                    f"Expected a positive relative_cost target (a multiple of the last stage's "
                    f"cost, e.g. 0.5 for half of it); got {v!r}."
                )
        elif self.kind == "accuracy_drop":
            check_open_unit("epsilon", fv)
            object.__setattr__(self, "delta", check_open_unit("delta", self.delta))
        else:
            check_unit(self.kind, fv)
        check_method(self.method, False)  # a known test, or "auto"

    @classmethod
    def parse(cls, target: Any) -> Target:
        """A :class:`Target` from any accepted form.

        Accepted: a :class:`Target`; a float (the teacher share); ``"crossing"``; a
        ``(kind, value)`` pair; a dict with one kind as key, e.g. ``{"teacher_share": 0.3}``,
        ``{"accuracy": 0.95}``, ``{"relative_cost": 0.5}``, ``{"crossing": True}`` or
        ``{"accuracy_drop": 0.01}`` (optionally with ``"delta"`` and ``"method"``).
        """
        if isinstance(target, Target):
            return target
        if isinstance(target, numbers.Real) and not isinstance(target, bool):
            return cls("teacher_share", float(target))
        if target == "crossing":
            return cls("crossing")
        if isinstance(target, (tuple, list)) and len(target) == 2 and target[0] in TARGET_KINDS:
            return cls(str(target[0]), target[1])
        if isinstance(target, Mapping):
            opts = {k: target[k] for k in ("delta", "method") if k in target}
            kinds = [k for k in target if k not in ("delta", "method")]
            if len(kinds) == 1 and kinds[0] in TARGET_KINDS:
                kind = str(kinds[0])
                if opts and kind != "accuracy_drop":
                    raise ParameterError(
                        f"delta and method belong to the accuracy_drop target; got them with "
                        f"{kind!r}: {dict(target)!r}."
                    )
                if kind == "crossing":
                    return cls("crossing")
                return cls(kind, target[kind], **opts)
        raise ParameterError(
            "Expected a target: a teacher share in [0, 1], {'teacher_share': s}, "
            "{'accuracy': a}, {'relative_cost': r}, {'accuracy_drop': epsilon, 'delta': d} or "
            f"'crossing' (or a Target); got {target!r}. For example target=0.3 or "
            "target={'accuracy': 0.95}."
        )

    def to_dict(self) -> dict[str, Any]:
        """``{kind: value}``, with ``delta`` and ``method`` for ``accuracy_drop``."""
        if self.kind == "crossing":
            return {"crossing": True}
        out: dict[str, Any] = {self.kind: self.value}
        if self.kind == "accuracy_drop":
            out.update(delta=self.delta, method=self.method)
        return out


_EXAMPLE_VALUES = {
    "teacher_share": 0.3,
    "accuracy": 0.95,
    "relative_cost": 0.5,
    "accuracy_drop": 0.01,
}


def parse_target(target: Any) -> Target:
    """Shorthand for :meth:`Target.parse`."""
    return Target.parse(target)


def reduce_curve(curve: Curve, target: Any, *, n_samples: int | None = None) -> int:
    """The index of the operating point of ``curve`` that a target chooses.

    ``target`` is a :class:`Target` (or a form :meth:`Target.parse` accepts) of kind
    ``teacher_share``, ``accuracy`` or ``relative_cost``; the guarantee and the crossing do not
    read a curve. The rules, with a tolerance of 1e-12:

    * ``teacher_share``: the point whose teacher share is closest to the target, ties to the
      lower share;
    * ``accuracy``: among the points reaching the target, the cheapest (as
      :func:`cascadekit.curves.speedup_at_teacher_accuracy` at the teacher's accuracy);
    * ``relative_cost``: among the points within the budget, the most accurate;

    then, among points still tied, the most accurate, then the cheapest, then the safest
    (largest thresholds, first stage first). :func:`threshold_for_accuracy`,
    :func:`threshold_for_cost`, :func:`threshold_for_teacher_share` and
    :func:`calibrate_cascade` are this function over :func:`cascadekit.curves.cascade_curve`
    (2 stages) or :func:`cascadekit.curves.grid_curve` (more).

    Raises
    ------
    InfeasibleTargetError
        When no point reaches the accuracy or fits the budget; ``best`` is the best there is.

    Examples
    --------
    >>> from cascadekit import curves
    >>> c = curves.cascade_curve([0.9, 0.5, 0.1], [1, 0, 0], [1, 1, 0], costs=[1, 4])
    >>> i = reduce_curve(c, {"accuracy": 0.6})
    >>> c.thresholds[i], float(c.teacher_share[i])   # one threshold per non-final stage
    (array([0.7]), 0.6666666666666666)
    """
    tgt = Target.parse(target)
    if tgt.kind not in ("teacher_share", "accuracy", "relative_cost"):
        raise ParameterError(
            f"Expected a teacher_share, accuracy or relative_cost target to reduce a curve; got "
            f"{tgt.kind!r}, which does not read a curve (use calibrate_cascade)."
        )
    value = float(tgt.value)  # type: ignore[arg-type]
    share, acc, rel = curve.teacher_share, curve.accuracy, curve.relative_cost
    two = curve.n_stages == 2
    if tgt.kind == "teacher_share":
        dist = np.abs(share - value)
        cand = np.flatnonzero(dist <= dist.min() + TOL)
        cand = cand[share[cand] <= share[cand].min() + TOL]
    elif tgt.kind == "accuracy":
        cand = np.flatnonzero(acc >= value - TOL)
        if cand.shape[0] == 0:
            raise _infeasible_accuracy(curve, value, n_samples)
        cand = cand[rel[cand] <= rel[cand].min() + TOL]
    else:
        cand = np.flatnonzero(rel <= value + TOL)
        if cand.shape[0] == 0:
            lo = float(rel.min())
            first, stage = ("student", "teacher") if two else ("first stage", "last stage")
            raise InfeasibleTargetError(
                f"No threshold{'' if two else 's'} keep{'s' if two else ''} relative_cost <= "
                f"{value:g}; the cheapest cascade (everything on the {first}) costs {lo:.4g} of "
                f"the {stage} alone. Raise max_relative_cost or use a cheaper {first}.",
                best=lo,
            )
    cand = cand[acc[cand] >= acc[cand].max() - TOL]
    cand = cand[rel[cand] == rel[cand].min()]
    if cand.shape[0] > 1:  # exact ties: the safest, i.e. the largest thresholds
        th = curve.thresholds[cand]
        cand = cand[np.lexsort(th.T[::-1])[-1:]]
    return int(cand[0])


def _infeasible_accuracy(curve: Curve, target: float, n: int | None) -> InfeasibleTargetError:
    acc, share = curve.accuracy, curve.teacher_share
    on = f" on {n:,} calibration samples" if n else ""
    if curve.n_stages == 2:
        top = np.flatnonzero(acc >= acc.max() - TOL)
        b = int(top[np.argmin(share[top])])
        return InfeasibleTargetError(
            f"No threshold reaches target_accuracy={target:g}{on}; the best is {acc[b]:.3f} "
            f"({share[b]:.0%} sent to the teacher). Lower the target or use a stronger teacher.",
            best=float(acc[b]),
        )
    b = int(np.argmax(acc))
    return InfeasibleTargetError(
        f"No thresholds reach target_accuracy={target:g}{on}; the best is {acc[b]:.3f} "
        f"({share[b]:.0%} sent to the last stage). Lower the target or use a stronger last stage.",
        best=float(acc[b]),
    )


def curve_2(
    s: FloatArray,
    cs: ArrayLike | None = None,
    ct: ArrayLike | None = None,
    costs: ArrayLike | None = None,
) -> Curve:
    """The exact 2-stage curve of the calibration data (correctness zeros when not given)."""
    zeros = np.zeros(s.shape[0], dtype=bool)
    return cascade_curve(s, zeros if cs is None else cs, zeros if ct is None else ct, costs)


def result_from_curve(
    curve: Curve,
    i: int,
    ss: Sequence[FloatArray],
    method: str,
    teacher_accuracy: float,
    label_free: bool = False,
) -> CalibrationResult:
    """The :class:`CalibrationResult` of point ``i`` of ``curve``."""
    ths = tuple(float(t) for t in curve.thresholds[i])
    return CalibrationResult(
        numerical_margin=numerical_margin(ss, list(ths)),
        thresholds=ths,
        teacher_share=float(curve.teacher_share[i]),
        relative_cost=float(curve.relative_cost[i]),
        accuracy=float(curve.accuracy[i]),
        method=method,
        n_calibration=ss[0].shape[0],
        label_free=label_free,
        teacher_accuracy=teacher_accuracy,
    )


def threshold_for_teacher_share(scores: ArrayLike, teacher_share: float) -> float:
    """The threshold whose realised teacher share is closest to ``teacher_share``.

    Inputs with ``score >= threshold`` stay on the student. Tied scores always move together,
    so the realised share can only change by whole tie blocks; among equally close shares the
    lower one (cheaper) is chosen. The threshold sits midway between two neighbouring blocks
    of scores (see :func:`~cascadekit.scores.separating_thresholds`). ``teacher_share=0`` gives
    ``-inf`` (everything stays on the student) and ``teacher_share=1`` gives ``inf``
    (everything to the teacher).

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Routing scores of the calibration inputs (higher = keep on the student).
    teacher_share : float in [0, 1]
        Target share of inputs sent to the teacher.

    Returns
    -------
    float

    Examples
    --------
    >>> threshold_for_teacher_share([3.0, 1.0, 2.0, 2.0], 0.5)  # 0.25 and 0.75 tie: lower wins
    1.5
    >>> threshold_for_teacher_share([3.0, 1.0, 2.0, 2.0], 0.4)  # 0.25 is closer than 0.5
    1.5
    >>> threshold_for_teacher_share([3.0, 1.0], 1.0)
    inf
    """
    s = as_scores(scores)
    target = Target("teacher_share", teacher_share)
    curve = curve_2(s)
    return float(curve.thresholds[reduce_curve(curve, target), 0])


def threshold_for_accuracy(
    scores: ArrayLike,
    student_correct: ArrayLike,
    teacher_correct: ArrayLike,
    target_accuracy: float,
    costs: ArrayLike | None = None,
) -> CalibrationResult:
    """The cheapest threshold (smallest teacher share) whose calibration accuracy is reached.

    No guarantee: the accuracy is measured on the calibration data. See
    :func:`guaranteed_threshold` for a threshold with a high-probability guarantee.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Student routing scores (higher = keep on the student).
    student_correct, teacher_correct : array-like of shape (n_samples,)
        1 (or True) where the stage's answer is right.
    target_accuracy : float in [0, 1]
        Required cascade accuracy on the calibration data.
    costs : (float, float), optional
        Cost per input of the student and the teacher; defaults to ``(1, 1)``.

    Returns
    -------
    CalibrationResult

    Raises
    ------
    InfeasibleTargetError
        When no threshold reaches the target; ``best`` is the best accuracy there is.

    Examples
    --------
    >>> r = threshold_for_accuracy([0.9, 0.5, 0.1], [1, 0, 0], [1, 1, 0], 0.6)
    >>> round(r.thresholds[0], 4), round(r.accuracy, 3), round(r.teacher_share, 3)
    (0.7, 0.667, 0.667)
    """
    s, cs, ct = two_stage(scores, student_correct, teacher_correct)
    target = Target("accuracy", check_unit("target_accuracy", target_accuracy))
    curve = curve_2(s, cs, ct, check_costs(costs, 2))
    i = reduce_curve(curve, target, n_samples=s.shape[0])
    return result_from_curve(curve, i, [s], "accuracy", mean_of(ct))


def threshold_for_cost(
    scores: ArrayLike,
    student_correct: ArrayLike,
    teacher_correct: ArrayLike,
    max_relative_cost: float,
    costs: ArrayLike,
) -> CalibrationResult:
    """The most accurate threshold whose relative cost is at most ``max_relative_cost``.

    Relative cost = (student cost + teacher share * teacher cost) / teacher cost: every input
    runs the student, the deferred ones also run the teacher. Among equally accurate thresholds
    the cheapest is chosen.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Student routing scores (higher = keep on the student).
    student_correct, teacher_correct : array-like of shape (n_samples,)
        1 (or True) where the stage's answer is right.
    max_relative_cost : float
        Budget per input, as a multiple of the teacher's cost.
    costs : (float, float)
        Cost per input of the student and of the teacher.

    Returns
    -------
    CalibrationResult

    Raises
    ------
    InfeasibleTargetError
        When the budget is below the student-only cost; ``best`` is that minimum.

    Examples
    --------
    >>> r = threshold_for_cost([0.9, 0.5, 0.1], [1, 0, 0], [1, 1, 1], 0.6, costs=[1, 4])
    >>> round(r.thresholds[0], 4), round(r.teacher_share, 4), round(r.relative_cost, 4)
    (0.3, 0.3333, 0.5833)
    """
    s, cs, ct = two_stage(scores, student_correct, teacher_correct)
    c = check_costs(costs, 2)
    budget = float(max_relative_cost)
    if not math.isfinite(budget) or budget <= 0:
        raise ParameterError(
            f"Expected max_relative_cost to be a positive number; got {max_relative_cost!r}. "
            "For example 0.5 for half the teacher's cost."
        )
    curve = curve_2(s, cs, ct, c)
    i = reduce_curve(curve, Target("relative_cost", budget))
    return result_from_curve(curve, i, [s], "cost", mean_of(ct))


# --------------------------------------------------------------------------------------------
# EBJR Fig. 4: crossing of the score densities of right and wrong answers


def crossing_threshold(
    scores: ArrayLike,
    student_correct: ArrayLike,
    *,
    bins: int | None = None,
    n_points: int = 512,
) -> float:
    """Where the score densities of right and wrong student answers cross (EBJR Fig. 4).

    Both densities are normalised (each integrates to 1) and estimated on a common grid: a
    Gaussian KDE (``scipy.stats.gaussian_kde``, Scott's bandwidth; a group larger than 5,000 is
    thinned to 5,000 evenly spaced quantiles, keeping its bandwidth) by default, or histograms
    with ``bins`` common bins. The threshold is a point where ``density_right -
    density_wrong`` changes sign from negative to positive going up in score. If there are
    several such crossings, the one that maximises ``F_wrong(t) - F_right(t)`` (the share of
    wrong answers below t minus the share of right answers below t, Youden's J) is chosen:
    that quantity's maximisers are exactly such crossings, so this picks the crossing that
    best separates the two groups, which is the one between the two modes.

    No accuracy target is involved: this is EBJR's heuristic operating point.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Student routing scores (higher = keep on the student).
    student_correct : array-like of shape (n_samples,)
        1 (or True) where the student is right.
    bins : int, optional
        Use histograms with this many common bins instead of a KDE.
    n_points : int, default=512
        KDE evaluation points between the smallest and the largest score.

    Returns
    -------
    float

    Raises
    ------
    InsufficientDataError
        When fewer than two distinct scores are right or wrong (no density to estimate).
    InfeasibleTargetError
        When the densities never cross from "wrong is denser" to "right is denser" (the score
        does not rank right answers higher).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = np.r_[rng.normal(0, 1, 500), rng.normal(4, 1, 500)]
    >>> right = np.r_[np.zeros(500), np.ones(500)]
    >>> round(crossing_threshold(s, right), 1)
    2.0
    """
    s = as_scores(scores)
    c = as_correct(student_correct, "student_correct")
    check_same_samples([("scores", s.shape[0]), ("student_correct", c.shape[0])])
    sr, sw = s[c], s[~c]
    for name, grp in (("right", sr), ("wrong", sw)):
        if np.unique(grp).shape[0] < 2:
            raise InsufficientDataError(
                f"Expected at least 2 distinct scores of inputs the student gets {name} to "
                f"estimate their density; got {np.unique(grp).shape[0]} (of {s.shape[0]} "
                "inputs). Use more calibration data, or threshold_for_accuracy / "
                "threshold_for_teacher_share.",
                needed=2,
            )
    lo, hi = float(s.min()), float(s.max())
    if bins is not None:
        nb = int(bins)
        if nb < 2:
            raise ParameterError(f"Expected bins >= 2; got {bins!r}.")
        edges = np.linspace(lo, hi, nb + 1)
        dr, _ = np.histogram(sr, bins=edges, density=True)
        dw, _ = np.histogram(sw, bins=edges, density=True)
        x = 0.5 * (edges[1:] + edges[:-1])
    else:
        if int(n_points) < 3:
            raise ParameterError(f"Expected n_points >= 3; got {n_points!r}.")
        from scipy.stats import gaussian_kde

        def density(v: FloatArray) -> FloatArray:
            # Scott's factor of the full group; large groups are thinned to 5,000 evenly spaced
            # quantiles (deterministic) so that evaluation stays fast
            factor = v.shape[0] ** (-0.2)
            if v.shape[0] > _KDE_MAX:
                v = np.quantile(v, np.linspace(0.0, 1.0, _KDE_MAX))
            out: FloatArray = gaussian_kde(v, bw_method=factor)(x)
            return out

        x = np.linspace(lo, hi, int(n_points))
        dr, dw = density(sr), density(sw)
    diff = dr - dw
    idx = np.flatnonzero((diff[:-1] < 0) & (diff[1:] >= 0))
    if idx.shape[0] == 0:
        raise InfeasibleTargetError(
            "The score densities of right and wrong student answers never cross from 'wrong "
            "is denser' to 'right is denser' going up in score: this score does not rank right "
            "answers higher. Check the score's direction (higher = more confident) or pick "
            "another score."
        )
    # linear interpolation of the zero between x[i] and x[i+1]
    x0, x1, d0, d1 = x[idx], x[idx + 1], diff[idx], diff[idx + 1]
    cross = x0 + (x1 - x0) * (-d0) / (d1 - d0)
    youden = [np.mean(sw < t) - np.mean(sr < t) for t in cross]
    best = float(cross[int(np.argmax(youden))])
    # the same routing of the calibration inputs, midway between two blocks of scores
    return float(separating_threshold_of(s, [best])[0])
