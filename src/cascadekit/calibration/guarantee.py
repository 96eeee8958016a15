"""Guaranteed thresholds (Learn-then-Test): the p-values of the accuracy drop (trinomial,
betting, binomial, Hoeffding-Bentkus), fixed-sequence testing, the guarantee for 2 and N
stages."""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaln, logsumexp, xlogy
from scipy.stats import binom

from .._validation import (
    as_labels,
    as_scores,
    check_costs,
    check_open_unit,
    check_same_samples,
)
from ..cascade import assign_stages
from ..curves.grid import threshold_grid
from ..errors import (
    InsufficientDataError,
    ParameterError,
)
from ..scores import (
    numerical_margin,
)
from ._common import (
    DEFAULT_N_THRESHOLDS,
    BoolArray,
    FloatArray,
    check_method,
    evaluate_thresholds,
    rel_cost_2,
    two_stage,
)
from .result import CalibrationResult

# Betting: a uniform mixture over constant bets lambda = c / m, c on the midpoints of (0, 1).
_N_BETS = 100
_BET_FRACTIONS = (np.arange(_N_BETS, dtype=np.float64) + 0.5) / _N_BETS


# --------------------------------------------------------------------------------------------
# guarantees: p-values and fixed-sequence testing


def p_values(
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


def fixed_sequence(p_values: FloatArray, delta: float) -> int:
    """Number of leading p-values <= delta (fixed-sequence testing stops at the first miss)."""
    miss = np.flatnonzero(p_values > delta)
    return int(miss[0]) if miss.shape[0] else int(p_values.shape[0])


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
    method = check_method(method, delta=dlt)

    def ok(n: int) -> bool:
        return bool(p_values(np.zeros(1), np.zeros(1), n, eps, method)[0] <= dlt)

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


def check_n_or_raise(n: int, epsilon: float, delta: float, method: str, n_certified: int) -> None:
    """Raise :class:`InsufficientDataError` when nothing is certified and ``n`` is too small."""
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


def guarantee_two_stage(
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
    """The guarantee of a 2-stage cascade on a grid tested safest first (labels or label-free)."""
    eps = check_open_unit("epsilon", epsilon)
    dlt = check_open_unit("delta", delta)
    n = s.shape[0]
    method = check_method(method, label_free, n, dlt)
    c = check_costs(costs, 2)
    g = _user_grid(threshold_grid(s, n_thresholds) if grid is None else grid)  # safest first
    # kept counts at every grid threshold: sort the scores of the harmful (student wrong,
    # teacher right) and helpful rows once; rows with s < t go to the teacher
    n_harm = _count_at_least(s[~cs & ct], g)
    n_gain = _count_at_least(s[cs & ~ct], g)
    pv = p_values(n_harm, n_gain, n, eps, method)
    k = fixed_sequence(pv, dlt)
    check_n_or_raise(n, eps, dlt, method, k)
    t = math.inf if k == 0 else float(g[k - 1])
    keep = s >= t
    share = float(np.mean(~keep))
    acc = float(np.mean(np.where(keep, cs, ct)))
    return CalibrationResult(
        numerical_margin=numerical_margin([s], [t]),
        thresholds=(t,),
        teacher_share=share,
        relative_cost=float(rel_cost_2(share, c)),
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
    student_correct: ArrayLike,
    teacher_correct: ArrayLike,
    epsilon: float,
    delta: float,
    *,
    method: str = "auto",
    grid: ArrayLike | None = None,
    n_thresholds: int = DEFAULT_N_THRESHOLDS,
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
    student_correct, teacher_correct : array-like of shape (n_samples,)
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
    s, cs, ct = two_stage(scores, student_correct, teacher_correct)
    return guarantee_two_stage(s, cs, ct, epsilon, delta, method, grid, n_thresholds, costs, False)


def guaranteed_threshold_label_free(
    scores: ArrayLike,
    student_predictions: ArrayLike,
    teacher_predictions: ArrayLike,
    epsilon: float,
    delta: float,
    *,
    method: str = "binomial",
    grid: ArrayLike | None = None,
    n_thresholds: int = DEFAULT_N_THRESHOLDS,
    costs: ArrayLike | None = None,
) -> CalibrationResult:
    """Like :func:`guaranteed_threshold`, with agreement with the teacher instead of labels.

    The teacher's answers play the role of the truth: ``student_correct = (student_prediction
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
    return guarantee_two_stage(
        s, agree, ones, epsilon, delta, method, grid, n_thresholds, costs, True
    )


def guarantee_path(
    ss: list[FloatArray],
    correct: NDArray[np.bool_],
    c: FloatArray,
    epsilon: float,
    delta: float,
    method: str,
    n_thresholds: int,
    label_free: bool,
) -> CalibrationResult:
    """The N-stage guarantee along one path: every stage at the same level of its grid."""
    eps = check_open_unit("epsilon", epsilon)
    dlt = check_open_unit("delta", delta)
    n = ss[0].shape[0]
    method = check_method(method, label_free, n, dlt)
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
    pv = p_values(n_harm, n_gain, n, eps, method)
    k = fixed_sequence(pv, dlt)
    check_n_or_raise(n, eps, dlt, method, k)
    ths = tuple(math.inf for _ in ss) if k == 0 else paths[k - 1]
    acc, share, rel, _ = evaluate_thresholds(ss, correct, c, ths)
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
