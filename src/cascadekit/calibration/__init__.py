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

from ._common import GUARANTEE_METHODS
from ._common import TRINOMIAL_MAX_N as TRINOMIAL_MAX_N  # documented limits of method="auto"
from ._common import TRINOMIAL_MIN_DELTA as TRINOMIAL_MIN_DELTA
from .calibrate import calibrate_cascade, calibrate_outputs
from .guarantee import (
    guaranteed_threshold,
    guaranteed_threshold_label_free,
    min_calibration_size,
)
from .result import CalibrationResult
from .targets import (
    TARGET_KINDS,
    Target,
    crossing_threshold,
    parse_target,
    reduce_curve,
    threshold_for_accuracy,
    threshold_for_cost,
    threshold_for_teacher_share,
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
