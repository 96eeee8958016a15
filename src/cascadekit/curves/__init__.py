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

from .exact import Curve, cascade_curve, correctness, downsample, oracle_curve, random_curve
from .frontier import (
    FrontierPoint,
    PoolFrontier,
    SavingAtEqualAccuracy,
    compute_saving_at_equal_accuracy,
    pool_frontier,
)
from .grid import grid_curve, pareto_front, threshold_grid
from .metrics import (
    accuracy_at_budget,
    apgr,
    auc,
    bootstrap_summary,
    gap_captured,
    oracle_auc,
    random_auc,
    speedup_at_teacher_accuracy,
    summarize,
    teacher_share_at_teacher_accuracy,
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
