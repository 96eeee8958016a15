"""Exact trade-off curves of cascades, the random and oracle baselines, and their metrics.

**Score direction:** higher = more confident = keep on this stage. An input stays at stage ``k``
when ``score >= threshold_k`` and moves on otherwise. The *teacher share* is the share of inputs
answered by the last stage; the *relative cost* is the mean cascade cost per input divided by the
cost of the last stage alone, where an input answered by stage ``k`` costs
``cumsum(costs)[k]`` (every stage it ran, EBJR's convention).

Curves work on any per-sample value, not only 0/1 correctness: ``value_student[i]`` and
``value_teacher[i]`` are what each model earns on input ``i`` (``correctness(...)`` for top-1 or
top-k accuracy, a negative error for regression, or a loss with ``higher_is_better=False``). A
curve's ``accuracy`` is the mean value of the cascade at each operating point.

* :func:`cascade_curve` -- the exact 2-stage curve at every distinct threshold, in O(n log n).
* :func:`random_curve`, :func:`oracle_curve` -- the lower and upper baselines.
* :func:`auc`, :func:`apgr`, :func:`gap_captured`, :func:`speedup_at_teacher_accuracy`, ... and
  :func:`summarize` for all of them at once; :func:`bootstrap_summary` for their intervals.
* :func:`grid_curve` -- N-stage cascades on a grid of thresholds, reduced to the Pareto front.
* :func:`pool_frontier` -- every 2- and 3-model cascade of a pool of models, their Pareto front
  against the single models and the compute saving at equal accuracy (Lebovitz et al. 2023).

Examples
--------
>>> import numpy as np
>>> from cascadekit import curves
>>> scores = np.array([0.9, 0.8, 0.4, 0.1])
>>> student_right = np.array([True, True, False, False])
>>> teacher_right = np.array([True, False, True, True])
>>> c = curves.cascade_curve(scores, student_right, teacher_right, costs=[1, 4])
>>> c.teacher_share, c.accuracy
(array([0.  , 0.25, 0.5 , 0.75, 1.  ]), array([0.5 , 0.75, 1.  , 0.75, 0.75]))
>>> c.relative_cost
array([0.25, 0.5 , 0.75, 1.  , 1.25])
>>> s = curves.summarize(c, student_right, teacher_right)
>>> s["auc"], s["random_auc"], s["oracle_auc"]
(0.78125, 0.625, 0.875)
>>> s["speedup_at_teacher_accuracy"]   # accuracy 1.0 >= 0.75 already at relative cost 0.5
2.0
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import (
    as_labels,
    as_logits,
    as_scores,
    check_costs,
    check_open_unit,
    check_same_samples,
    check_temperature,
    encode_threshold,
)
from .errors import InfeasibleTargetError, InputShapeError, ParameterError
from .scores import (
    get_score,
    resolution_blocks,
    separating_threshold_of,
    separating_thresholds,
)

__all__ = [
    "Curve",
    "FrontierPoint",
    "PoolFrontier",
    "SavingAtEqualAccuracy",
    "accuracy_at_budget",
    "apgr",
    "auc",
    "bootstrap_summary",
    "cascade_curve",
    "compute_saving_at_equal_accuracy",
    "correctness",
    "downsample",
    "gap_captured",
    "grid_curve",
    "oracle_auc",
    "oracle_curve",
    "pareto_front",
    "pool_frontier",
    "random_auc",
    "random_curve",
    "speedup_at_teacher_accuracy",
    "summarize",
    "teacher_share_at_teacher_accuracy",
    "threshold_grid",
]

Float64Array = NDArray[np.floating[Any]]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

#: Tolerance of accuracy comparisons (relative to ``max(1, |target|)``).
ACCURACY_TOL = 1e-12
#: Largest number of threshold combinations :func:`grid_curve` evaluates.
MAX_GRID_CELLS = 4_000_000


def _tol(target: float) -> float:
    return ACCURACY_TOL * max(1.0, abs(target))


# ----------------------------------------------------------------------------------------------
# per-sample values
# ----------------------------------------------------------------------------------------------


def correctness(outputs: ArrayLike, labels: ArrayLike, top_k: int = 1) -> BoolArray:
    """Per-sample top-k correctness of a model's outputs.

    Parameters
    ----------
    outputs : array-like of shape (n_samples, n_classes), or (n_samples,) of int
        Logits (or probabilities: any score increasing in the class's likelihood), or predicted
        labels (then ``top_k`` must be 1).
    labels : array-like of shape (n_samples,)
        True class indices in ``[0, n_classes)``.
    top_k : int, default=1
        An input is correct when its label is among the ``top_k`` largest outputs. Ties are
        resolved deterministically as :func:`numpy.argmax` does: among equal outputs the lower
        class index ranks first.

    Returns
    -------
    ndarray of shape (n_samples,), bool

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[3.0, 2.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    >>> correctness(z, [1, 1, 0])
    array([False, False, False])
    >>> correctness(z, [1, 1, 0], top_k=2)   # row 1: the tie 1.0 = 1.0 ranks class 0 first
    array([ True,  True, False])
    >>> correctness(np.array([2, 0, 1]), [2, 1, 1])
    array([ True, False,  True])
    """
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ParameterError(
            f"Expected top_k to be a positive integer; got {top_k!r}. Use top_k=1 for accuracy."
        )
    arr = np.asarray(outputs)
    if arr.ndim == 1:
        if top_k != 1:
            raise ParameterError(
                f"top_k={top_k} needs the model's scores for every class, of shape "
                f"(n_samples, n_classes); got 1-D predicted labels of shape {arr.shape}. Pass "
                "logits, or use top_k=1."
            )
        pred = as_labels(arr, name="predicted labels")
        y = as_labels(labels, n_samples=pred.shape[0])
        out: BoolArray = pred == y
        return out
    z = as_logits(arr, "outputs")
    n, c = z.shape
    y = as_labels(labels, n_samples=n, n_classes=c)
    if top_k > c:
        raise ParameterError(
            f"Expected top_k <= n_classes ({c}); got top_k={top_k}. With top_k >= n_classes "
            "every input is correct."
        )
    if top_k == 1:
        out = np.argmax(z, axis=1) == y
        return out
    # rank of the true class: classes with a larger output, plus equal ones with a lower index
    zy = z[np.arange(n), y][:, None]
    lower = np.arange(c)[None, :] < y[:, None]
    rank = np.count_nonzero(z > zy, axis=1) + np.count_nonzero((z == zy) & lower, axis=1)
    out = rank < top_k
    return out


def _as_values(x: ArrayLike, name: str) -> Float64Array:
    """Validate a 1-D array of per-sample values (bool, int or float; finite)."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InputShapeError(
            f"Expected {name} of shape (n_samples,): one value per sample, e.g. "
            f"correctness(logits, labels); got shape {arr.shape}."
        )
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float64)
    elif not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputShapeError(
            f"Expected {name} to be numeric or boolean; got dtype {arr.dtype}. Pass per-sample "
            "correctness (bool) or a per-sample quality value (float)."
        )
    out: Float64Array = as_scores(arr, name)
    return out


def _pair(value_student: ArrayLike, value_teacher: ArrayLike) -> tuple[Float64Array, Float64Array]:
    vs = _as_values(value_student, "value_student")
    vt = _as_values(value_teacher, "value_teacher")
    check_same_samples([("value_student", vs.shape[0]), ("value_teacher", vt.shape[0])])
    return vs, vt


def _sign(higher_is_better: bool) -> float:
    return 1.0 if higher_is_better else -1.0


# ----------------------------------------------------------------------------------------------
# the Curve object
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Curve:
    """Operating points of a cascade, sorted by cost (= by teacher share for 2 stages).

    Attributes
    ----------
    thresholds : ndarray of shape (n_points,) or (n_points, N-1)
        Threshold of each non-final stage at each point (an input stays when
        ``score >= threshold``). For 2 stages the first point's threshold is the smallest score
        (every input stays on the student) and the last is ``+inf`` (every input moves on).
        ``NaN`` where a curve has no thresholds (random and oracle baselines).
    teacher_share : ndarray of shape (n_points,)
        Share of inputs answered by the last stage.
    accuracy : ndarray of shape (n_points,)
        Mean per-sample value of the cascade (accuracy for 0/1 correctness).
    relative_cost : ndarray of shape (n_points,)
        Mean cost per input divided by the cost of the last stage alone.
    stage_shares : ndarray of shape (n_points, N), optional
        Share of inputs answered by each stage (N-stage curves; None for 2-stage curves, where
        it is ``[1 - teacher_share, teacher_share]``).
    costs : ndarray of shape (N,), optional
        The per-stage costs the curve was computed with.
    higher_is_better : bool, default=True
        False when the values are losses: then "better" means a lower ``accuracy``.

    Examples
    --------
    >>> import numpy as np
    >>> c = cascade_curve([3.0, 2.0, 1.0], [1, 0, 0], [1, 1, 0])
    >>> len(c), c.n_stages
    (4, 2)
    >>> c.to_records(json_safe=True)[-1]
    {'threshold': None, 'teacher_share': 1.0, 'accuracy': 0.666..., 'relative_cost': 2.0}
    """

    thresholds: Float64Array
    teacher_share: Float64Array
    accuracy: Float64Array
    relative_cost: Float64Array
    stage_shares: Float64Array | None = None
    costs: Float64Array | None = None
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64)
        self.teacher_share = np.asarray(self.teacher_share, dtype=np.float64)
        self.accuracy = np.asarray(self.accuracy, dtype=np.float64)
        self.relative_cost = np.asarray(self.relative_cost, dtype=np.float64)
        m = self.accuracy.shape[0]
        shapes = {
            "thresholds": self.thresholds.shape[0],
            "teacher_share": self.teacher_share.shape[0],
            "relative_cost": self.relative_cost.shape[0],
        }
        if self.stage_shares is not None:
            self.stage_shares = np.asarray(self.stage_shares, dtype=np.float64)
            shapes["stage_shares"] = self.stage_shares.shape[0]
        bad = {k: v for k, v in shapes.items() if v != m}
        if bad or self.accuracy.ndim != 1 or m == 0:
            raise InputShapeError(
                f"Expected every field of a Curve to have one row per point ({m} accuracies); "
                f"got {bad or 'no points'}."
            )

    def __len__(self) -> int:
        return int(self.accuracy.shape[0])

    @property
    def n_stages(self) -> int:
        """Number of stages of the cascade the curve describes."""
        if self.stage_shares is not None:
            return int(self.stage_shares.shape[1])
        return 2 if self.thresholds.ndim == 1 else int(self.thresholds.shape[1]) + 1

    def take(self, index: ArrayLike) -> Curve:
        """A new curve holding the points ``index`` (in that order)."""
        ix = np.asarray(index, dtype=np.intp)
        return Curve(
            thresholds=self.thresholds[ix],
            teacher_share=self.teacher_share[ix],
            accuracy=self.accuracy[ix],
            relative_cost=self.relative_cost[ix],
            stage_shares=None if self.stage_shares is None else self.stage_shares[ix],
            costs=self.costs,
            higher_is_better=self.higher_is_better,
        )

    def downsample(self, max_points: int) -> Curve:
        """At most ``max_points`` points spread evenly, both ends kept (see :func:`downsample`)."""
        return downsample(self, max_points)

    def to_records(self, json_safe: bool = False) -> list[dict[str, Any]]:
        """One dict per point: ``threshold`` (or ``thresholds`` and ``stage_shares`` for N > 2
        stages), ``teacher_share``, ``accuracy``, ``relative_cost``.

        With ``json_safe=True`` thresholds take their router-file form: ``+inf`` and ``NaN``
        become None, ``-inf`` the string ``"-inf"``.
        """

        def fix(v: float) -> float | str | None:
            if not json_safe or math.isfinite(v):
                return v
            return None if math.isnan(v) else encode_threshold(v)

        out: list[dict[str, Any]] = []
        multi = self.thresholds.ndim == 2
        for i in range(len(self)):
            rec: dict[str, Any] = {}
            if multi:
                rec["thresholds"] = [fix(float(t)) for t in self.thresholds[i]]
            else:
                rec["threshold"] = fix(float(self.thresholds[i]))
            rec["teacher_share"] = float(self.teacher_share[i])
            rec["accuracy"] = float(self.accuracy[i])
            rec["relative_cost"] = float(self.relative_cost[i])
            if multi and self.stage_shares is not None:
                rec["stage_shares"] = [float(s) for s in self.stage_shares[i]]
            out.append(rec)
        return out


def _check_curve(curve: Any) -> Curve:
    if not isinstance(curve, Curve):
        raise ParameterError(
            f"Expected a cascadekit.curves.Curve; got {type(curve).__name__}. Build one with "
            "cascade_curve(scores, value_student, value_teacher)."
        )
    return curve


def downsample(curve: Curve, max_points: int) -> Curve:
    """Keep at most ``max_points`` points, spread evenly over the teacher share, with both ends.

    N-stage curves are spread evenly over the relative cost instead. Each of ``max_points``
    evenly spaced targets picks the nearest point; duplicates collapse, so fewer points may
    remain where the curve is sparse.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> c = cascade_curve(rng.normal(size=1000), rng.random(1000) < 0.7, rng.random(1000) < 0.8)
    >>> d = downsample(c, 11)
    >>> len(d), d.teacher_share[[0, -1]]
    (11, array([0., 1.]))
    """
    curve = _check_curve(curve)
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)):
        raise ParameterError(f"Expected max_points to be an integer >= 2; got {max_points!r}.")
    if max_points < 2:
        raise ParameterError(
            f"Expected max_points >= 2 (both ends are always kept); got {max_points}."
        )
    m = len(curve)
    if m <= max_points:
        return curve.take(np.arange(m))
    x = curve.teacher_share if curve.n_stages == 2 else curve.relative_cost
    targets = np.linspace(x[0], x[-1], int(max_points))
    j = np.clip(np.searchsorted(x, targets), 1, m - 1)
    nearer_left = (targets - x[j - 1]) <= (x[j] - targets)
    pick = np.where(nearer_left, j - 1, j)
    idx = np.unique(np.concatenate([[0], pick, [m - 1]]))
    return curve.take(idx)


# ----------------------------------------------------------------------------------------------
# 2-stage curves: exact, random, oracle
# ----------------------------------------------------------------------------------------------


def _relative_cost_2(share: Float64Array, c: Float64Array) -> Float64Array:
    out: Float64Array = (c[0] + share * c[1]) / c[1]
    return out


def _tie_blocks(s: Float64Array) -> tuple[IntArray, IntArray]:
    """``order`` sorting ``s`` ascending and the start of each block of tied scores in it."""
    order = np.argsort(s)
    return order, resolution_blocks(np.take(s, order))


def _is_binary(v: Float64Array) -> bool:
    return bool(np.all((v == 0.0) | (v == 1.0)))


def _gains_binary(
    s: Float64Array, vs: Float64Array, vt: Float64Array
) -> tuple[Float64Array, IntArray, Float64Array]:
    """Each tie block's separating threshold, its start, and the gain of sending lower ones on.

    For 0/1 values the gain below a threshold is (#teacher-only-right) - (#student-only-right)
    among the inputs below it. Sorting the scores and the two small groups with ``np.sort``
    (vectorised) and counting by binary search avoids an argsort and random gathers.
    """
    ss = np.sort(s)
    starts = resolution_blocks(ss)
    u = ss[starts]  # the smallest score of each block
    net = np.zeros(u.shape[0], dtype=np.int64)
    for group, up in ((vt > vs, True), (vs > vt, False)):
        g = np.sort(s[group])
        if g.shape[0]:
            # the block of each g: the last block whose smallest score is <= g
            per_block = np.bincount(np.searchsorted(u, g, side="right") - 1, minlength=u.shape[0])
            net += per_block if up else -per_block
    gain = np.zeros(u.shape[0], dtype=np.float64)
    gain[1:] = np.cumsum(net[:-1])
    return separating_thresholds(ss, starts), starts, gain


def _gains_sorted(
    s: Float64Array, vs: Float64Array, vt: Float64Array
) -> tuple[Float64Array, IntArray, Float64Array]:
    """As :func:`_gains_binary`, for any values: argsort once and cumulative sums."""
    n = s.shape[0]
    order, starts = _tie_blocks(s)
    cum = np.empty(n + 1, dtype=np.float64)
    cum[0] = 0.0
    np.cumsum(np.take(vt - vs, order), out=cum[1:])
    return separating_thresholds(np.take(s, order), starts), starts, cum[starts]


def cascade_curve(
    scores: ArrayLike,
    value_student: ArrayLike,
    value_teacher: ArrayLike,
    costs: ArrayLike | None = None,
    *,
    higher_is_better: bool = True,
) -> Curve:
    """The exact 2-stage curve: one point per distinct score, plus the all-teacher end.

    An input stays on the student when ``score >= threshold`` (higher = more confident = keep).
    The scores are sorted once and cumulative sums give every operating point, so the cost is
    O(n log n). Tied scores move together: a block of scores equal within numerical resolution
    (:data:`~cascadekit.scores.SCORE_RTOL`) is never split, and each threshold is the midpoint
    between two neighbouring blocks (:func:`~cascadekit.scores.separating_thresholds`), as far
    from every score as the data allow, so that rounding cannot move an input across it.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        The student's routing score of every input (higher = keep on the student).
    value_student, value_teacher : array-like of shape (n_samples,)
        What each model earns on each input: bool correctness (see :func:`correctness`) or any
        float value.
    costs : array-like of shape (2,), optional
        Cost of the student and of the teacher per input; default ``(1, 1)``.
    higher_is_better : bool, default=True
        Set False when the values are losses.

    Returns
    -------
    Curve
        Sorted by teacher share ascending. ``thresholds[0]`` is ``-inf`` (share 0, every input
        on the student), ``thresholds[-1]`` is ``+inf`` (share 1). The first accuracy is
        ``mean(value_student)`` and the last ``mean(value_teacher)``, exactly.

    Examples
    --------
    >>> import numpy as np
    >>> c = cascade_curve([0.2, 0.9, 0.2], [0, 1, 1], [1, 1, 1])
    >>> c.thresholds, c.teacher_share   # the two 0.2 scores form one step
    (array([-inf, 0.55,  inf]), array([0.        , 0.66666667, 1.        ]))
    """
    s = as_scores(scores, "scores")
    vs, vt = _pair(value_student, value_teacher)
    check_same_samples([("scores", s.shape[0]), ("value_student", vs.shape[0])])
    c = check_costs(costs, 2)
    n = s.shape[0]
    # per distinct score u_j: the improvement when every input scored below u_j goes on
    gains = _gains_binary if _is_binary(vs) and _is_binary(vt) else _gains_sorted
    thr, starts, gain = gains(s, vs, vt)
    # (sum + gain) / n: exact k / n for 0/1 values, so equal accuracies compare equal
    accuracy = np.append((np.sum(vs) + gain) / n, np.mean(vt))
    accuracy[0] = np.mean(vs)
    share = np.append(starts, n) / n
    thresholds = np.append(thr, np.inf)
    return Curve(
        thresholds=thresholds,
        teacher_share=share,
        accuracy=accuracy,
        relative_cost=_relative_cost_2(share, c),
        costs=c,
        higher_is_better=higher_is_better,
    )


def random_curve(
    student_accuracy: float,
    teacher_accuracy: float,
    costs: ArrayLike | None = None,
    *,
    n_points: int = 2,
    higher_is_better: bool = True,
) -> Curve:
    """The expected curve of a router that sends a random share ``k`` to the teacher.

    ``accuracy(k) = (1 - k) * acc_S + k * acc_T``: a straight line, so two points describe it
    exactly; ``n_points`` adds evenly spaced points for plotting.

    Examples
    --------
    >>> random_curve(0.7, 0.8, n_points=3).accuracy
    array([0.7 , 0.75, 0.8 ])
    """
    a_s, a_t = float(student_accuracy), float(teacher_accuracy)
    if not (math.isfinite(a_s) and math.isfinite(a_t)):
        raise ParameterError(
            f"Expected finite accuracies; got student_accuracy={student_accuracy!r}, "
            f"teacher_accuracy={teacher_accuracy!r}."
        )
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 2:
        raise ParameterError(f"Expected n_points to be an integer >= 2; got {n_points!r}.")
    c = check_costs(costs, 2)
    share = np.linspace(0.0, 1.0, int(n_points))
    thresholds = np.full(share.shape[0], np.nan)
    thresholds[0], thresholds[-1] = -np.inf, np.inf
    acc = (1.0 - share) * a_s + share * a_t
    acc[0], acc[-1] = a_s, a_t
    return Curve(
        thresholds=thresholds,
        teacher_share=share,
        accuracy=acc,
        relative_cost=_relative_cost_2(share, c),
        costs=c,
        higher_is_better=higher_is_better,
    )


def oracle_curve(
    value_student: ArrayLike,
    value_teacher: ArrayLike,
    costs: ArrayLike | None = None,
    *,
    higher_is_better: bool = True,
) -> Curve:
    """The hindsight router: at share ``k`` it sends the inputs the teacher improves most.

    Inputs go to the teacher in decreasing order of improvement ``value_T - value_S`` (loss
    reduction when ``higher_is_better=False``), only while the improvement is positive; a share
    between two whole inputs interpolates linearly. For 0/1 correctness this is
    ``acc_S + min(k, q)`` with ``q`` the share the student gets wrong and the teacher right.
    The oracle never sends an input it would lose, so it ends at ``acc_S + q``, which can exceed
    the teacher's accuracy.

    Returns
    -------
    Curve
        The exact piecewise-linear curve (its vertices only), thresholds NaN.

    Examples
    --------
    >>> import numpy as np
    >>> c = oracle_curve([1, 0, 0, 1], [1, 1, 0, 0])   # q = 1/4
    >>> c.teacher_share, c.accuracy
    (array([0.  , 0.25, 1.  ]), array([0.5 , 0.75, 0.75]))
    """
    vs, vt = _pair(value_student, value_teacher)
    c = check_costs(costs, 2)
    sign = _sign(higher_is_better)
    n = vs.shape[0]
    g = sign * (vt - vs)
    pos = -np.sort(-g[g > 0])  # improvements, largest first
    p = pos.shape[0]
    cum = np.empty(p + 1, dtype=np.float64)
    cum[0] = 0.0
    np.cumsum(pos, out=cum[1:])
    if p:
        # vertices: the end of each block of equal improvements (the curve is straight inside)
        ends = np.flatnonzero(np.append(pos[1:] != pos[:-1], True)) + 1
    else:
        ends = np.empty(0, dtype=np.intp)
    n_teacher = np.concatenate([[0], ends, [n]] if p < n else [[0], ends]).astype(np.intp)
    accuracy = (np.sum(vs) + sign * cum[np.minimum(n_teacher, p)]) / n
    share = n_teacher / n
    return Curve(
        thresholds=np.full(share.shape[0], np.nan),
        teacher_share=share,
        accuracy=accuracy,
        relative_cost=_relative_cost_2(share, c),
        costs=c,
        higher_is_better=higher_is_better,
    )


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------


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
    >>> auc(random_curve(0.7, 0.9))
    0.8
    """
    curve = _check_curve(curve)
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
    return (a - rand) / den if abs(den) > _tol(orc) else math.nan


def _apgr_arrays(
    x: Float64Array, acc: Float64Array, acc_s: float | None = None, acc_t: float | None = None
) -> float:
    a = float(np.trapezoid(acc, x))
    width = float(x[-1] - x[0])
    a_s = float(acc[0]) if acc_s is None else float(acc_s)
    a_t = float(acc[-1]) if acc_t is None else float(acc_t)
    weak, strong = a_s * width, a_t * width
    den = strong - weak
    return (a - weak) / den if abs(den) > _tol(strong) else math.nan


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
    >>> apgr(random_curve(0.7, 0.8))
    0.5
    >>> import numpy as np   # acc_S = 0.7, acc_T = 0.8, q = 0.15: (q - q**2 / 2) / 0.1
    >>> vs, vt = np.repeat([1, 0, 1, 0], [65, 15, 5, 15]), np.repeat([1, 1, 0, 0], [65, 15, 5, 15])
    >>> apgr(oracle_curve(vs, vt), 0.7, 0.8)
    1.3875
    """
    curve = _check_curve(curve)
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
    >>> import numpy as np
    >>> vs, vt = np.array([1, 0, 0, 1]), np.array([1, 1, 0, 1])
    >>> gap_captured(cascade_curve([4, 1, 2, 3], vs, vt), vs, vt)   # ranks like the oracle
    1.0
    """
    curve = _check_curve(curve)
    vs, vt = _pair(value_student, value_teacher)
    acc_s, acc_t = _check_values_match(curve, vs, vt)
    orc = oracle_auc(vs, vt, higher_is_better=curve.higher_is_better)
    return _gap(auc(curve), random_auc(acc_s, acc_t), orc)


def _cheapest_reaching(
    acc: Float64Array, cost: Float64Array, target: float, higher_is_better: bool
) -> int:
    """Index of the cheapest point whose value reaches ``target`` (-1 when none does)."""
    sign = _sign(higher_is_better)
    ok = np.flatnonzero(sign * acc >= sign * target - _tol(target))
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
    >>> c = cascade_curve([0.9, 0.8, 0.4, 0.1], [1, 1, 0, 0], [1, 0, 1, 1])
    >>> teacher_share_at_teacher_accuracy(c)   # accuracy 0.75 = the teacher's at share 0.25
    0.25
    """
    curve = _check_curve(curve)
    return float(curve.teacher_share[_target_index(curve, teacher_accuracy)])


def speedup_at_teacher_accuracy(curve: Curve, teacher_accuracy: float | None = None) -> float:
    """``1 / relative_cost`` at the cheapest point whose accuracy reaches the teacher's.

    See :func:`teacher_share_at_teacher_accuracy` for the point chosen. Below 1 when even the
    best cascade point costs more than the teacher alone (it always exists).

    Examples
    --------
    >>> c = cascade_curve([0.9, 0.8, 0.4, 0.1], [1, 1, 0, 0], [1, 0, 1, 1], costs=[1, 10])
    >>> speedup_at_teacher_accuracy(c)   # share 0.25: relative cost (1 + 0.25 * 10) / 10
    2.857142857142857
    """
    curve = _check_curve(curve)
    return float(1.0 / curve.relative_cost[_target_index(curve, teacher_accuracy)])


def accuracy_at_budget(curve: Curve, max_relative_cost: float) -> float:
    """Best accuracy among the points whose relative cost is at most ``max_relative_cost``.

    Examples
    --------
    >>> c = cascade_curve([0.9, 0.8, 0.4, 0.1], [1, 1, 0, 0], [1, 0, 1, 1], costs=[1, 10])
    >>> accuracy_at_budget(c, 0.4), accuracy_at_budget(c, 0.6)
    (0.75, 1.0)
    """
    curve = _check_curve(curve)
    b = float(max_relative_cost)
    if not math.isfinite(b):
        raise ParameterError(f"Expected a finite max_relative_cost; got {max_relative_cost!r}.")
    ok = curve.relative_cost <= b + _tol(b)
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
    >>> vs, vt = [1, 0, 0, 1], [1, 1, 0, 1]
    >>> s = summarize(cascade_curve([4, 1, 2, 3], vs, vt), vs, vt)
    >>> s["auc"], s["apgr"], s["gap_captured"]
    (0.71875, 0.875, 1.0)
    """
    curve = _check_curve(curve)
    if costs is not None and curve.costs is not None:
        given = check_costs(costs, curve.n_stages)
        if not np.allclose(given, curve.costs, rtol=1e-12, atol=0.0):
            raise ParameterError(
                f"The curve was computed with costs {curve.costs.tolist()}, not "
                f"{given.tolist()}. Recompute the curve with the costs you mean."
            )
    vs, vt = _pair(value_student, value_teacher)
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
    n_boot: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
    higher_is_better: bool = True,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of the curve's AUC and iso-accuracy speed-up.

    Rows are resampled with replacement ``n_boot`` times. The scores are sorted once; each
    replicate reweights the sorted rows, so it costs O(n).

    Returns
    -------
    dict
        ``{"auc": (low, high), "speedup_at_teacher_accuracy": (low, high),
        "teacher_share_at_teacher_accuracy": (low, high)}``, the teacher accuracy being the
        replicate's own.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> s = rng.normal(size=500)
    >>> vs, vt = rng.random(500) < 0.5 + 0.1 * s, rng.random(500) < 0.8
    >>> ci = bootstrap_summary(s, vs, vt, costs=[1, 5], n_boot=200)
    >>> lo, hi = ci["auc"]
    >>> bool(lo < auc(cascade_curve(s, vs, vt)) < hi)
    True
    """
    s = as_scores(scores, "scores")
    vs, vt = _pair(value_student, value_teacher)
    check_same_samples([("scores", s.shape[0]), ("value_student", vs.shape[0])])
    c = check_costs(costs, 2)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ParameterError(
            f"Expected n_boot to be a positive integer; got {n_boot!r}. 1000 is typical."
        )
    conf = check_open_unit("confidence", confidence)
    n = s.shape[0]
    order, starts = _tie_blocks(s)
    d = (vt - vs)[order]
    vs_sorted = vs[order]
    rng = np.random.default_rng(seed)
    stats = np.empty((int(n_boot), 3), dtype=np.float64)
    cw = np.empty(n + 1, dtype=np.float64)
    gain = np.empty(n + 1, dtype=np.float64)
    cw[0] = gain[0] = 0.0
    pos = np.append(starts, n)
    for b in range(int(n_boot)):
        w = np.bincount(rng.integers(0, n, n), minlength=n)[order].astype(np.float64)
        np.cumsum(w, out=cw[1:])
        np.cumsum(w * d, out=gain[1:])
        share = cw[pos] / n
        acc = (np.dot(w, vs_sorted) + gain[pos]) / n
        rc = _relative_cost_2(share, c)
        i = _cheapest_reaching(acc, rc, float(acc[-1]), higher_is_better)
        stats[b] = (np.trapezoid(acc, share), 1.0 / rc[i], share[i])
    lo, hi = np.quantile(stats, [(1 - conf) / 2, 1 - (1 - conf) / 2], axis=0)
    names = ("auc", "speedup_at_teacher_accuracy", "teacher_share_at_teacher_accuracy")
    return {nm: (float(lo[j]), float(hi[j])) for j, nm in enumerate(names)}


# ----------------------------------------------------------------------------------------------
# Pareto fronts and N-stage grid curves
# ----------------------------------------------------------------------------------------------


def pareto_front(
    costs: ArrayLike,
    accuracies: ArrayLike,
    *,
    higher_is_better: bool = True,
    atol: float = ACCURACY_TOL,
) -> IntArray:
    """Indices of the Pareto-optimal points, sorted by cost ascending.

    Points are ordered by cost ascending (then best accuracy first, then index); a point is kept
    when its accuracy exceeds that of every point before it by more than ``atol``. So a point is
    dropped when another one costs no more and is at least as good (the first of exact
    duplicates survives).

    Examples
    --------
    >>> pareto_front([1, 2, 2, 3, 4], [0.5, 0.7, 0.6, 0.7, 0.9])
    array([0, 1, 4])
    """
    c = np.asarray(costs, dtype=np.float64)
    a = np.asarray(accuracies, dtype=np.float64)
    if c.ndim != 1 or a.ndim != 1 or c.shape[0] != a.shape[0]:
        raise InputShapeError(
            f"Expected costs and accuracies as two 1-D arrays of equal length; got shapes "
            f"{c.shape} and {a.shape}."
        )
    if c.shape[0] == 0:
        return np.empty(0, dtype=np.intp)
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(a))):
        raise ParameterError("Expected finite costs and accuracies; got NaN or inf.")
    sa = _sign(higher_is_better) * a
    order = np.lexsort((np.arange(c.shape[0]), -sa, c))
    sorted_acc = sa[order]
    best_before = np.maximum.accumulate(np.concatenate([[-np.inf], sorted_acc[:-1]]))
    keep = sorted_acc > best_before + atol
    keep[0] = True
    out: IntArray = order[keep]
    return out


def threshold_grid(scores: ArrayLike, grid_size: int = 50) -> Float64Array:
    """Candidate thresholds for one stage: ``-inf``, ``grid_size`` quantile steps, ``+inf``.

    The quantiles (levels evenly spaced in ``[0, 1]``) pick score values; each becomes the
    threshold that keeps its block of tied scores and every higher one, placed midway to the
    next lower block (:func:`~cascadekit.scores.separating_thresholds`), so no threshold sits
    on a score. Duplicates are removed and the result is sorted ascending. ``-inf`` keeps every
    input at the stage, ``+inf`` sends every input on.

    Examples
    --------
    >>> threshold_grid([5.0, 1.0, 3.0, 3.0], grid_size=3)
    array([-inf,   2.,   4.,  inf])
    """
    s = as_scores(scores, "scores")
    if isinstance(grid_size, bool) or not isinstance(grid_size, (int, np.integer)):
        raise ParameterError(f"Expected grid_size to be an integer >= 2; got {grid_size!r}.")
    if grid_size < 2:
        raise ParameterError(f"Expected grid_size >= 2; got {grid_size}. Try grid_size=50.")
    q = np.quantile(s, np.linspace(0.0, 1.0, int(grid_size)), method="lower")
    out: Float64Array = np.unique(
        np.concatenate([[-np.inf], separating_threshold_of(s, q), [np.inf]])
    )
    return out


def _grid_sums(
    bins: Sequence[IntArray], lens: Sequence[int], values: Sequence[Float64Array]
) -> tuple[Float64Array, Float64Array]:
    """Per stage, the count and value sum of the inputs it answers, for every grid cell.

    ``bins[k][i]`` is how many thresholds of stage ``k`` are ``<= score_k[i]``; input ``i`` stays
    at stage ``k`` under threshold index ``j`` iff ``j < bins[k][i]``. Returns arrays of shape
    ``(N, *lens)``.
    """
    n_scores = len(lens)
    full = tuple(lens)
    counts = np.zeros((n_scores + 1, *full), dtype=np.float64)
    sums = np.zeros((n_scores + 1, *full), dtype=np.float64)
    for k in range(n_scores + 1):
        dims = min(k + 1, n_scores)  # score dimensions that decide stage k
        shape = tuple(lens[m] + 1 for m in range(dims))
        flat = np.ravel_multi_index(tuple(bins[m] for m in range(dims)), shape)
        size = int(np.prod(shape))
        for out, w in ((counts, None), (sums, values[k])):
            h = np.bincount(flat, weights=w, minlength=size).astype(np.float64).reshape(shape)
            for m in range(dims):
                h = np.cumsum(h, axis=m)
                if m < k:  # moved on from stage m: bins <= j
                    h = np.take(h, np.arange(lens[m]), axis=m)
                else:  # stays at stage k: bins > j
                    total = np.take(h, [lens[m]], axis=m)
                    h = total - np.take(h, np.arange(lens[m]), axis=m)
            out[k] = h.reshape(h.shape + (1,) * (n_scores - dims))
    return counts, sums


def grid_curve(
    stage_scores: Sequence[ArrayLike],
    stage_values: Sequence[ArrayLike],
    costs: ArrayLike | None = None,
    *,
    grid_size: int = 50,
    higher_is_better: bool = True,
    pareto: bool = True,
) -> Curve:
    """Curve of an N-stage cascade over a grid of thresholds, reduced to its Pareto front.

    Each non-final stage gets the thresholds :func:`threshold_grid` (``-inf``, ``grid_size``
    quantiles of its scores, ``+inf``); every combination is evaluated exactly (the same routing
    as :func:`cascadekit.cascade.assign_stages`) from one multi-dimensional histogram per stage
    and cumulative sums, in O(n N + N G^(N-1)) for G thresholds per stage.

    Parameters
    ----------
    stage_scores : sequence of N-1 arrays of shape (n_samples,)
        Routing score of each non-final stage (higher = keep at that stage).
    stage_values : sequence of N arrays of shape (n_samples,)
        Per-sample value (e.g. correctness) of each stage's answer.
    costs : array-like of shape (N,), optional
        Cost per input of each stage; default all 1.
    grid_size : int, default=50
        Quantiles per stage.
    higher_is_better : bool, default=True
    pareto : bool, default=True
        Keep only the Pareto set of ``(relative_cost, accuracy)``, plus the all-first-stage and
        the all-last-stage points. With False every grid point is returned.

    Returns
    -------
    Curve
        Sorted by relative cost; the first point is the all-first-stage one, the last the
        all-last-stage one (accuracies exactly the means of the first and last values).
        ``thresholds`` has shape (n_points, N-1), ``stage_shares`` (n_points, N).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> s0, s1 = rng.random(200), rng.random(200)
    >>> values = [s0 > 0.3, s1 > 0.2, rng.random(200) < 0.9]
    >>> c = grid_curve([s0, s1], values, costs=[1, 2, 4], grid_size=20)
    >>> c.stage_shares[0], c.stage_shares[-1]
    (array([1., 0., 0.]), array([0., 0., 1.]))
    >>> bool(np.all(np.diff(c.accuracy[:-1]) > 0))
    True
    """
    if isinstance(stage_scores, np.ndarray) and stage_scores.ndim == 1:
        stage_scores = [stage_scores]
    scores_l = list(stage_scores)
    values_l = list(stage_values)
    n_stages = len(values_l)
    if n_stages < 2 or len(scores_l) != n_stages - 1:
        raise ParameterError(
            f"Expected N >= 2 stage_values and N-1 stage_scores (the last stage needs no "
            f"score); got {len(values_l)} values and {len(scores_l)} scores."
        )
    ss = [as_scores(s, f"stage_scores[{k}]") for k, s in enumerate(scores_l)]
    vv = [_as_values(v, f"stage_values[{k}]") for k, v in enumerate(values_l)]
    check_same_samples(
        [(f"stage_scores[{k}]", s.shape[0]) for k, s in enumerate(ss)]
        + [(f"stage_values[{k}]", v.shape[0]) for k, v in enumerate(vv)]
    )
    c = check_costs(costs, n_stages)
    grids = [threshold_grid(s, grid_size) for s in ss]
    lens = [g.shape[0] for g in grids]
    cells = int(np.prod(lens))
    if cells > MAX_GRID_CELLS:
        raise ParameterError(
            f"A grid of {' x '.join(map(str, lens))} = {cells:,} threshold combinations is "
            f"too large (limit {MAX_GRID_CELLS:,}). Lower grid_size."
        )
    n = ss[0].shape[0]
    bins = [np.searchsorted(g, s, side="right") for g, s in zip(grids, ss, strict=True)]
    counts, sums = _grid_sums(bins, lens, vv)
    shares = counts.reshape(n_stages, cells).T / n
    acc = sums.reshape(n_stages, cells).sum(axis=0) / n
    rel = shares @ np.cumsum(c) / c[-1]
    first, last = 0, cells - 1  # all thresholds -inf / all +inf
    if pareto:
        idx = pareto_front(rel, acc, higher_is_better=higher_is_better)
        idx = np.unique(np.concatenate([[first], idx, [last]]))
    else:
        idx = np.arange(cells)
    sign = _sign(higher_is_better)
    idx = idx[np.lexsort((sign * acc[idx], idx == last, idx != first, rel[idx]))]
    mesh = np.stack(np.meshgrid(*grids, indexing="ij"), axis=-1).reshape(cells, -1)
    accuracy = acc[idx]
    accuracy[idx == first] = float(np.mean(vv[0]))
    accuracy[idx == last] = float(np.mean(vv[-1]))
    sh = shares[idx]
    return Curve(
        thresholds=mesh[idx, 0] if n_stages == 2 else mesh[idx],
        teacher_share=sh[:, -1].copy(),
        accuracy=accuracy,
        relative_cost=rel[idx],
        stage_shares=sh,
        costs=c,
        higher_is_better=higher_is_better,
    )


# ----------------------------------------------------------------------------------------------
# pool analysis (Lebovitz et al., "Efficient inference with model cascades", TMLR 2023)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontierPoint:
    """One operating point of a model pool: a single model or a cascade of models.

    Attributes
    ----------
    models : tuple of str
        The models run, cheapest first (one name for a single model).
    thresholds : tuple of float
        One threshold per non-final model (empty for a single model).
    cost : float
        Mean absolute cost per input (the sum of the costs of the models run).
    accuracy : float
    stage_shares : tuple of float
        Share of inputs answered by each model.
    """

    models: tuple[str, ...]
    thresholds: tuple[float, ...]
    cost: float
    accuracy: float
    stage_shares: tuple[float, ...]

    def to_dict(self, json_safe: bool = False) -> dict[str, Any]:
        """The point as a plain dict (non-finite thresholds as None when ``json_safe``)."""
        ths = [None if json_safe and not math.isfinite(t) else t for t in self.thresholds]
        return {
            "models": list(self.models),
            "thresholds": ths,
            "cost": self.cost,
            "accuracy": self.accuracy,
            "stage_shares": list(self.stage_shares),
        }


@dataclass(eq=False)
class SavingAtEqualAccuracy:
    """Compute saving of a cascade front over a reference front at equal accuracy.

    Attributes
    ----------
    levels : ndarray
        Accuracy levels, evenly spaced over the reference front's range.
    ratio : ndarray
        ``C_ref(a) / C_cascade(a)`` at each level, with ``C_X(a) = min{cost : acc >= a}``.
    mean, max : float
        Mean and maximum of ``ratio``.
    per_model : dict
        For each reference front point (by name): its cost over the cheapest cascade cost
        reaching its accuracy.
    """

    levels: Float64Array
    ratio: Float64Array
    mean: float
    max: float
    per_model: dict[str, float] = field(default_factory=dict)


def _front_arrays(costs: ArrayLike, accs: ArrayLike, name: str) -> tuple[Float64Array, ...]:
    c = np.asarray(costs, dtype=np.float64)
    a = np.asarray(accs, dtype=np.float64)
    if c.ndim != 1 or c.shape != a.shape or c.shape[0] == 0:
        raise InputShapeError(
            f"Expected the {name} costs and accuracies as non-empty 1-D arrays of equal length; "
            f"got shapes {c.shape} and {a.shape}."
        )
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(a))) or np.any(c <= 0):
        raise ParameterError(
            f"Expected positive finite costs and finite accuracies on the {name} front."
        )
    idx = pareto_front(c, a)
    return c[idx], a[idx]


def _min_cost_reaching(front_c: Float64Array, front_a: Float64Array, a: Float64Array) -> Any:
    """Step interpolation: cost of the cheapest front point with accuracy >= a (inf if none)."""
    j = np.searchsorted(front_a, a - ACCURACY_TOL * np.maximum(1.0, np.abs(a)), side="left")
    padded = np.append(front_c, np.inf)
    return padded[j]


def compute_saving_at_equal_accuracy(
    reference_costs: ArrayLike,
    reference_accuracies: ArrayLike,
    cascade_costs: ArrayLike,
    cascade_accuracies: ArrayLike,
    *,
    n_levels: int = 1001,
    names: Sequence[str] | None = None,
) -> SavingAtEqualAccuracy:
    """How much cheaper the cascade front is than the reference front at equal accuracy.

    Both inputs are reduced to their Pareto fronts. For ``n_levels`` accuracy levels ``a``
    evenly spaced between the lowest and highest accuracy of the reference front,
    ``r(a) = C_ref(a) / C_cascade(a)`` with ``C_X(a) = min{cost : acc >= a}`` (step
    interpolation). ``names`` labels the reference points for ``per_model``.

    Examples
    --------
    >>> s = compute_saving_at_equal_accuracy([1, 10], [0.7, 0.9], [1, 4, 10], [0.7, 0.9, 0.91])
    >>> round(s.mean, 2), s.max, s.per_model
    (2.5, 2.5, {'0': 1.0, '1': 2.5})
    """
    if isinstance(n_levels, bool) or not isinstance(n_levels, (int, np.integer)) or n_levels < 2:
        raise ParameterError(f"Expected n_levels to be an integer >= 2; got {n_levels!r}.")
    rc_all = np.asarray(reference_costs, dtype=np.float64)
    if names is not None and len(names) != rc_all.reshape(-1).shape[0]:
        raise ParameterError(
            f"Expected one name per reference point ({rc_all.size}); got {len(names)}."
        )
    ref_c, ref_a = _front_arrays(reference_costs, reference_accuracies, "reference")
    cas_c, cas_a = _front_arrays(cascade_costs, cascade_accuracies, "cascade")
    if cas_a[-1] < ref_a[-1] - _tol(float(ref_a[-1])):
        raise InfeasibleTargetError(
            f"The cascade front reaches accuracy {cas_a[-1]:.6g} at most, below the reference "
            f"front's {ref_a[-1]:.6g}. Include the single models among the cascade points.",
            best=float(cas_a[-1]),
        )
    levels = np.linspace(ref_a[0], ref_a[-1], int(n_levels))
    ratio = _min_cost_reaching(ref_c, ref_a, levels) / _min_cost_reaching(cas_c, cas_a, levels)
    per_model: dict[str, float] = {}
    ref_idx = pareto_front(rc_all, np.asarray(reference_accuracies, dtype=np.float64))
    labels = [str(i) for i in range(rc_all.size)] if names is None else list(names)
    for i in ref_idx:
        a_i = np.asarray([float(np.asarray(reference_accuracies, dtype=np.float64)[i])])
        per_model[labels[i]] = float(rc_all[i] / _min_cost_reaching(cas_c, cas_a, a_i)[0])
    return SavingAtEqualAccuracy(
        levels=levels,
        ratio=ratio,
        mean=float(np.mean(ratio)),
        max=float(np.max(ratio)),
        per_model=per_model,
    )


@dataclass(eq=False)
class PoolFrontier:
    """Single models and every cascade of a pool, their Pareto fronts and the saving.

    Attributes
    ----------
    names : list of str
        Model names sorted by cost (cheapest first); the order of every cascade.
    costs, accuracies : ndarray
        Per-model absolute cost and accuracy, in that order.
    singles : list of FrontierPoint
        Every single model.
    curves : dict
        ``curves[(name_i, name_j, ...)]``: each cascade's :class:`Curve` (costs relative to its
        last model; absolute cost = ``relative_cost * curve.costs[-1]``). Exact for 2 models,
        the Pareto set of a threshold grid for 3 or more.
    single_front : list of FrontierPoint
        Pareto front of the single models, by cost.
    cascade_front : list of FrontierPoint
        Pareto front of all cascade points together with the single models, by cost.
    saving : SavingAtEqualAccuracy
        :func:`compute_saving_at_equal_accuracy` of the cascade front over the single front.
    """

    names: list[str]
    costs: Float64Array
    accuracies: Float64Array
    singles: list[FrontierPoint]
    curves: dict[tuple[str, ...], Curve]
    single_front: list[FrontierPoint]
    cascade_front: list[FrontierPoint]
    saving: SavingAtEqualAccuracy

    def compute_saving_at_equal_accuracy(self, n_levels: int = 1001) -> SavingAtEqualAccuracy:
        """Recompute :attr:`saving` on ``n_levels`` accuracy levels."""
        return compute_saving_at_equal_accuracy(
            self.costs,
            self.accuracies,
            [p.cost for p in self.cascade_front],
            [p.accuracy for p in self.cascade_front],
            n_levels=n_levels,
            names=self.names,
        )

    def to_dict(self, json_safe: bool = False) -> dict[str, Any]:
        """Plain-dict summary: singles, both fronts and the saving (curves left out)."""
        return {
            "singles": [p.to_dict(json_safe) for p in self.singles],
            "single_front": [p.to_dict(json_safe) for p in self.single_front],
            "cascade_front": [p.to_dict(json_safe) for p in self.cascade_front],
            "saving": {
                "mean": self.saving.mean,
                "max": self.saving.max,
                "per_model": dict(self.saving.per_model),
            },
        }


def pool_frontier(
    outputs: Sequence[ArrayLike],
    labels: ArrayLike,
    costs: ArrayLike,
    names: Sequence[str] | None = None,
    *,
    score: str | Callable[..., Any] = "max_softmax",
    temperature: float = 1.0,
    max_depth: int = 3,
    grid_size: int = 50,
    top_k: int = 1,
    n_levels: int = 1001,
) -> PoolFrontier:
    """Every cascade of a pool of models against the single models (Lebovitz et al. 2023).

    Models are sorted by cost. Every 2-model cascade ``i < j`` gets its exact curve
    (:func:`cascade_curve`), every cascade of 3 (up to ``max_depth``) models a grid curve
    (:func:`grid_curve`). An input stays at a model when its ``score`` (higher = more confident
    = keep) is ``>= threshold``. A cascade's cost per input is the sum of the costs of the
    models it ran.

    Parameters
    ----------
    outputs : sequence of K arrays of shape (n_samples, n_classes)
        Logits of every model on the same inputs.
    labels : array-like of shape (n_samples,)
    costs : array-like of shape (K,)
        Absolute cost per input of each model (e.g. FLOPs), positive.
    names : sequence of K str, optional
        Default ``model0``, ``model1``, ...
    score : str or callable, default="max_softmax"
        Routing score (see :mod:`cascadekit.scores`).
    temperature : float, default=1.0
    max_depth : int, default=3
        Longest cascade considered (1 = single models only); capped at the number of models.
    grid_size : int, default=50
        Thresholds per stage for cascades of 3 or more models.
    top_k : int, default=1
        Correctness is top-k.
    n_levels : int, default=1001
        Accuracy levels of the saving.

    Returns
    -------
    PoolFrontier

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 300)
    >>> outs = [np.eye(3)[y] * k + rng.normal(size=(300, 3)) for k in (0.5, 1.5, 3.0)]
    >>> pf = pool_frontier(outs, y, costs=[1, 4, 16], names=["s", "m", "l"])
    >>> sorted(pf.curves)
    [('m', 'l'), ('s', 'l'), ('s', 'm'), ('s', 'm', 'l')]
    >>> pf.cascade_front[0].models, pf.single_front[-1].models
    (('s',), ('l',))
    >>> pf.saving.mean >= 1.0
    True
    """
    outs = list(outputs)
    k_models = len(outs)
    if k_models < 2:
        raise ParameterError(
            f"Expected outputs of at least 2 models; got {k_models}. A pool needs a choice."
        )
    cost_arr = np.asarray(costs, dtype=np.float64).reshape(-1)
    if cost_arr.shape[0] != k_models or not np.all(np.isfinite(cost_arr)) or np.any(cost_arr <= 0):
        raise ParameterError(
            f"Expected one positive, finite cost per model ({k_models}); got "
            f"{cost_arr.tolist()}. Pass each model's FLOPs (or seconds) per input."
        )
    nm = [f"model{i}" for i in range(k_models)] if names is None else [str(x) for x in names]
    if len(nm) != k_models or len(set(nm)) != k_models:
        raise ParameterError(f"Expected {k_models} distinct model names; got {list(names or [])}.")
    if isinstance(max_depth, bool) or not isinstance(max_depth, (int, np.integer)):
        raise ParameterError(f"Expected max_depth to be an integer; got {max_depth!r}.")
    if max_depth < 1:
        raise ParameterError(
            f"Expected max_depth >= 1 (1 = single models only); got {max_depth}. Lebovitz et "
            "al. find little gain beyond 3."
        )
    max_depth = min(int(max_depth), k_models)
    check_temperature(temperature)
    score_fn = get_score(score)
    logits = [as_logits(o, f"outputs[{i}]") for i, o in enumerate(outs)]
    check_same_samples([(f"outputs[{i}]", z.shape[0]) for i, z in enumerate(logits)])
    y = as_labels(labels, n_samples=logits[0].shape[0])

    order = np.argsort(cost_arr, kind="stable")
    logits = [logits[i] for i in order]
    cost_arr = cost_arr[order]
    nm = [nm[i] for i in order]
    values = [correctness(z, y, top_k=top_k).astype(np.float64) for z in logits]
    accs = np.array([float(np.mean(v)) for v in values])
    stage_scores = [np.asarray(score_fn(z, temperature), dtype=np.float64) for z in logits[:-1]]

    singles = [
        FrontierPoint((nm[i],), (), float(cost_arr[i]), float(accs[i]), (1.0,))
        for i in range(k_models)
    ]
    curves: dict[tuple[str, ...], Curve] = {}
    # candidate points: singles first, so that a duplicate point keeps its single-model label
    cand_cost = [cost_arr]
    cand_acc = [accs]
    cand_src: list[tuple[tuple[int, ...], Curve | None]] = [((i,), None) for i in range(k_models)]
    cand_row = [np.arange(k_models)]
    cand_id = [np.arange(k_models)]
    for depth in range(2, int(max_depth) + 1):
        for combo in itertools.combinations(range(k_models), depth):
            cc = cost_arr[list(combo)]
            if depth == 2:
                i, j = combo
                curve = cascade_curve(stage_scores[i], values[i], values[j], costs=cc)
            else:
                curve = grid_curve(
                    [stage_scores[m] for m in combo[:-1]],
                    [values[m] for m in combo],
                    costs=cc,
                    grid_size=grid_size,
                )
            curves[tuple(nm[m] for m in combo)] = curve
            src = len(cand_src)
            cand_src.append((combo, curve))
            cand_cost.append(curve.relative_cost * cc[-1])
            cand_acc.append(curve.accuracy)
            cand_row.append(np.arange(len(curve)))
            cand_id.append(np.full(len(curve), src))

    all_cost = np.concatenate(cand_cost)
    all_acc = np.concatenate(cand_acc)
    all_row = np.concatenate(cand_row)
    all_id = np.concatenate(cand_id)

    def point(ix: int) -> FrontierPoint:
        combo, curve = cand_src[int(all_id[ix])]
        if curve is None:
            return singles[combo[0]]
        r = int(all_row[ix])
        th = np.atleast_1d(curve.thresholds[r])
        shares = (
            curve.stage_shares[r]
            if curve.stage_shares is not None
            else np.array([1.0 - curve.teacher_share[r], curve.teacher_share[r]])
        )
        return FrontierPoint(
            models=tuple(nm[m] for m in combo),
            thresholds=tuple(float(t) for t in th),
            cost=float(all_cost[ix]),
            accuracy=float(all_acc[ix]),
            stage_shares=tuple(float(s) for s in shares),
        )

    single_front = [singles[int(i)] for i in pareto_front(cost_arr, accs)]
    cascade_front = [point(int(i)) for i in pareto_front(all_cost, all_acc)]
    saving = compute_saving_at_equal_accuracy(
        cost_arr,
        accs,
        [p.cost for p in cascade_front],
        [p.accuracy for p in cascade_front],
        n_levels=n_levels,
        names=nm,
    )
    return PoolFrontier(
        names=nm,
        costs=cost_arr,
        accuracies=accs,
        singles=singles,
        curves=curves,
        single_front=single_front,
        cascade_front=cascade_front,
        saving=saving,
    )
