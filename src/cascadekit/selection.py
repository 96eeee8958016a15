"""Compare routing scores side by side and select one, temperature included.

Which score routes best depends on the pair of models, so cascadekit measures it instead of
assuming it: every score of :mod:`cascadekit.scores` is tuned (its temperature, for the scores
whose ranking depends on it) and compared on the same data by a criterion read off its exact
curve (:func:`cascadekit.curves.cascade_curve`):

* ``"gap_captured"``: the share of the random-to-oracle gap the curve captures;
* ``"speedup"``: the speed-up at the teacher's accuracy (depends on the costs).

Higher is better for both. Ties go to the earlier candidate (the order of ``scores``, and for
one score the lower temperature). Choose on a *select* split: thresholds and guarantees are
then calibrated on other data, as a guarantee computed on data that chose the score is void.

Examples
--------
>>> import numpy as np
>>> from cascadekit import selection
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 3, 600)
>>> z = rng.normal(size=(600, 3)); z[np.arange(600), y] += 1.5
>>> cs, ct = z.argmax(1) == y, rng.random(600) < 0.95
>>> best = selection.select_score(z, cs, ct)
>>> best.score in selection.SCORES, best.temperature in selection.TEMPERATURES
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import as_logits, check_costs
from .curves import cascade_curve, gap_captured, speedup_at_teacher_accuracy
from .curves._common import as_value_pair
from .errors import InfeasibleTargetError, ParameterError, UnknownNameError
from .scores import available_scores, compute_score

__all__ = [
    "CRITERIA",
    "SCORES",
    "TEMPERATURES",
    "TEMPERATURE_SCORES",
    "ScoreChoice",
    "baselines",
    "compare_scores",
    "criterion_value",
    "select_score",
    "tune_temperature",
]

#: The one temperature grid every score choice searches: ``2 ** (k / 2)`` for k = -4..6, i.e.
#: 0.25 to 8 in steps of sqrt(2), with 1 exactly on it.
TEMPERATURES: tuple[float, ...] = tuple(float(2.0 ** (k / 2)) for k in range(-4, 7))
#: The scores whose ranking depends on the temperature (the others are tuned at ``T = 1``).
TEMPERATURE_SCORES = ("energy", "max_softmax", "entropy")
#: The scores compared by default, in this order.
SCORES = ("energy", "max_softmax", "margin", "entropy", "max_logit")
#: What scores are compared by (higher is better for both).
CRITERIA = ("gap_captured", "speedup")

Float64Array = NDArray[np.float64]


@dataclass(frozen=True)
class ScoreChoice:
    """One candidate router: a score at a temperature, and its criterion on the data it was
    chosen on.

    Attributes
    ----------
    score : str
        Score name (see :mod:`cascadekit.scores`).
    temperature : float
    value : float
        The criterion of this score at this temperature on the choosing data.
    criterion : str
    """

    score: str
    temperature: float
    value: float
    criterion: str = "gap_captured"

    def scores(self, logits: ArrayLike) -> Float64Array:
        """This router's routing score of ``logits`` (higher = keep on the student)."""
        return np.asarray(compute_score(self.score, logits, self.temperature), dtype=np.float64)


def _check_criterion(criterion: str) -> str:
    if criterion not in CRITERIA:
        raise ParameterError(
            f"Expected criterion in {', '.join(CRITERIA)}; got {criterion!r}. 'gap_captured' "
            "compares the share of the random-to-oracle gap, 'speedup' the speed-up at the "
            "teacher's accuracy."
        )
    return criterion


def criterion_value(
    scores: ArrayLike,
    student_correct: ArrayLike,
    teacher_correct: ArrayLike,
    costs: ArrayLike | None = None,
    criterion: str = "gap_captured",
) -> float:
    """The criterion of one routing score, read off its exact curve.

    Examples
    --------
    >>> criterion_value([0.9, 0.8, 0.4, 0.1], [1, 1, 0, 0], [1, 0, 1, 1])   # 1 = the oracle
    0.625
    """
    _check_criterion(criterion)
    curve = cascade_curve(scores, student_correct, teacher_correct, costs)
    if criterion == "gap_captured":
        return float(gap_captured(curve, student_correct, teacher_correct))
    try:
        return float(speedup_at_teacher_accuracy(curve))
    except InfeasibleTargetError:  # pragma: no cover - the all-teacher point always qualifies
        return math.nan


def tune_temperature(
    score: str,
    logits: ArrayLike,
    student_correct: ArrayLike,
    teacher_correct: ArrayLike,
    costs: ArrayLike | None = None,
    *,
    criterion: str = "gap_captured",
    temperatures: Sequence[float] = TEMPERATURES,
) -> ScoreChoice:
    """The temperature of ``score`` with the best criterion (the first best; non-finite values
    never win). Scores outside :data:`TEMPERATURE_SCORES` are measured at ``T = 1`` only.

    Examples
    --------
    >>> z = np.array([[2.0, 0.0], [0.3, 0.0], [0.0, 1.0], [0.1, 0.0]])
    >>> tune_temperature("margin", z, [1, 0, 1, 0], [1, 1, 1, 1]).temperature
    1.0
    """
    _check_criterion(criterion)
    if score not in available_scores():
        raise UnknownNameError(
            f"Unknown score {score!r}; expected one of {sorted(available_scores())}."
        )
    z = as_logits(logits, "student logits")
    temps = [float(t) for t in temperatures] if score in TEMPERATURE_SCORES else [1.0]
    if not temps:
        raise ParameterError("Expected at least one temperature; got an empty sequence.")
    best_t, best_v = 1.0, -math.inf
    for t in temps:
        s = np.asarray(compute_score(score, z, t), dtype=np.float64)
        v = criterion_value(s, student_correct, teacher_correct, costs, criterion)
        if math.isfinite(v) and v > best_v:
            best_t, best_v = t, v
    if not math.isfinite(best_v):  # nothing finite: report the criterion at T = 1
        best_v = criterion_value(
            compute_score(score, z, 1.0), student_correct, teacher_correct, costs, criterion
        )
    return ScoreChoice(score, best_t, float(best_v), criterion)


def compare_scores(
    logits: ArrayLike,
    student_correct: ArrayLike,
    teacher_correct: ArrayLike,
    costs: ArrayLike | None = None,
    *,
    scores: Sequence[str] = SCORES,
    criterion: str = "gap_captured",
    temperatures: Sequence[float] = TEMPERATURES,
) -> list[ScoreChoice]:
    """Every score of ``scores`` at its tuned temperature, side by side, in that order.

    ``logits`` are the student's on the choosing (select) split; ``student_correct`` and
    ``teacher_correct`` the two models' correctness there.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> y = rng.integers(0, 4, 400)
    >>> z = rng.normal(size=(400, 4)); z[np.arange(400), y] += 2.0
    >>> rows = compare_scores(z, z.argmax(1) == y, np.ones(400, bool), scores=("margin", "energy"))
    >>> [r.score for r in rows]
    ['margin', 'energy']
    """
    if len(scores) == 0:
        raise ParameterError("Expected at least one score to compare; got none.")
    return [
        tune_temperature(
            name,
            logits,
            student_correct,
            teacher_correct,
            costs,
            criterion=criterion,
            temperatures=temperatures,
        )
        for name in scores
    ]


def select_score(
    logits: ArrayLike,
    student_correct: ArrayLike,
    teacher_correct: ArrayLike,
    costs: ArrayLike | None = None,
    *,
    scores: Sequence[str] = SCORES,
    criterion: str = "gap_captured",
    temperatures: Sequence[float] = TEMPERATURES,
) -> ScoreChoice:
    """The best of :func:`compare_scores` (the first one on ties)."""
    rows = compare_scores(
        logits,
        student_correct,
        teacher_correct,
        costs,
        scores=scores,
        criterion=criterion,
        temperatures=temperatures,
    )
    return max(rows, key=lambda r: r.value if math.isfinite(r.value) else -math.inf)


def baselines(
    student_correct: ArrayLike, teacher_correct: ArrayLike, costs: ArrayLike | None = None
) -> dict[str, dict[str, float | None]]:
    """The figures of the random and the oracle router, in the keys of
    :func:`cascadekit.curves.summarize`.

    Random sends a random share of inputs to the teacher (accuracy linear in the share, gap
    captured 0, APGR 0.5); the oracle sends exactly the inputs the student gets wrong and the
    teacher right (gap captured 1). Their speed-ups at the teacher's accuracy: random reaches it
    only with everything on the teacher (``c_T / (c_S + c_T)``), the oracle at teacher share
    ``min(q, acc_T - acc_S)`` with ``q`` the share of inputs only the teacher gets right.

    Examples
    --------
    >>> b = baselines([1, 1, 0, 0], [1, 0, 1, 1], costs=[1, 4])
    >>> b["random"]["speedup_at_teacher_accuracy"], b["oracle"]["speedup_at_teacher_accuracy"]
    (0.8, 2.0)
    """
    from .curves import oracle_auc, random_auc

    vs, vt = as_value_pair(student_correct, teacher_correct)
    c = check_costs(costs, 2)
    acc_s, acc_t = float(np.mean(vs)), float(np.mean(vt))
    rand, orc = random_auc(acc_s, acc_t), oracle_auc(vs, vt)
    better = acc_t > acc_s
    q = float(np.mean(np.maximum(vt - vs, 0.0)))
    common = {"random_auc": rand, "oracle_auc": orc}
    return {
        "random": {
            "auc": rand,
            **common,
            "gap_captured": 0.0,
            "apgr": 0.5,
            "teacher_share_at_teacher_accuracy": 1.0 if better else 0.0,
            "speedup_at_teacher_accuracy": float(c[-1] / c.sum() if better else c[-1] / c[0]),
        },
        "oracle": {
            "auc": orc,
            **common,
            "gap_captured": 1.0,
            "apgr": (orc - acc_s) / (acc_t - acc_s) if acc_t != acc_s else None,
            "teacher_share_at_teacher_accuracy": max(0.0, acc_t - acc_s),
            "speedup_at_teacher_accuracy": float(
                c[-1] / (c[0] + max(0.0, min(q, acc_t - acc_s)) * c[-1])
            ),
        },
    }
