"""The statistics of the monitor: per-window test levels, share and score-drift tests, and the
label-free bound on the accuracy drop from shadow audits.

**False alarms per 100k requests.** The monitor tests tumbling windows of ``window`` requests.
With ``n_tests`` tests per window, each run at level :func:`window_level`
``= false_alarms_per_100k * window / 100_000 / n_tests`` (a Bonferroni split over the windows of
100k requests and over the tests), the expected number of false alarms in any 100k requests of
unshifted traffic is at most ``false_alarms_per_100k``, whatever the dependence between tests.
The reference (calibration) sample is drawn once and re-used by every window; the tests pay for
its noise once (``reference_level``) instead of letting an unlucky reference raise alarms in
window after window.

Examples
--------
>>> window_level(0.5, 1000, 2)
0.0025
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = rng.normal(size=5000)
>>> score_drift_test(rng.normal(size=1000), ref).p_value > 0.01     # same distribution
True
>>> score_drift_test(rng.normal(0.3, 1, size=1000), ref).p_value < 1e-6   # shifted
True
>>> score_drift_test(rng.normal(0.3, 1, size=1000), ref, reference_level=0.005).p_value < 1e-3
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from .._validation import as_scores, check_open_unit, check_unit
from ..calibration import guaranteed_threshold_label_free
from ..errors import InsufficientDataError, ParameterError

__all__ = [
    "DropBound",
    "WindowTest",
    "disagreement_bound",
    "score_drift_test",
    "share_test",
    "window_level",
]


@dataclass(frozen=True)
class WindowTest:
    """Outcome of one window test.

    Attributes
    ----------
    statistic : float
        The observed share (share test) or the KS distance (score-drift test).
    p_value : float
        Two-sided p-value of "no change against the reference".
    expected : float or None
        The share expected under no change (share test only).
    """

    statistic: float
    p_value: float
    expected: float | None = None


@dataclass(frozen=True)
class DropBound:
    """A label-free estimate of the accuracy drop against the teacher, with its upper bound.

    Attributes
    ----------
    disagreement : float
        Share of audit-sample inputs kept by the student on which student and teacher disagree:
        an estimate of an upper bound on the accuracy drop (a kept input the student gets wrong
        and the teacher right is always a disagreement).
    upper : float
        Upper confidence bound on the population disagreement at level ``1 - delta`` (the
        smallest ``epsilon`` the label-free Learn-then-Test certifies at this threshold).
    delta : float
    n : int
        Audit-sample size.
    """

    disagreement: float
    upper: float
    delta: float
    n: int


def window_level(false_alarms_per_100k: float, window: int, n_tests: int = 1) -> float:
    """Level of each test so that unshifted traffic raises at most the given alarms per 100k.

    Parameters
    ----------
    false_alarms_per_100k : float
        Expected false alarms allowed in 100,000 requests (e.g. 0.5).
    window : int
        Requests per tumbling window.
    n_tests : int, default=1
        Tests run on each window (Bonferroni split).

    Returns
    -------
    float
        The per-test, per-window level.

    Raises
    ------
    ParameterError
        If a parameter is out of range or the level would reach 1.

    Examples
    --------
    >>> window_level(1.0, 500)
    0.005
    """
    fa = float(false_alarms_per_100k)
    if not (fa > 0 and math.isfinite(fa)):
        raise ParameterError(
            f"Expected false_alarms_per_100k > 0; got {false_alarms_per_100k!r}. For example 0.5."
        )
    if int(window) != window or window < 1:
        raise ParameterError(f"Expected window to be a positive integer; got {window!r}.")
    if int(n_tests) != n_tests or n_tests < 1:
        raise ParameterError(f"Expected n_tests to be a positive integer; got {n_tests!r}.")
    level = fa * int(window) / 100_000 / int(n_tests)
    if level >= 1:
        raise ParameterError(
            f"false_alarms_per_100k={fa:g} with window={window} gives a per-window level of "
            f"{level:g} >= 1: every window would alarm. Lower false_alarms_per_100k or the window."
        )
    return level


def share_test(
    n_teacher: int,
    n: int,
    expected: float,
    n_reference: int | None = None,
    reference_level: float = 0.005,
) -> WindowTest:
    """Two-sided test that a window's teacher share equals the share expected at calibration.

    With ``n_reference=None`` the expected share is taken as exact: the two-sided binomial test
    of ``n_teacher`` out of ``n``. With ``n_reference`` (the size of the reference sample the
    share was measured on), the reference's own sampling noise is paid once for the whole
    stream rather than per window: ``[lo, hi]`` is the exact (Clopper-Pearson) confidence
    interval of the reference share at level ``1 - reference_level``, and the window is tested
    against the nearest end (``p = 2 P(Bin(n, hi) >= n_teacher)`` above the interval, ``2
    P(Bin(n, lo) <= n_teacher)`` below it, 1 inside). With probability at least ``1 -
    reference_level`` over the reference draw, every window of unshifted traffic then has a
    false-alarm probability of at most its level, however many windows are tested: re-using
    one reference in every window cannot pile up false alarms.

    Examples
    --------
    >>> r = share_test(300, 1000, 0.2)
    >>> r.statistic, r.p_value < 1e-10
    (0.3, True)
    >>> share_test(205, 1000, 0.2, n_reference=5000).p_value      # inside the interval
    1.0
    """
    if n < 1 or not 0 <= n_teacher <= n:
        raise ParameterError(f"Expected 0 <= n_teacher <= n and n >= 1; got {n_teacher} of {n}.")
    p0 = check_unit("expected", expected)
    k, n = int(n_teacher), int(n)
    obs = k / n
    if n_reference is None:
        p = float(sps.binomtest(k, n, p0).pvalue)
    else:
        if int(n_reference) != n_reference or n_reference < 1:
            raise ParameterError(f"Expected n_reference >= 1; got {n_reference!r}.")
        level = check_open_unit("reference_level", reference_level)
        k_ref = round(p0 * n_reference)
        ci = sps.binomtest(k_ref, int(n_reference)).proportion_ci(1 - level, method="exact")
        lo, hi = float(ci.low), float(ci.high)
        if obs > hi:
            p = 2 * float(sps.binom.sf(k - 1, n, hi))
        elif obs < lo:
            p = 2 * float(sps.binom.cdf(k, n, lo))
        else:
            p = 1.0
    return WindowTest(statistic=obs, p_value=min(p, 1.0), expected=p0)


def score_drift_test(
    scores: ArrayLike, reference: ArrayLike, reference_level: float | None = None
) -> WindowTest:
    """Kolmogorov-Smirnov test of a window's scores against the reference scores.

    The statistic ``D`` is the largest distance between the two empirical distribution
    functions. With ``reference_level=None``, the two-sample KS p-value (scipy: exact when
    ``n * n_reference <= 10_000``, asymptotic otherwise), which treats the reference as a fresh
    sample for every window. With ``reference_level``, the reference's deviation from its
    population is bounded once for the whole stream (Dvoretzky-Kiefer-Wolfowitz with Massart's
    constant: ``sup |F_ref - F| <= e_ref = sqrt(ln(2 / reference_level) / (2 n_reference))``
    with probability ``>= 1 - reference_level``), and the window is tested with the exact
    one-sample Kolmogorov distribution: ``p = P(D_n >= D - e_ref)``. Then, on a good reference,
    every window of unshifted traffic alarms with probability at most its level.

    Raises
    ------
    InputShapeError, EmptyInputError, NonFiniteError
        If either array is not a non-empty 1-D array of finite scores.
    ParameterError
        If ``reference_level`` is not strictly between 0 and 1.
    """
    s = as_scores(scores)
    ref = as_scores(reference, name="reference")
    if reference_level is None:
        # the exact null distribution costs ~5x more and changes the p-value by <1% here
        method: Any = "asymp" if s.shape[0] * ref.shape[0] > 10_000 else "auto"
        res: Any = sps.ks_2samp(s, ref, method=method)
        return WindowTest(statistic=float(res.statistic), p_value=float(res.pvalue))
    level = check_open_unit("reference_level", reference_level)
    d = float(sps.ks_2samp(s, ref, method="asymp").statistic)
    e_ref = math.sqrt(math.log(2 / level) / (2 * ref.shape[0]))
    p = float(sps.kstwo.sf(d - e_ref, s.shape[0])) if d > e_ref else 1.0
    return WindowTest(statistic=d, p_value=min(p, 1.0))


def disagreement_bound(
    scores: ArrayLike,
    student_predictions: ArrayLike,
    teacher_predictions: ArrayLike,
    threshold: float,
    delta: float,
    *,
    tol: float = 1e-4,
) -> DropBound:
    """Label-free estimate and upper confidence bound of the accuracy drop at a threshold.

    The rows must be a uniform random sample of traffic with both answers known (the shadow
    audit sample). The estimate is the share of rows with ``score >= threshold`` on which the
    student disagrees with the teacher; it bounds the drop from above. The upper bound inverts
    the test of :func:`cascadekit.calibration.guaranteed_threshold_label_free`: it is the
    smallest ``epsilon`` for which that test, run on the single threshold, certifies it at level
    ``delta`` (found by bisection to ``tol``). So it moves with the library's guarantee.

    Parameters
    ----------
    scores : array-like of shape (n,)
        Student scores of the audit sample (higher = keep on the student).
    student_predictions, teacher_predictions : array-like of shape (n,)
        Class indices.
    threshold : float
        The student's threshold (``+inf``: all to the teacher, drop 0).
    delta : float in (0, 1)
    tol : float, default=1e-4

    Returns
    -------
    DropBound

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = rng.uniform(size=4000)
    >>> t = rng.integers(0, 5, size=4000)
    >>> st = np.where(rng.uniform(size=4000) < 0.95, t, (t + 1) % 5)   # 5% disagreement
    >>> b = disagreement_bound(s, st, t, threshold=0.5, delta=0.05)
    >>> round(b.disagreement, 3), b.disagreement < b.upper < 0.04
    (0.025, True)
    """
    dlt = check_open_unit("delta", delta)
    s = as_scores(scores)
    t = float(threshold)
    if math.isnan(t):
        raise ParameterError("Expected threshold to be a number or +-inf; got NaN.")
    ps = np.asarray(student_predictions)
    pt = np.asarray(teacher_predictions)
    if ps.shape != s.shape or pt.shape != s.shape:
        raise ParameterError(
            f"Expected scores, student_predictions and teacher_predictions of the same shape; "
            f"got {s.shape}, {ps.shape} and {pt.shape}."
        )
    n = int(s.shape[0])
    est = float(np.mean((s >= t) & (ps != pt)))
    if t == math.inf:
        return DropBound(0.0, 0.0, dlt, n)

    def certified(eps: float) -> bool:
        try:
            r = guaranteed_threshold_label_free(s, ps, pt, eps, dlt, grid=[t])
        except InsufficientDataError:
            return False
        return bool(r.n_certified)

    hi = 1.0 - 1e-9
    if not certified(hi):
        return DropBound(est, 1.0, dlt, n)
    lo = est
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if certified(mid):
            hi = mid
        else:
            lo = mid
    return DropBound(est, float(hi), dlt, n)
