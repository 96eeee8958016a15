"""Exact 2-stage curves: :class:`Curve`, :func:`cascade_curve` at every distinct threshold in
O(n log n), and the :func:`random_curve` and :func:`oracle_curve` baselines.

**Score direction:** higher = more confident = keep on this stage. An input stays on the student
when ``score >= threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._validation import (
    as_labels,
    as_logits,
    as_scores,
    check_costs,
    check_same_samples,
    encode_threshold,
)
from ..errors import InputShapeError, ParameterError
from ..scores import (
    resolution_blocks,
    separating_thresholds,
)
from ._common import BoolArray, Float64Array, IntArray, as_value_pair, direction_sign

__all__ = ["Curve", "cascade_curve", "correctness", "downsample", "oracle_curve", "random_curve"]


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


@dataclass(eq=False)
class Curve:
    """Operating points of a cascade, sorted by cost (= by teacher share for 2 stages).

    Attributes
    ----------
    thresholds : ndarray of shape (n_points, N-1)
        Threshold of each non-final stage at each point (an input stays at stage k when
        ``score_k >= thresholds[i, k]``); always two-dimensional, two stages included (one
        column). Row ``i`` is what ``Cascade(thresholds=...)`` takes and has the shape of
        :attr:`cascadekit.calibration.CalibrationResult.thresholds` and ``Cascade.thresholds_``,
        so the same code reads a 2-stage and an N-stage curve without branching on the shape;
        the 1-D array of thresholds of scikit-learn's ``precision_recall_curve`` is
        ``thresholds[:, 0]``. For 2 stages the first point's threshold is the smallest score
        (every input stays on the student) and the last is ``+inf`` (every input moves on).
        ``NaN`` where a curve has no thresholds (random and oracle baselines). The constructor
        also takes shape ``(n_points,)``: one column, or all-``NaN`` placeholders for any N.
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
        th = np.asarray(self.thresholds, dtype=np.float64)
        if self.stage_shares is not None:
            self.stage_shares = np.asarray(self.stage_shares, dtype=np.float64)
        n_cols = 1 if self.stage_shares is None else max(self.stage_shares.shape[-1] - 1, 1)
        if th.ndim == 1 and (n_cols == 1 or np.isnan(th).all()):
            th = np.repeat(th[:, None], n_cols, axis=1)
        if th.ndim != 2 or th.shape[1] != n_cols:
            raise InputShapeError(
                f"Expected thresholds of shape (n_points, {n_cols}) (one column per non-final "
                f"stage); got shape {th.shape}."
            )
        self.thresholds = th
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
        return int(self.thresholds.shape[1]) + 1

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
        multi = self.n_stages > 2
        for i in range(len(self)):
            rec: dict[str, Any] = {}
            if multi:
                rec["thresholds"] = [fix(float(t)) for t in self.thresholds[i]]
            else:
                rec["threshold"] = fix(float(self.thresholds[i, 0]))
            rec["teacher_share"] = float(self.teacher_share[i])
            rec["accuracy"] = float(self.accuracy[i])
            rec["relative_cost"] = float(self.relative_cost[i])
            if multi and self.stage_shares is not None:
                rec["stage_shares"] = [float(s) for s in self.stage_shares[i]]
            out.append(rec)
        return out


def check_curve(curve: Any) -> Curve:
    """``curve`` if it is a :class:`Curve`, else a :class:`ParameterError` saying what it is."""
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
    curve = check_curve(curve)
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


def relative_cost_2(share: Float64Array, c: Float64Array) -> Float64Array:
    """Relative cost of a 2-stage cascade at teacher share ``share``: ``(c0 + share c1) / c1``."""
    out: Float64Array = (c[0] + share * c[1]) / c[1]
    return out


def tie_blocks(s: Float64Array) -> tuple[IntArray, IntArray]:
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
    order, starts = tie_blocks(s)
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
    >>> c.thresholds[:, 0], c.teacher_share   # the two 0.2 scores form one step
    (array([-inf, 0.55,  inf]), array([0.        , 0.66666667, 1.        ]))
    >>> c.thresholds.shape   # (n_points, N-1), as for any number of stages
    (3, 1)
    """
    s = as_scores(scores, "scores")
    vs, vt = as_value_pair(value_student, value_teacher)
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
        relative_cost=relative_cost_2(share, c),
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
        relative_cost=relative_cost_2(share, c),
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
    vs, vt = as_value_pair(value_student, value_teacher)
    c = check_costs(costs, 2)
    sign = direction_sign(higher_is_better)
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
        relative_cost=relative_cost_2(share, c),
        costs=c,
        higher_is_better=higher_is_better,
    )
