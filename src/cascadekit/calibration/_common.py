"""The vocabulary shared by the calibration modules: array types, the guarantee's
method names and their check, tolerances and input validation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import (
    as_correct,
    as_scores,
    check_same_samples,
)
from ..cascade import assign_stages
from ..curves._common import ACCURACY_TOL
from ..curves.exact import relative_cost_2
from ..errors import (
    ParameterError,
    UnknownNameError,
)

FloatArray = NDArray[np.floating[Any]]
BoolArray = NDArray[np.bool_]

#: p-values available to :func:`guaranteed_threshold`.
GUARANTEE_METHODS = ("trinomial", "betting", "binomial", "hb")
#: Default size of the guarantee's threshold grid (:func:`cascadekit.curves.threshold_grid`).
DEFAULT_N_THRESHOLDS = 100


# --------------------------------------------------------------------------------------------
# validation


def two_stage(
    scores: ArrayLike, student_correct: ArrayLike, teacher_correct: ArrayLike
) -> tuple[FloatArray, BoolArray, BoolArray]:
    """Validated scores and student / teacher correctness of a 2-stage calibration."""
    s = as_scores(scores)
    cs = as_correct(student_correct, "student_correct")
    ct = as_correct(teacher_correct, "teacher_correct")
    check_same_samples([("scores", s.shape[0]), ("student_correct", cs.shape[0])])
    check_same_samples([("scores", s.shape[0]), ("teacher_correct", ct.shape[0])])
    return s, cs, ct


def rel_cost_2(share: FloatArray | float, costs: FloatArray) -> Any:
    """Relative cost of a 2-stage cascade at a teacher share
    (:func:`cascadekit.curves.exact.relative_cost_2`)."""
    return relative_cost_2(np.asarray(share), costs)


#: The curves' accuracy tolerance, used for shares and costs too.
TOL = ACCURACY_TOL


def mean_of(x: NDArray[Any]) -> float:
    """The mean of ``x`` as a float."""
    return float(np.mean(x))


#: Largest calibration size for which ``method="auto"`` picks the trinomial test (its table of
#: rejection regions takes seconds up to here and grows like ``n ** 1.5``); above it, betting.
TRINOMIAL_MAX_N = 20_000
#: Smallest risk level ``delta`` the trinomial test can reach: its p-values are read from a
#: table of critical values whose most extreme one has a size of about 1e-9.
TRINOMIAL_MIN_DELTA = 1e-8


def check_method(
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


def evaluate_thresholds(
    ss: Sequence[FloatArray], correct: NDArray[np.bool_], costs: FloatArray, ths: Sequence[float]
) -> tuple[float, float, float, NDArray[np.int32]]:
    """Accuracy, last-stage share, relative cost and stage of every input at ``ths``."""
    stage = assign_stages(ss, list(ths))
    n = stage.shape[0]
    acc = float(np.mean(correct[stage, np.arange(n)]))
    share = float(np.mean(stage == correct.shape[0] - 1))
    rel = float(np.mean(np.cumsum(costs)[stage]) / costs[-1])
    return acc, share, rel, stage
