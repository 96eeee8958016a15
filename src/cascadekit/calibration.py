"""Choosing thresholds on calibration data: for a teacher share, an accuracy, a cost, or with a
statistical guarantee (Learn-then-Test).

**Direction.** An input stays on the student when ``score >= threshold`` (higher = more
confident = keep); a larger threshold sends more inputs to the teacher and is safer. ``+inf``
sends everything to the teacher. ``teacher_share`` is the share answered by the last stage;
``relative_cost`` is the mean cost per input (the sum of the costs of the stages an input ran)
divided by the cost of the last stage.

Everything here is a pure function over arrays (scores and 0/1 correctness of each stage) and
returns a :class:`CalibrationResult`, except :func:`threshold_for_teacher_share` and
:func:`crossing_threshold`, which return a float. Two-stage operating points are exact: the
scores are sorted once and cumulative sums give every threshold (tied scores move together).

Guarantees (:func:`guaranteed_threshold`) control the *population* accuracy drop against the
teacher, ``drop(t) = acc_teacher - acc_cascade(t) = E[1{s >= t} (cT - cS)]``: with probability
at least ``1 - delta`` over the draw of the calibration data, ``drop(t_hat) <= epsilon``.
The calibration rows must be i.i.d. (exchangeable) with the data the cascade will see, and
nothing else (the score, its temperature) may have been chosen on them.

Examples
--------
>>> import numpy as np
>>> from cascadekit import calibration
>>> scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
>>> calibration.threshold_for_teacher_share(scores, 0.4)   # midway between 0.7 and 0.2
0.45
>>> r = calibration.threshold_for_accuracy(
...     scores, [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], target_accuracy=0.8, costs=[1, 4])
>>> round(r.thresholds[0], 4), r.teacher_share, r.accuracy, round(r.relative_cost, 4)
(0.45, 0.4, 0.8, 0.65)
>>> round(r.numerical_margin, 4)   # no calibration score is closer to the threshold
0.25
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaln, logsumexp, xlogy
from scipy.stats import binom

from ._validation import (
    as_correct,
    as_labels,
    as_scores,
    as_stage_output,
    check_costs,
    check_open_unit,
    check_same_samples,
    check_unit,
    encode_threshold,
)
from .cascade import assign_stages
from .curves._common import ACCURACY_TOL
from .curves.exact import Curve, cascade_curve, relative_cost_2
from .curves.grid import grid_curve, threshold_grid
from .errors import (
    InfeasibleTargetError,
    InsufficientDataError,
    ParameterError,
    UnknownNameError,
)
from .scores import (
    numerical_margin,
    separating_threshold_of,
)

__all__ = [
    "GUARANTEE_METHODS",
    "TARGET_KINDS",
    "CalibrationResult",
    "Target",
    "calibrate_cascade",
    "calibrate_outputs",
    "crossing_threshold",
    "guaranteed_threshold",
    "guaranteed_threshold_label_free",
    "min_calibration_size",
    "parse_target",
    "reduce_curve",
    "threshold_for_accuracy",
    "threshold_for_cost",
    "threshold_for_teacher_share",
]

FloatArray = NDArray[np.floating[Any]]
BoolArray = NDArray[np.bool_]

#: p-values available to :func:`guaranteed_threshold`.
GUARANTEE_METHODS = ("trinomial", "betting", "binomial", "hb")

# Betting: a uniform mixture over constant bets lambda = c / m, c on the midpoints of (0, 1).
_N_BETS = 100
_BET_FRACTIONS = (np.arange(_N_BETS, dtype=np.float64) + 0.5) / _N_BETS
_DEFAULT_N_THRESHOLDS = 100
_KDE_MAX = 5000


# --------------------------------------------------------------------------------------------
# result


@dataclass
class CalibrationResult:
    """A chosen threshold and the cascade it gives on the calibration data.

    Attributes
    ----------
    thresholds : tuple of float, length N-1
        Threshold of every non-final stage (one for 2 stages). An input stays at stage ``k``
        when its score is ``>= thresholds[k]``; ``inf`` sends everything on. A bare float is
        accepted when constructing and stored as a 1-tuple.
    teacher_share : float
        Share of calibration inputs answered by the last stage.
    relative_cost : float
        Mean cost per calibration input divided by the cost of the last stage.
    accuracy : float
        Cascade accuracy on the calibration data; when ``label_free``, the *agreement* with the
        last stage (the share of inputs answered as the last stage answers them), also given
        as :attr:`agreement`. :meth:`to_dict` then names it ``agreement``.
    method : str
        How the threshold was chosen (``"teacher_share"``, ``"accuracy"``, ``"agreement"``
        (label-free), ``"cost"``,
        ``"trinomial"``, ``"betting"``, ``"binomial"``, ``"hb"``).
    epsilon, delta : float, optional
        Guarantee: the population accuracy drop against the last stage is ``<= epsilon`` with
        probability ``>= 1 - delta``.
    n_calibration : int, optional
        Number of calibration samples.
    grid : tuple of float, optional
        Guarantee: the thresholds tested, in testing order (safest first, ``inf`` excluded). For
        N stages, the score-quantile levels of the path.
    p_values : tuple of float, optional
        Guarantee: the p-value of every grid point, in testing order.
    n_tested : int, optional
        Guarantee: how many grid points fixed-sequence testing looked at (it stops at the first
        p-value above ``delta``).
    n_certified : int, optional
        Guarantee: how many grid points were certified (0 means ``threshold = inf``).
    label_free : bool
        True when correctness is agreement with the last stage rather than with labels.
    teacher_accuracy : float, optional
        Accuracy of the last stage alone on the calibration data (1.0 by definition when
        label-free, so :meth:`to_dict` leaves it out then).
    numerical_margin : float, optional
        Distance from the finite thresholds to the nearest calibration score (the smallest over
        stages): thresholds are placed midway between blocks of distinct scores, so rounding
        noise below this margin cannot change a routing decision on the calibration data.
        None when every threshold is infinite.
    """

    thresholds: tuple[float, ...]
    teacher_share: float
    relative_cost: float
    accuracy: float
    method: str
    epsilon: float | None = None
    delta: float | None = None
    n_calibration: int | None = None
    grid: tuple[float, ...] | None = None
    p_values: tuple[float, ...] | None = None
    n_tested: int | None = None
    n_certified: int | None = None
    label_free: bool = False
    teacher_accuracy: float | None = None
    numerical_margin: float | None = None

    def __post_init__(self) -> None:
        raw = self.thresholds
        seq = raw if isinstance(raw, (tuple, list, np.ndarray)) else (raw,)
        self.thresholds = tuple(float(t) for t in np.ravel(np.asarray(seq, dtype=np.float64)))

    @property
    def accuracy_drop(self) -> float | None:
        """Calibration accuracy of the last stage minus that of the cascade.

        None when unknown, and when ``label_free`` (see :attr:`disagreement`).
        """
        if self.teacher_accuracy is None or self.label_free:
            return None
        return self.teacher_accuracy - self.accuracy

    @property
    def agreement(self) -> float | None:
        """Label-free: share of calibration inputs answered as the last stage answers them."""
        return self.accuracy if self.label_free else None

    @property
    def disagreement(self) -> float | None:
        """Label-free: ``1 - agreement``, which bounds the accuracy drop from above."""
        return 1.0 - self.accuracy if self.label_free else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: infinite thresholds become ``None``, tuples become lists.

        ``measured_against`` says what correctness means: ``"labels"``, or ``"agreement with
        the last stage"`` when label-free; then ``accuracy``, ``teacher_accuracy`` and
        ``accuracy_drop`` are replaced by ``agreement`` and ``disagreement``.

        Examples
        --------
        >>> r = CalibrationResult(float("inf"), 1.0, 1.25, 0.9, "binomial")
        >>> r.to_dict()["thresholds"]
        [None]
        >>> d = CalibrationResult(0.5, 0.2, 0.4, 0.97, "teacher_share", label_free=True,
        ...                       teacher_accuracy=1.0).to_dict()
        >>> d["measured_against"], d["agreement"], "accuracy" in d, "teacher_accuracy" in d
        ('agreement with the last stage', 0.97, False, False)
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            out[f.name] = _jsonable(getattr(self, f.name))
        out["accuracy_drop"] = _jsonable(self.accuracy_drop)
        if self.label_free:
            for key in ("accuracy", "teacher_accuracy", "accuracy_drop"):
                del out[key]
            out["agreement"] = _jsonable(self.agreement)
            out["disagreement"] = _jsonable(self.disagreement)
        out["measured_against"] = "agreement with the last stage" if self.label_free else "labels"
        return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, bool | str) or v is None:
        return v
    if isinstance(v, int | np.integer):
        return int(v)
    f = float(v)
    if math.isnan(f):
        return None
    return encode_threshold(f)  # +inf -> None, -inf -> "-inf", as in router files


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
        _check_method(self.method, False)  # a known test, or "auto"

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


# --------------------------------------------------------------------------------------------
# validation


def _two_stage(
    scores: ArrayLike, correct_student: ArrayLike, correct_teacher: ArrayLike
) -> tuple[FloatArray, BoolArray, BoolArray]:
    s = as_scores(scores)
    cs = as_correct(correct_student, "correct_student")
    ct = as_correct(correct_teacher, "correct_teacher")
    check_same_samples([("scores", s.shape[0]), ("correct_student", cs.shape[0])])
    check_same_samples([("scores", s.shape[0]), ("correct_teacher", ct.shape[0])])
    return s, cs, ct


def _rel_cost_2(share: FloatArray | float, costs: FloatArray) -> Any:
    return relative_cost_2(np.asarray(share), costs)


# --------------------------------------------------------------------------------------------
# targets as reducers over one curve: the exact 2-stage curve (curves.cascade_curve) or the
# N-stage grid (curves.grid_curve); every operating point is computed there, once

_TOL = ACCURACY_TOL  # the curves' accuracy tolerance, for shares and costs too


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
        cand = np.flatnonzero(dist <= dist.min() + _TOL)
        cand = cand[share[cand] <= share[cand].min() + _TOL]
    elif tgt.kind == "accuracy":
        cand = np.flatnonzero(acc >= value - _TOL)
        if cand.shape[0] == 0:
            raise _infeasible_accuracy(curve, value, n_samples)
        cand = cand[rel[cand] <= rel[cand].min() + _TOL]
    else:
        cand = np.flatnonzero(rel <= value + _TOL)
        if cand.shape[0] == 0:
            lo = float(rel.min())
            first, stage = ("student", "teacher") if two else ("first stage", "last stage")
            raise InfeasibleTargetError(
                f"No threshold{'' if two else 's'} keep{'s' if two else ''} relative_cost <= "
                f"{value:g}; the cheapest cascade (everything on the {first}) costs {lo:.4g} of "
                f"the {stage} alone. Raise max_relative_cost or use a cheaper {first}.",
                best=lo,
            )
    cand = cand[acc[cand] >= acc[cand].max() - _TOL]
    cand = cand[rel[cand] == rel[cand].min()]
    if cand.shape[0] > 1:  # exact ties: the safest, i.e. the largest thresholds
        th = curve.thresholds[cand]
        cand = cand[np.lexsort(th.T[::-1])[-1:]]
    return int(cand[0])


def _infeasible_accuracy(curve: Curve, target: float, n: int | None) -> InfeasibleTargetError:
    acc, share = curve.accuracy, curve.teacher_share
    on = f" on {n:,} calibration samples" if n else ""
    if curve.n_stages == 2:
        top = np.flatnonzero(acc >= acc.max() - _TOL)
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


def _curve_2(
    s: FloatArray,
    cs: ArrayLike | None = None,
    ct: ArrayLike | None = None,
    costs: ArrayLike | None = None,
) -> Curve:
    """The exact 2-stage curve of the calibration data (correctness zeros when not given)."""
    zeros = np.zeros(s.shape[0], dtype=bool)
    return cascade_curve(s, zeros if cs is None else cs, zeros if ct is None else ct, costs)


def _result_from_curve(
    curve: Curve,
    i: int,
    ss: Sequence[FloatArray],
    method: str,
    teacher_accuracy: float,
    label_free: bool = False,
) -> CalibrationResult:
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
    curve = _curve_2(s)
    return float(curve.thresholds[reduce_curve(curve, target), 0])


def threshold_for_accuracy(
    scores: ArrayLike,
    correct_student: ArrayLike,
    correct_teacher: ArrayLike,
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
    correct_student, correct_teacher : array-like of shape (n_samples,)
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
    s, cs, ct = _two_stage(scores, correct_student, correct_teacher)
    target = Target("accuracy", check_unit("target_accuracy", target_accuracy))
    curve = _curve_2(s, cs, ct, check_costs(costs, 2))
    i = reduce_curve(curve, target, n_samples=s.shape[0])
    return _result_from_curve(curve, i, [s], "accuracy", _mean(ct))


def threshold_for_cost(
    scores: ArrayLike,
    correct_student: ArrayLike,
    correct_teacher: ArrayLike,
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
    correct_student, correct_teacher : array-like of shape (n_samples,)
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
    s, cs, ct = _two_stage(scores, correct_student, correct_teacher)
    c = check_costs(costs, 2)
    budget = float(max_relative_cost)
    if not math.isfinite(budget) or budget <= 0:
        raise ParameterError(
            f"Expected max_relative_cost to be a positive number; got {max_relative_cost!r}. "
            "For example 0.5 for half the teacher's cost."
        )
    curve = _curve_2(s, cs, ct, c)
    i = reduce_curve(curve, Target("relative_cost", budget))
    return _result_from_curve(curve, i, [s], "cost", _mean(ct))


def _mean(x: NDArray[Any]) -> float:
    return float(np.mean(x))


# --------------------------------------------------------------------------------------------
# EBJR Fig. 4: crossing of the score densities of right and wrong answers


def crossing_threshold(
    scores: ArrayLike,
    correct_student: ArrayLike,
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
    correct_student : array-like of shape (n_samples,)
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
    c = as_correct(correct_student, "correct_student")
    check_same_samples([("scores", s.shape[0]), ("correct_student", c.shape[0])])
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


# --------------------------------------------------------------------------------------------
# guarantees: p-values and fixed-sequence testing


def _p_values(
    n_harm: FloatArray, n_gain: FloatArray, n: int, epsilon: float, method: str
) -> FloatArray:
    """p-values of H0: drop > epsilon, from the counts of harmful and helpful kept rows.

    ``n_harm``: kept rows where the student is wrong and the teacher right (drop +1);
    ``n_gain``: kept rows where the student is right and the teacher wrong (drop -1).
    """
    n_harm = np.asarray(n_harm, dtype=np.float64)
    if method == "trinomial":
        return _trinomial_p_values(n_harm, np.asarray(n_gain, dtype=np.float64), n, epsilon)
    if method == "binomial":
        out: FloatArray = binom.cdf(n_harm, n, epsilon)
        return np.minimum(out, 1.0)
    if method == "hb":
        r = n_harm / n
        a = np.minimum(r, epsilon)
        h1 = xlogy(a, a / epsilon) + xlogy(1 - a, (1 - a) / (1 - epsilon))
        hoeffding = np.exp(-n * h1)
        bentkus = math.e * binom.cdf(n_harm, n, epsilon)  # n * R_hat, exact for a 0/1 loss
        res: FloatArray = np.minimum(np.minimum(hoeffding, bentkus), 1.0)
        return res
    # betting: x = (1 - d) / 2 in {0, 1/2, 1}, H0: E[x] <= m = (1 - epsilon) / 2.
    n_gain = np.asarray(n_gain, dtype=np.float64)
    n_zero = n - n_harm - n_gain
    c = _BET_FRACTIONS  # lambda * m
    log_harm = np.log1p(-c)  # x = 0
    log_zero = np.log1p(c * epsilon / (1 - epsilon))  # x = 1/2
    log_gain = np.log1p(c * (1 + epsilon) / (1 - epsilon))  # x = 1
    log_k = (
        n_harm[:, None] * log_harm[None, :]
        + n_zero[:, None] * log_zero[None, :]
        + n_gain[:, None] * log_gain[None, :]
    )
    log_wealth = logsumexp(log_k, axis=1) - math.log(_N_BETS)
    pv: FloatArray = np.exp(-np.maximum(log_wealth, 0.0))
    return pv


# --------------------------------------------------------------------------------------------
# the exact unconditional trinomial test of the drop (method="trinomial")
#
# Per kept input the loss is +1 (student wrong, teacher right), -1 (student right, teacher
# wrong) or 0, with probabilities p+, p-, p0; the drop is p+ - p-. The test orders the outcomes
# (n+, m = n+ + n-) by the score statistic of the null boundary p+ - p- = epsilon (Tango 1998:
# the variance is evaluated at the restricted maximum-likelihood point of the boundary), and its
# p-value is the largest probability of an outcome at least as extreme over the whole boundary.

# Critical values of the statistic at which p-values are evaluated: an observation is rounded
# up to the next one (conservative). Fine where decisions are taken (p-values ~0.0002..0.5).
_TRI_Z = np.unique(
    np.round(
        np.r_[np.arange(-6.0, -3.5, 0.1), np.arange(-3.5, 0.5, 0.02), np.arange(0.5, 4.01, 0.1)],
        6,
    )
)
# Nuisance values p- on the null boundary: a fine grid, denser where p- is small (its step is
# a fixed fraction of the standard error of the drop there), where the size is evaluated.
_TRI_NUISANCE_STEP = 0.5
_TRI_EDGE_COUNT = 30.0
_TRI_TAIL_SD = 7.0
# Safety factor on the sizes: between the nuisance grid points the size can exceed its grid
# maximum; a 10x finer grid raised it by at most 0.15% (n = 450 .. 2,500), this allows 1%.
_TRI_MARGIN = 1.01
_TRI_CHUNK = 8192


def _tango_z(n_plus: FloatArray, m: FloatArray, n: int, eps: float) -> FloatArray:
    """Score statistic of H0: p+ - p- = eps at (n+, n- = m - n+, n0 = n - m)."""
    n_minus = m - n_plus
    n_zero = n - m
    b = n_plus * (1 - eps) + n_minus * (1 - 3 * eps) - 2 * n_zero * eps
    c = n_minus * eps * (1 - eps)
    a = np.clip((b + np.sqrt(b * b + 8 * n * c)) / (4 * n), 0.0, (1 - eps) / 2)
    out: FloatArray = (n_plus - n_minus - n * eps) / np.sqrt(n * (2 * a + eps - eps * eps))
    return out


def _tri_regions(n: int, eps: float) -> NDArray[np.int32]:
    """``c[i, m]``: the rejection region at critical value ``_TRI_Z[i]`` is ``n+ <= c[i, m]``.

    Each region is widened (never narrowed) so that it is nested in ``i`` and closed under
    fewer harmful rows (``n+ - 1`` at the same ``n-``) and under more helpful rows (``n- + 1``
    at the same ``n+``): then the size of a region over the whole null ``p+ - p- > eps`` is at
    most its size on the boundary ``p+ - p- = eps`` (a coupling turns +1 into 0 and 0 into -1).
    """
    z = _TRI_Z[:, None]
    c = np.empty((_TRI_Z.shape[0], n + 1), dtype=np.int32)
    for start in range(0, n + 1, _TRI_CHUNK):  # bounded memory for large n
        m = np.arange(start, min(n + 1, start + _TRI_CHUNK), dtype=np.float64)
        lo = np.full((_TRI_Z.shape[0], m.shape[0]), -1.0)  # largest n+ known inside (-1: none)
        hi = np.broadcast_to(m, lo.shape).copy()  # largest n+ that may be inside
        while np.any(hi > lo):  # the statistic increases in n+ at fixed m: bisection
            mid = np.floor((lo + hi + 1) / 2)
            ok = _tango_z(mid, m[None, :], n, eps) <= z
            lo = np.where(ok, mid, lo)
            hi = np.where(ok, hi, mid - 1)
        c[:, start : start + m.shape[0]] = lo.astype(np.int32)
    c = np.maximum.accumulate(c, axis=0)  # nested in the critical value
    c = np.maximum.accumulate(c, axis=1)  # one more helpful row: still rejected
    # one harmful row fewer at the same n-: c(m - 1) >= c(m) - 1, i.e. c(m) - m running max
    # from the right
    mi = np.arange(n + 1, dtype=np.int32)
    out: NDArray[np.int32] = np.maximum.accumulate((c - mi)[:, ::-1], axis=1)[:, ::-1] + mi
    return out


def _tri_nuisance(n: int, eps: float) -> FloatArray:
    """Grid of p- over [0, (1 - eps) / 2]: the step is a fraction of the drop's standard error,
    finer where few helpful rows or few ties are expected (the size varies fastest there)."""
    top = (1 - eps) / 2
    pts = [0.0]
    while pts[-1] < top:
        a = pts[-1]
        s = 2 * a + eps
        edge = n * a < _TRI_EDGE_COUNT or n * (1 - s) < _TRI_EDGE_COUNT
        frac = _TRI_NUISANCE_STEP / 10 if edge else _TRI_NUISANCE_STEP
        pts.append(a + frac * math.sqrt(s * max(1 - s, 1.0 / n) / n))
    pts[-1] = top
    return np.asarray(pts)


def _tri_size_at(
    c: NDArray[np.int32], n: int, a: float, eps: float, log_fact: FloatArray | None = None
) -> FloatArray:
    """Upper bound of the probability of every region at the boundary point p- = a.

    ``log_fact[i] = log(i!)`` for ``i <= n`` (computed when not given).
    """
    lf = gammaln(np.arange(n + 1) + 1.0) if log_fact is None else log_fact
    s = min(2 * a + eps, 1.0)
    q = (a + eps) / s
    sd = math.sqrt(n * s * (1 - s))
    m_lo = max(0, math.floor(n * s - _TRI_TAIL_SD * sd - 1))
    m_hi = min(n, math.ceil(n * s + _TRI_TAIL_SD * sd + 1))
    ms = np.arange(m_lo, m_hi + 1)
    w = binom.pmf(ms, n, s)
    missed = max(0.0, 1.0 - float(w.sum()))  # rows of m outside the window (<~ 1e-18)
    # conditional law of n+ given m: Binomial(m, q), on a band of +-7 sd around its mean (the
    # mass outside the band and outside the window of m is added: an upper bound)
    sdk = np.sqrt(ms * q * (1 - q))
    k_lo = np.clip(np.floor(ms * q - _TRI_TAIL_SD * sdk - 1), 0, ms).astype(np.int64)
    k_hi = np.clip(np.ceil(ms * q + _TRI_TAIL_SD * sdk + 1), 0, ms).astype(np.int64)
    width = int((k_hi - k_lo).max()) + 1
    k = k_lo[:, None] + np.arange(width)[None, :]
    inside = k <= k_hi[:, None]
    kk = np.minimum(k, ms[:, None])
    rest = ms[:, None] - kk
    logp = lf[ms][:, None] - lf[kk] - lf[rest]
    if 0.0 < q < 1.0:
        logp += kk * math.log(q) + rest * math.log1p(-q)
    else:  # p- = 0: every discordant row is harmful (0 * log 0 = 0)
        logp += xlogy(kk, q) + xlogy(rest, 1 - q)
    pmf = np.where(inside, np.exp(logp), 0.0)
    cdf = np.cumsum(pmf, axis=1)
    out_band = np.maximum(0.0, 1.0 - cdf[:, -1])  # conditional mass outside the band
    j = c[:, ms] - k_lo[None, :]  # (n_z, n_m)
    cols = np.clip(j, 0, width - 1)
    f = np.where(j < 0, 0.0, cdf[np.arange(ms.shape[0])[None, :], cols])
    res: FloatArray = (f + out_band[None, :]) @ w + missed
    return res


@functools.lru_cache(maxsize=32)
def _tri_table(n: int, eps: float) -> tuple[NDArray[np.int32], FloatArray]:
    """Rejection regions and their sizes (sup over the null) for n rows at this epsilon."""
    c = _tri_regions(n, eps)
    log_fact = gammaln(np.arange(n + 1) + 1.0)
    size = np.zeros(_TRI_Z.shape[0])
    for a in _tri_nuisance(n, eps):
        np.maximum(size, _tri_size_at(c, n, float(a), eps, log_fact), out=size)
    size = np.minimum(np.maximum.accumulate(size) * _TRI_MARGIN, 1.0)
    return c, size


def _trinomial_p_values(n_harm: FloatArray, n_gain: FloatArray, n: int, eps: float) -> FloatArray:
    """p-values of H0: p+ - p- > eps for the counts (n+, n-) of n rows (exact unconditional)."""
    c, size = _tri_table(int(n), float(eps))
    k = np.asarray(n_harm, dtype=np.int64).reshape(-1)
    m = k + np.asarray(n_gain, dtype=np.int64).reshape(-1)
    out: FloatArray = np.ones(k.shape[0])
    for start in range(0, k.shape[0], _TRI_CHUNK):  # bounded memory for many counts
        kk, mm = k[start : start + _TRI_CHUNK], m[start : start + _TRI_CHUNK]
        # the smallest (nested) region containing (n+, m): the number of regions without it
        idx = np.sum(c[:, mm] < kk[None, :], axis=0)
        out[start : start + kk.shape[0]] = np.where(
            idx < size.shape[0], size[np.minimum(idx, size.shape[0] - 1)], 1.0
        )
    return out


def _fixed_sequence(p_values: FloatArray, delta: float) -> int:
    """Number of leading p-values <= delta (fixed-sequence testing stops at the first miss)."""
    miss = np.flatnonzero(p_values > delta)
    return int(miss[0]) if miss.shape[0] else int(p_values.shape[0])


#: Largest calibration size for which ``method="auto"`` picks the trinomial test (its table of
#: rejection regions takes seconds up to here and grows like ``n ** 1.5``); above it, betting.
TRINOMIAL_MAX_N = 20_000
#: Smallest risk level ``delta`` the trinomial test can reach: its p-values are read from a
#: table of critical values whose most extreme one has a size of about 1e-9.
TRINOMIAL_MIN_DELTA = 1e-8


def _check_method(
    method: str,
    label_free: bool | None = None,
    n: int | None = None,
    delta: float | None = None,
) -> str:
    """Validate a guarantee method and resolve ``"auto"``.

    ``"auto"``: ``"binomial"`` label-free (the loss is binary there); with labels
    ``"trinomial"`` up to :data:`TRINOMIAL_MAX_N` calibration rows and down to
    :data:`TRINOMIAL_MIN_DELTA`, ``"betting"`` otherwise.
    """
    if method == "auto":
        if label_free:
            return "binomial"
        small = n is None or n <= TRINOMIAL_MAX_N
        reachable = delta is None or delta >= TRINOMIAL_MIN_DELTA
        return "trinomial" if small and reachable else "betting"
    if method == "trinomial" and delta is not None and delta < TRINOMIAL_MIN_DELTA:
        raise ParameterError(
            f"Expected delta >= {TRINOMIAL_MIN_DELTA:g} for the trinomial test (its p-values "
            f"stop near 1e-9); got delta={delta:g}. Use method='betting' or 'binomial' (or "
            "'auto', which picks betting here)."
        )
    if method not in GUARANTEE_METHODS:
        allowed = [*GUARANTEE_METHODS, "auto"]
        raise UnknownNameError(
            f"Unknown guarantee method {method!r}; expected one of {list(allowed)}. "
            "'trinomial' (exact) and 'betting' test the exact accuracy drop, 'binomial' and "
            "'hb' the conservative binary loss."
        )
    return method


def min_calibration_size(epsilon: float, delta: float, method: str = "trinomial") -> int:
    """Fewest calibration samples that can certify any threshold at all.

    This is the best case the test can see without the student beating the teacher: on every
    calibration input the student is right exactly when the teacher is (no loss, no gain). For
    ``"binomial"`` and ``"hb"`` it is ``ceil(ln(delta) / ln(1 - epsilon))``, the sample size
    at which zero observed errors give a p-value of at most ``delta``; for ``"trinomial"`` and
    ``"betting"`` the analogous count for their p-values, computed exactly. Realistic
    calibration sets need several times more.

    Examples
    --------
    >>> min_calibration_size(0.01, 0.1, "binomial")
    230
    >>> min_calibration_size(0.01, 0.1, "trinomial") >= 230
    True
    >>> min_calibration_size(0.01, 0.1, "betting") > 230
    True
    """
    eps = check_open_unit("epsilon", epsilon)
    dlt = check_open_unit("delta", delta)
    method = _check_method(method, delta=dlt)

    def ok(n: int) -> bool:
        return bool(_p_values(np.zeros(1), np.zeros(1), n, eps, method)[0] <= dlt)

    # the zero-loss p-value decreases in n: double, then bisect on (lo, hi]; no test needs fewer
    # rows than the binomial one (with no helpful rows the drop is a binary loss)
    floor = 1 if method in ("binomial", "hb") else min_calibration_size(eps, dlt, "binomial")
    hi = floor
    while not ok(hi):
        hi *= 2
    lo = max(hi // 2, floor - 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _user_grid(grid: ArrayLike) -> FloatArray:
    g = np.asarray(grid, dtype=np.float64).reshape(-1)
    if g.shape[0] == 0:
        raise ParameterError("Expected a non-empty grid of thresholds; got an empty one.")
    if np.isnan(g).any():
        raise ParameterError(
            "Expected grid thresholds to be numbers, +inf (all to the teacher) or -inf (all on "
            "the student); got NaN. Remove the NaN values from grid."
        )
    out: FloatArray = np.unique(g[g < np.inf])[::-1]
    if out.shape[0] == 0:
        raise ParameterError(
            "Expected at least one threshold below +inf in grid; got only +inf (every input to "
            "the teacher, which needs no test). Add the thresholds to test."
        )
    return out


def _check_n_or_raise(n: int, epsilon: float, delta: float, method: str, n_certified: int) -> None:
    if n_certified > 0:
        return
    needed = min_calibration_size(epsilon, delta, method)
    if n < needed:
        raise InsufficientDataError(
            f"Certifying an accuracy drop of at most epsilon={epsilon:g} with probability "
            f"1 - delta = {1 - delta:g} needs at least {needed:,} calibration samples with the "
            f"{method!r} test (that many would suffice only if student and teacher were right "
            f"on exactly the same inputs); got {n:,}. Collect more calibration data, or raise "
            "epsilon or delta.",
            needed=needed,
        )


def _count_at_least(values: FloatArray, thresholds: FloatArray) -> FloatArray:
    """For every threshold, how many ``values`` are ``>= threshold`` (one sort, searchsorted)."""
    srt = np.sort(values)
    out: FloatArray = (srt.shape[0] - np.searchsorted(srt, thresholds, side="left")).astype(
        np.float64
    )
    return out


def _guarantee_2(
    s: FloatArray,
    cs: BoolArray,
    ct: BoolArray,
    epsilon: float,
    delta: float,
    method: str,
    grid: ArrayLike | None,
    n_thresholds: int,
    costs: ArrayLike | None,
    label_free: bool,
) -> CalibrationResult:
    eps = check_open_unit("epsilon", epsilon)
    dlt = check_open_unit("delta", delta)
    n = s.shape[0]
    method = _check_method(method, label_free, n, dlt)
    c = check_costs(costs, 2)
    g = _user_grid(threshold_grid(s, n_thresholds) if grid is None else grid)  # safest first
    # kept counts at every grid threshold: sort the scores of the harmful (student wrong,
    # teacher right) and helpful rows once; rows with s < t go to the teacher
    n_harm = _count_at_least(s[~cs & ct], g)
    n_gain = _count_at_least(s[cs & ~ct], g)
    pv = _p_values(n_harm, n_gain, n, eps, method)
    k = _fixed_sequence(pv, dlt)
    _check_n_or_raise(n, eps, dlt, method, k)
    t = math.inf if k == 0 else float(g[k - 1])
    keep = s >= t
    share = float(np.mean(~keep))
    acc = float(np.mean(np.where(keep, cs, ct)))
    return CalibrationResult(
        numerical_margin=numerical_margin([s], [t]),
        thresholds=(t,),
        teacher_share=share,
        relative_cost=float(_rel_cost_2(share, c)),
        accuracy=acc,
        method=method,
        epsilon=eps,
        delta=dlt,
        n_calibration=n,
        grid=tuple(float(v) for v in g),
        p_values=tuple(float(v) for v in pv),
        n_tested=min(k + 1, g.shape[0]),
        n_certified=k,
        label_free=label_free,
        teacher_accuracy=float(np.mean(ct)),
    )


def guaranteed_threshold(
    scores: ArrayLike,
    correct_student: ArrayLike,
    correct_teacher: ArrayLike,
    epsilon: float,
    delta: float,
    *,
    method: str = "auto",
    grid: ArrayLike | None = None,
    n_thresholds: int = _DEFAULT_N_THRESHOLDS,
    costs: ArrayLike | None = None,
) -> CalibrationResult:
    """The smallest threshold certified to lose at most ``epsilon`` accuracy against the teacher.

    Learn-then-Test (Angelopoulos et al. 2021) with fixed-sequence testing: the grid of
    thresholds is ordered from the safest (largest) to the least safe; ``+inf`` (all to the
    teacher, drop 0) comes first and needs no test. For each grid threshold ``t`` in turn the
    null hypothesis ``drop(t) > epsilon`` is tested; while it is rejected (``p <= delta``)
    the threshold is certified and testing goes on, at the first p-value above ``delta`` it
    stops. The result is the last certified threshold. Fixed-sequence testing is valid for
    any order fixed in advance, so no multiplicity correction is needed.

    **Guarantee.** With probability at least ``1 - delta`` over the i.i.d. draw of the
    calibration data, the population accuracy drop of the cascade against the teacher,
    ``acc_teacher - acc_cascade(t_hat)``, is at most ``epsilon``. It is about the population
    (the expected drop), not the drop measured on any finite test set, which adds its own
    sampling noise. If no grid threshold is certified the result is ``threshold = inf``
    (everything to the teacher): valid, just not useful.

    Methods (p-values of ``H0: drop(t) > epsilon``):

    * ``"auto"`` (default): ``"trinomial"`` up to :data:`TRINOMIAL_MAX_N` (20,000) calibration
      rows, ``"betting"`` above (the trinomial table would take minutes); the method used is
      ``result.method``.
    * ``"trinomial"``: an exact unconditional test of the exact drop. Each kept row's
      loss ``d_i = 1{s_i >= t}(cT_i - cS_i)`` is +1, -1 or 0 with probabilities ``p+, p-,
      p0``, and the drop is ``p+ - p-``. The counts ``(n+, n-)`` are ordered by the score
      statistic of the boundary ``p+ - p- = epsilon`` (the observed drop minus epsilon over
      its standard error at the restricted maximum-likelihood point, Tango 1998), and the
      p-value is the largest probability of a count at least as extreme over every
      ``(p+, p-)`` of that boundary (the nuisance ``p-`` runs over a fine grid of ``[0, (1 -
      epsilon) / 2]``; a 1% margin covers the gaps between its points). The rejection regions
      are closed under fewer harmful and more helpful rows, so the boundary is the worst case
      of the whole null. It uses both counts like betting, and its level is exact rather than
      Markov's bound: it certifies the most. The first call for a calibration size and epsilon
      computes a table of rejection regions, in time growing like ``n ** 1.5`` (measured on a
      shared 2-core machine: n = 450 in 0.2 s, 5,000 in 2.5 s, 20,000 in 14 s; up to twice
      that under heavy load); later calls in the same process reuse it.
    * ``"betting"``: tests the exact drop ``d_i = 1{s_i >= t}(cT_i - cS_i)`` in
      {-1, 0, 1}, so inputs the student gets right and the teacher wrong count in the
      student's favour. With ``x = (1 - d) / 2`` in [0, 1] and ``m = (1 - epsilon) / 2``, the
      null says ``E[x] < m``; for every constant bet ``lambda`` in ``[0, 1/m)`` the wealth
      ``prod_i (1 + lambda (x_i - m))`` has expectation at most 1 under the null, and so has
      their average over a fixed uniform grid of 100 bets (a mixture martingale, Waudby-Smith
      & Ramdas 2023). Markov's inequality makes ``p = min(1, 1 / wealth)`` a valid p-value.
      Constant bets make the wealth depend only on the counts, so no row order or seed is
      involved, and it stays valid when the calibration rows are drawn without replacement
      from a finite pool (Hoeffding's convex-order argument).
    * ``"binomial"``: the conservative binary loss ``1{s_i >= t, student wrong, teacher
      right}`` (it bounds the drop from above) with the exact binomial p-value
      ``BinomCDF(n R_hat; n, epsilon)``. Tighter than betting when the student is almost never
      right where the teacher is wrong (and for label-free calibration).
    * ``"hb"``: Hoeffding-Bentkus on the same binary loss (as in the LTT paper; looser than
      ``"binomial"`` for a binary loss, kept for comparison).

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Student routing scores of the calibration inputs (higher = keep on the student).
    correct_student, correct_teacher : array-like of shape (n_samples,)
        1 (or True) where the stage's answer is right.
    epsilon : float in (0, 1)
        Largest tolerated accuracy drop against the teacher (0.01 = one accuracy point).
    delta : float in (0, 1)
        Allowed probability that the guarantee fails.
    method : {"auto", "trinomial", "betting", "binomial", "hb"}, default="auto"
    grid : array-like, optional
        Thresholds to test, fixed before looking at the calibration labels (they are sorted
        from largest to smallest; ``+inf`` is always first). Defaults to
        :func:`cascadekit.curves.threshold_grid` of the calibration scores with
        ``n_thresholds`` levels, safest first: from the ``(n_thresholds - 1)/n_thresholds``
        quantile down to ``-inf``. It uses the scores but not the labels; for exact
        finite-sample validity fix the grid on other data, e.g.
        ``grid=threshold_grid(scores_of_a_separate_split)``.
    n_thresholds : int, default=100
        Size of the default grid.
    costs : (float, float), optional
        Cost per input of the student and the teacher, for ``relative_cost``.

    Returns
    -------
    CalibrationResult
        With ``epsilon``, ``delta``, ``grid``, ``p_values``, ``n_tested`` and ``n_certified``.

    Raises
    ------
    ParameterError
        If ``epsilon`` or ``delta`` is not strictly between 0 and 1.
    InsufficientDataError
        If nothing was certified and the calibration set is smaller than
        :func:`min_calibration_size` (``needed`` holds that size).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = rng.uniform(size=2000)
    >>> cs = rng.uniform(size=2000) < s          # the student is right more when confident
    >>> ct = np.ones(2000, dtype=bool)
    >>> r = guaranteed_threshold(s, cs, ct, epsilon=0.05, delta=0.1)
    >>> 0 < r.teacher_share < 1 and r.accuracy_drop <= 0.05
    True
    """
    s, cs, ct = _two_stage(scores, correct_student, correct_teacher)
    return _guarantee_2(s, cs, ct, epsilon, delta, method, grid, n_thresholds, costs, False)


def guaranteed_threshold_label_free(
    scores: ArrayLike,
    student_predictions: ArrayLike,
    teacher_predictions: ArrayLike,
    epsilon: float,
    delta: float,
    *,
    method: str = "binomial",
    grid: ArrayLike | None = None,
    n_thresholds: int = _DEFAULT_N_THRESHOLDS,
    costs: ArrayLike | None = None,
) -> CalibrationResult:
    """Like :func:`guaranteed_threshold`, with agreement with the teacher instead of labels.

    The teacher's answers play the role of the truth: ``correct_student = (student_prediction
    == teacher_prediction)`` and the teacher is always "right". The guarantee is then: with
    probability at least ``1 - delta``, the population share of inputs that stay on the student
    *and* on which it disagrees with the teacher is at most ``epsilon``, i.e. the cascade
    changes at most ``epsilon`` of the teacher's answers. Since disagreement includes every
    input where the student is wrong and the teacher right, the labelled accuracy drop is at
    most ``epsilon`` too. Needs no labels, so unlabelled traffic can calibrate.

    The drop is binary here (the student never "beats" the teacher), so the exact binomial
    test is the default: it is tighter than betting on binary data.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> s = rng.uniform(size=3000)
    >>> teacher = rng.integers(0, 10, size=3000)
    >>> student = np.where(rng.uniform(size=3000) < 0.5 + s / 2, teacher, (teacher + 1) % 10)
    >>> r = guaranteed_threshold_label_free(s, student, teacher, epsilon=0.05, delta=0.1)
    >>> r.label_free, 0 < r.teacher_share < 1
    (True, True)
    """
    s = as_scores(scores)
    ps = as_labels(student_predictions, name="student_predictions")
    pt = as_labels(teacher_predictions, name="teacher_predictions")
    check_same_samples([("scores", s.shape[0]), ("student_predictions", ps.shape[0])])
    check_same_samples([("scores", s.shape[0]), ("teacher_predictions", pt.shape[0])])
    agree = ps == pt
    ones = np.ones(s.shape[0], dtype=bool)
    return _guarantee_2(s, agree, ones, epsilon, delta, method, grid, n_thresholds, costs, True)


# --------------------------------------------------------------------------------------------
# N stages


def _n_stage_inputs(
    stage_scores: Sequence[ArrayLike], stage_correct: Sequence[ArrayLike], costs: ArrayLike | None
) -> tuple[list[FloatArray], NDArray[np.bool_], FloatArray]:
    if len(stage_scores) < 1:
        raise ParameterError(
            "Expected scores of at least one non-final stage; got none. A cascade has at least "
            "2 stages."
        )
    if len(stage_correct) != len(stage_scores) + 1:
        raise ParameterError(
            f"Expected one correctness array per stage ({len(stage_scores) + 1}, including the "
            f"last) and one score array per non-final stage ({len(stage_scores)}); got "
            f"{len(stage_correct)} correctness arrays."
        )
    ss = [as_scores(x, f"scores of stage {k}") for k, x in enumerate(stage_scores)]
    cc = [as_correct(x, f"correctness of stage {k}") for k, x in enumerate(stage_correct)]
    check_same_samples(
        [(f"scores of stage {k}", x.shape[0]) for k, x in enumerate(ss)]
        + [(f"correctness of stage {k}", x.shape[0]) for k, x in enumerate(cc)]
    )
    c = check_costs(costs, len(cc))
    return ss, np.vstack(cc), c


def _evaluate(
    ss: Sequence[FloatArray], correct: NDArray[np.bool_], costs: FloatArray, ths: Sequence[float]
) -> tuple[float, float, float, NDArray[np.int32]]:
    stage = assign_stages(ss, list(ths))
    n = stage.shape[0]
    acc = float(np.mean(correct[stage, np.arange(n)]))
    share = float(np.mean(stage == correct.shape[0] - 1))
    rel = float(np.mean(np.cumsum(costs)[stage]) / costs[-1])
    return acc, share, rel, stage


def calibrate_cascade(
    stage_scores: Sequence[ArrayLike],
    stage_correct: Sequence[ArrayLike],
    target: Any,
    *,
    costs: ArrayLike | None = None,
    n_thresholds: int | None = None,
    label_free: bool = False,
) -> CalibrationResult:
    """Thresholds of an N-stage cascade for one :class:`Target`.

    An input stays at stage k when ``stage_scores[k] >= thresholds[k]``. ``target`` is a
    :class:`Target` or any form :meth:`Target.parse` accepts (``0.3`` is a teacher share,
    ``{"accuracy": 0.95}``, ``{"relative_cost": 0.5}``, ``{"accuracy_drop": 0.01, "delta":
    0.1}``, ``"crossing"``). For two stages the operating points are exact. For more, every
    combination of per-stage thresholds on a grid is evaluated; each stage's grid is
    :func:`cascadekit.curves.threshold_grid` of its scores with ``n_thresholds`` levels (from
    "keep all" = ``-inf`` to "keep none" = ``inf``):

    * ``teacher_share``: the combination whose last-stage share is closest to the target
      (ties: not above it, then the most accurate, then the cheapest);
    * ``accuracy``: the cheapest combination reaching it (ties: the most accurate);
    * ``relative_cost``: the most accurate within the budget (ties: the cheapest);
    * ``accuracy_drop`` (epsilon, with the target's ``delta`` and ``method``): the guarantee
      of :func:`guaranteed_threshold` along a one-dimensional path: all stages' thresholds at
      the same score-quantile level ``lambda`` of their own scores, tested from ``lambda = 1``
      (everything to the last stage) downwards with fixed-sequence testing, which is valid for
      any order fixed in advance. The drop of an input is ``correct_last -
      correct_answering_stage``. ``method="auto"`` uses ``"trinomial"``, or ``"binomial"`` when
      ``label_free`` (the loss is then binary and the exact binomial test is tighter);
    * ``crossing`` (2 stages): :func:`crossing_threshold`.

    Parameters
    ----------
    stage_scores : sequence of N-1 arrays of shape (n_samples,)
        Routing score of every non-final stage on every calibration input (higher = keep).
    stage_correct : sequence of N arrays of shape (n_samples,)
        1 where the stage's answer is right. For label-free calibration pass agreement with the
        last stage's answer and ones for the last stage, and set ``label_free=True``.
    target : Target, float, dict, str or (kind, value)
        What to calibrate for.
    costs : sequence of N floats, optional
        Cost per input of every stage; defaults to 1 each.
    n_thresholds : int, optional
        Grid size per stage (search) or of the path (guarantee). Defaults to 100 for the
        guarantee and to ``min(64, floor(4096 ** (1 / (N - 1))))`` per stage for the search.
    label_free : bool, default=False
        Correctness is agreement with the last stage (``accuracy`` then means agreement).

    Returns
    -------
    CalibrationResult
        ``thresholds`` holds N-1 floats.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = [rng.uniform(size=500), rng.uniform(size=500)]
    >>> correct = [rng.uniform(size=500) < s[0], rng.uniform(size=500) < 0.5 + s[1] / 2,
    ...            np.ones(500, dtype=bool)]
    >>> r = calibrate_cascade(s, correct, {"accuracy": 0.9}, costs=[1, 3, 10])
    >>> len(r.thresholds), r.accuracy >= 0.9
    (2, True)
    """
    tgt = Target.parse(target)
    ss, correct, c = _n_stage_inputs(stage_scores, stage_correct, costs)
    n_stages = correct.shape[0]
    teacher_accuracy = float(np.mean(correct[-1]))
    if tgt.kind == "crossing":
        if n_stages != 2:
            raise ParameterError(
                f"Expected 2 stages for the crossing threshold; got {n_stages}. Use another "
                "target for longer cascades."
            )
        t = crossing_threshold(ss[0], correct[0])
        curve = _curve_2(ss[0], correct[0], correct[1], c)
        # the crossing is a separating threshold: one of the curve's points
        i = int(np.searchsorted(curve.thresholds[:, 0], t, side="left"))
        return _result_from_curve(curve, i, ss, "crossing", teacher_accuracy, label_free)
    if tgt.kind == "accuracy_drop":
        assert tgt.value is not None
        method = _check_method(tgt.method, label_free, ss[0].shape[0], tgt.delta)
        if n_stages == 2:
            return _guarantee_2(
                ss[0],
                correct[0],
                correct[1],
                tgt.value,
                tgt.delta,
                method,
                None,
                n_thresholds or _DEFAULT_N_THRESHOLDS,
                c,
                label_free,
            )
        return _guarantee_path(
            ss,
            correct,
            c,
            tgt.value,
            tgt.delta,
            method,
            n_thresholds or _DEFAULT_N_THRESHOLDS,
            label_free,
        )
    n = ss[0].shape[0]
    if n_stages == 2:
        curve = _curve_2(ss[0], correct[0], correct[1], c)
    else:
        curve = _search_grid(ss, correct, c, n_thresholds)
    i = reduce_curve(curve, tgt, n_samples=n)
    method = {"teacher_share": "teacher_share", "accuracy": "accuracy"}.get(tgt.kind, "cost")
    return _result_from_curve(curve, i, ss, method, teacher_accuracy, label_free)


def _search_grid(
    ss: list[FloatArray], correct: NDArray[np.bool_], c: FloatArray, n_thresholds: int | None
) -> Curve:
    """Every combination of per-stage thresholds on the search grid, as one N-stage curve.

    Each stage's grid is :func:`cascadekit.curves.threshold_grid` of its scores; the
    combinations are evaluated at once by :func:`cascadekit.curves.grid_curve` (histograms, no
    routing loop).
    """
    n_stages = correct.shape[0]
    ng = n_thresholds if n_thresholds is not None else min(64, int(4096 ** (1.0 / (n_stages - 1))))
    return grid_curve(ss, list(correct), c, n_thresholds=ng, pareto=False)


def _guarantee_path(
    ss: list[FloatArray],
    correct: NDArray[np.bool_],
    c: FloatArray,
    epsilon: float,
    delta: float,
    method: str,
    n_thresholds: int,
    label_free: bool,
) -> CalibrationResult:
    eps = check_open_unit("epsilon", epsilon)
    dlt = check_open_unit("delta", delta)
    n = ss[0].shape[0]
    method = _check_method(method, label_free, n, dlt)
    # one grid per stage, level by level (threshold_grid, unique=False); the path sets every
    # stage at the same level, tested safest first: levels (ng-1)/ng, ..., 1/ng, 0
    grids = [threshold_grid(x, n_thresholds, unique=False) for x in ss]
    ng = int(n_thresholds)
    levels = np.arange(ng - 1, -1, -1, dtype=np.float64) / ng
    last = correct[-1]
    n_harm = np.empty(ng)
    n_gain = np.empty(ng)
    paths = []
    for j in range(ng):
        ths = tuple(float(g[ng - 1 - j]) for g in grids)
        paths.append(ths)
        stage = assign_stages(ss, list(ths))
        ans = correct[stage, np.arange(n)]
        n_harm[j] = np.sum(last & ~ans)
        n_gain[j] = np.sum(~last & ans)
    pv = _p_values(n_harm, n_gain, n, eps, method)
    k = _fixed_sequence(pv, dlt)
    _check_n_or_raise(n, eps, dlt, method, k)
    ths = tuple(math.inf for _ in ss) if k == 0 else paths[k - 1]
    acc, share, rel, _ = _evaluate(ss, correct, c, ths)
    return CalibrationResult(
        numerical_margin=numerical_margin(ss, ths),
        thresholds=ths,
        teacher_share=share,
        relative_cost=rel,
        accuracy=acc,
        method=method,
        epsilon=eps,
        delta=dlt,
        n_calibration=n,
        grid=tuple(float(v) for v in levels),
        p_values=tuple(float(v) for v in pv),
        n_tested=min(k + 1, ng),
        n_certified=k,
        label_free=label_free,
        teacher_accuracy=float(np.mean(last)),
    )


# --------------------------------------------------------------------------------------------
# from saved outputs (used by the CLI)


def calibrate_outputs(
    outputs: Sequence[ArrayLike],
    labels: ArrayLike | None,
    target: Any,
    *,
    costs: ArrayLike | None = None,
    score: str = "energy",
    temperature: float = 1.0,
    n_thresholds: int | None = None,
) -> CalibrationResult:
    """Calibrate a cascade from saved outputs: logits per stage (the last may be labels only).

    Scores every non-final stage with ``score`` at ``temperature`` and measures correctness
    against ``labels``, then calls :func:`calibrate_cascade` with ``target`` (a
    :class:`Target` or any form :meth:`Target.parse` accepts). With ``labels=None``
    calibration is label-free: correctness is agreement with the last stage's answers, an
    ``accuracy`` target is the share of inputs answered as the last stage answers them
    (``method="agreement"`` in the result), ``accuracy_drop`` bounds the disagreement with the
    last stage (which bounds the accuracy drop from above) and its ``method="auto"`` uses the
    binomial test, as the loss is binary (``"trinomial"`` with labels).

    Examples
    --------
    >>> student = np.array([[3.0, 0.0], [0.2, 0.0], [0.0, 2.5], [0.1, 0.0]])
    >>> teacher = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 1.0]])
    >>> r = calibrate_outputs([student, teacher], [0, 1, 1, 1], 0.5, score="margin")
    >>> r.thresholds, r.accuracy
    ((1.35,), 1.0)
    """
    from .scores import compute_score

    tgt = Target.parse(target)
    if len(outputs) < 2:
        raise ParameterError(
            f"Expected outputs of at least 2 stages; got {len(outputs)}. Pass the student's and "
            "the teacher's logits."
        )
    n_out = len(outputs)
    arrs = [
        as_stage_output(o, f"stage {k}", last=k == n_out - 1, score=score)
        for k, o in enumerate(outputs)
    ]
    check_same_samples([(f"stage {k}", a.shape[0]) for k, a in enumerate(arrs)])
    preds = [a if a.ndim == 1 else np.argmax(a, axis=1) for a in arrs]
    scs = [np.asarray(compute_score(score, a, temperature), np.float64) for a in arrs[:-1]]
    label_free = labels is None
    if labels is None:
        correct = [p == preds[-1] for p in preds]
    else:
        y = as_labels(labels, n_samples=arrs[0].shape[0])
        correct = [p == y for p in preds]
    result = calibrate_cascade(
        scs, correct, tgt, costs=costs, n_thresholds=n_thresholds, label_free=label_free
    )
    if label_free and tgt.kind == "accuracy":
        result.method = "agreement"
    return result
