"""Calibrating an N-stage cascade for one :class:`~cascadekit.calibration.Target`, from arrays
(:func:`calibrate_cascade`) or from saved stage outputs (:func:`calibrate_outputs`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import (
    as_correct,
    as_labels,
    as_scores,
    as_stage_output,
    check_costs,
    check_same_samples,
)
from ..curves.exact import Curve
from ..curves.grid import grid_curve
from ..errors import (
    ParameterError,
)
from ._common import DEFAULT_N_THRESHOLDS, FloatArray, check_method
from .guarantee import guarantee_path, guarantee_two_stage
from .result import CalibrationResult
from .targets import Target, crossing_threshold, curve_2, reduce_curve, result_from_curve

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
        curve = curve_2(ss[0], correct[0], correct[1], c)
        # the crossing is a separating threshold: one of the curve's points
        i = int(np.searchsorted(curve.thresholds[:, 0], t, side="left"))
        return result_from_curve(curve, i, ss, "crossing", teacher_accuracy, label_free)
    if tgt.kind == "accuracy_drop":
        assert tgt.value is not None
        method = check_method(tgt.method, label_free, ss[0].shape[0], tgt.delta)
        if n_stages == 2:
            return guarantee_two_stage(
                ss[0],
                correct[0],
                correct[1],
                tgt.value,
                tgt.delta,
                method,
                None,
                n_thresholds or DEFAULT_N_THRESHOLDS,
                c,
                label_free,
            )
        return guarantee_path(
            ss,
            correct,
            c,
            tgt.value,
            tgt.delta,
            method,
            n_thresholds or DEFAULT_N_THRESHOLDS,
            label_free,
        )
    n = ss[0].shape[0]
    if n_stages == 2:
        curve = curve_2(ss[0], correct[0], correct[1], c)
    else:
        curve = _search_grid(ss, correct, c, n_thresholds)
    i = reduce_curve(curve, tgt, n_samples=n)
    method = {"teacher_share": "teacher_share", "accuracy": "accuracy"}.get(tgt.kind, "cost")
    return result_from_curve(curve, i, ss, method, teacher_accuracy, label_free)


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
    from ..scores import compute_score

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
