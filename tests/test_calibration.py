"""Threshold calibration: brute-force references, properties, guarantees' mechanics, errors."""

from __future__ import annotations

import itertools
import json
import math
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from cascadekit import assign_stages
from cascadekit import calibration as cal
from cascadekit import scores as sc
from cascadekit.calibration.guarantee import p_values
from cascadekit.errors import (
    EmptyInputError,
    InfeasibleTargetError,
    InputShapeError,
    InsufficientDataError,
    LabelError,
    NonFiniteError,
    ParameterError,
    SampleCountError,
    UnknownNameError,
)

RNG = np.random.default_rng(7)


# ------------------------------------------------------------------------------------------
# references


def _brute_points(s, cs=None, ct=None):
    """Every candidate threshold (+inf, then below each distinct score) with a per-row loop.

    The threshold that keeps the scores >= u sits midway between u and the next lower distinct
    score (-inf below the lowest), away from every score.
    """
    out = []
    u = sorted(set(s.tolist()), reverse=True)
    mids = [(a + b) / 2 for a, b in itertools.pairwise(u)] + [-math.inf]
    for t, lowest in [(math.inf, math.inf), *zip(mids, u, strict=True)]:
        kept = [x >= lowest for x in s]
        assert kept == [x >= t for x in s]
        share = 1 - sum(kept) / len(s)
        acc = None
        if cs is not None:
            acc = sum(bool(cs[i]) if kept[i] else bool(ct[i]) for i in range(len(s))) / len(s)
        out.append((t, share, acc))
    return out


def _random_case(n, n_levels, seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, n_levels, size=n).astype(float)  # many ties
    cs = rng.uniform(size=n) < 0.3 + 0.6 * s / n_levels
    ct = rng.uniform(size=n) < 0.85
    return s, cs, ct


@cache
def _digits():
    from cascadekit.data.digits import load_digits_pair

    pair = load_digits_pair()
    out = {}
    for split in ("calibrate", "test"):
        s_log = pair.logits[split]["student"]
        t_log = pair.logits[split]["teacher"]
        y = pair.labels[split]
        out[split] = (s_log, t_log, y)
    return out


def _digits_arrays(split="calibrate", score="margin"):
    s_log, t_log, y = _digits()[split]
    return (
        sc.compute_score(score, s_log),
        s_log.argmax(1) == y,
        t_log.argmax(1) == y,
    )


# ------------------------------------------------------------------------------------------
# threshold_for_teacher_share


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=40),
    st.floats(0, 1, allow_nan=False),
)
def test_teacher_share_is_closest_realisable_and_not_above_on_ties(vals, target):
    s = np.array(vals, dtype=float)
    t = cal.threshold_for_teacher_share(s, target)
    realised = float(np.mean(s < t))
    shares = [p[1] for p in _brute_points(s)]
    best = min(abs(x - target) for x in shares)
    assert abs(realised - target) == pytest.approx(best, abs=1e-12)
    tied = [x for x in shares if abs(abs(x - target) - best) < 1e-12]
    assert realised == pytest.approx(min(tied))
    assert t in {p[0] for p in _brute_points(s)}


def test_teacher_share_extremes():
    s = np.array([0.3, -1.0, 2.0, 2.0])
    assert cal.threshold_for_teacher_share(s, 0.0) == -math.inf  # keep everything
    assert cal.threshold_for_teacher_share(s, 1.0) == math.inf
    # ties move together: 2.0 appears twice, share 0.5 is realisable, 0.25 is not
    assert np.mean(s < cal.threshold_for_teacher_share(s, 0.5)) == 0.5


def test_teacher_share_on_real_scores_matches_quantile():
    s, _, _ = _digits_arrays()
    for k in (0.1, 0.3, 0.7):
        t = cal.threshold_for_teacher_share(s, k)
        assert abs(np.mean(s < t) - k) <= 1.0 / s.shape[0]


# ------------------------------------------------------------------------------------------
# threshold_for_accuracy / threshold_for_cost


@pytest.mark.parametrize("seed", range(25))
def test_accuracy_and_cost_match_brute_force(seed):
    s, cs, ct = _random_case(30, 8, seed)
    pts = _brute_points(s, cs, ct)
    costs = np.array([1.0, 3.0])
    accs = [p[2] for p in pts]
    target = float(np.quantile(accs, 0.6))
    ok = [p for p in pts if p[2] >= target - 1e-12]
    want = min(ok, key=lambda p: p[1])
    r = cal.threshold_for_accuracy(s, cs, ct, target, costs=costs)
    assert (r.thresholds[0], r.teacher_share, r.accuracy) == pytest.approx(want)
    assert r.relative_cost == pytest.approx((1 + 3 * want[1]) / 3)
    assert r.method == "accuracy" and r.n_calibration == 30

    budget = 1 / 3 + RNG.uniform(0, 1)
    ok = [p for p in pts if (1 + 3 * p[1]) / 3 <= budget + 1e-12]
    best_acc = max(p[2] for p in ok)
    want = min((p for p in ok if p[2] >= best_acc - 1e-12), key=lambda p: p[1])
    r = cal.threshold_for_cost(s, cs, ct, budget, costs=costs)
    assert (r.thresholds[0], r.teacher_share, r.accuracy) == pytest.approx(want)
    assert r.relative_cost <= budget + 1e-12


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.5, 1.0))
def test_accuracy_threshold_is_permutation_invariant(seed, target):
    s, cs, ct = _random_case(25, 5, seed)
    perm = np.random.default_rng(seed).permutation(25)
    try:
        a = cal.threshold_for_accuracy(s, cs, ct, target)
    except InfeasibleTargetError:
        with pytest.raises(InfeasibleTargetError):
            cal.threshold_for_accuracy(s[perm], cs[perm], ct[perm], target)
        return
    b = cal.threshold_for_accuracy(s[perm], cs[perm], ct[perm], target)
    assert a == b


def test_accuracy_target_teacher_level_on_real_data():
    s, cs, ct = _digits_arrays()
    r = cal.threshold_for_accuracy(s, cs, ct, float(np.mean(ct)), costs=[384, 9472])
    assert r.accuracy >= np.mean(ct)
    assert r.teacher_share < 0.7  # a useful cascade, not "all to the teacher"
    assert r.accuracy_drop <= 1e-12


def test_infeasible_accuracy_names_best():
    s = np.arange(2000.0)
    cs = np.zeros(2000, dtype=bool)
    ct = np.r_[np.ones(1906, dtype=bool), np.zeros(94, dtype=bool)]
    with pytest.raises(
        InfeasibleTargetError,
        match=r"No threshold reaches target_accuracy=0\.97 on 2,000 calibration samples; the "
        r"best is 0\.953 \(95% sent to the teacher\)\. Lower the target",
    ) as exc:
        cal.threshold_for_accuracy(s, cs, ct, 0.97)
    assert exc.value.best == pytest.approx(0.953)


def test_infeasible_cost_names_minimum():
    s, cs, ct = _random_case(50, 5, 0)
    with pytest.raises(InfeasibleTargetError, match=r"costs 0\.25 of the teacher alone") as exc:
        cal.threshold_for_cost(s, cs, ct, 0.2, costs=[1, 4])
    assert exc.value.best == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"target_accuracy": 1.5}, ParameterError, "target_accuracy in \\[0, 1\\]"),
        ({"target_accuracy": float("nan")}, ParameterError, "target_accuracy in \\[0, 1\\]"),
        ({"costs": [1, 2, 3]}, ParameterError, "one cost per stage"),
        ({"costs": [-1, 2]}, ParameterError, "non-negative"),
    ],
)
def test_accuracy_bad_parameters(kwargs, err, match):
    s, cs, ct = _random_case(20, 4, 1)
    args = {"target_accuracy": 0.5, **kwargs}
    with pytest.raises(err, match=match):
        cal.threshold_for_accuracy(s, cs, ct, **args)


@pytest.mark.parametrize("budget", [0.0, -1.0, float("inf"), float("nan")])
def test_cost_bad_budget(budget):
    s, cs, ct = _random_case(20, 4, 1)
    with pytest.raises(ParameterError, match="max_relative_cost to be a positive number"):
        cal.threshold_for_cost(s, cs, ct, budget, costs=[1, 4])


@pytest.mark.parametrize("share", [-0.1, 1.1, float("nan")])
def test_teacher_share_out_of_range(share):
    with pytest.raises(ParameterError, match="teacher_share in \\[0, 1\\]"):
        cal.threshold_for_teacher_share([1.0, 2.0], share)


def test_input_errors():
    s, cs, ct = _random_case(20, 4, 2)
    with pytest.raises(SampleCountError, match="student_correct has 19"):
        cal.threshold_for_accuracy(s, cs[:-1], ct, 0.5)
    with pytest.raises(SampleCountError, match="teacher_correct has 21"):
        cal.guaranteed_threshold(s, cs, np.r_[ct, True], 0.1, 0.1)
    bad = s.copy()
    bad[3] = np.nan
    with pytest.raises(NonFiniteError, match="first at row 3"):
        cal.threshold_for_accuracy(bad, cs, ct, 0.5)
    badc = cs.astype(float)
    badc[5] = np.nan
    with pytest.raises(NonFiniteError, match="Student_correct contain 1 non-finite"):
        cal.threshold_for_accuracy(s, badc, ct, 0.5)
    with pytest.raises(LabelError, match="booleans or 0/1 .* first 2 at row 0"):
        cal.threshold_for_accuracy(s, np.r_[2, cs[1:]], ct, 0.5)
    with pytest.raises(LabelError, match="got dtype <U1"):
        cal.threshold_for_accuracy(s, np.array(["a"] * 20), ct, 0.5)
    with pytest.raises(InputShapeError, match="teacher_correct of shape \\(n_samples,\\)"):
        cal.threshold_for_accuracy(s, cs, np.ones((20, 2)), 0.5)
    with pytest.raises(EmptyInputError, match="at least one sample"):
        cal.threshold_for_accuracy([], [], [], 0.5)


# ------------------------------------------------------------------------------------------
# crossing_threshold


def test_crossing_of_two_gaussians_is_midpoint():
    rng = np.random.default_rng(3)
    s = np.r_[rng.normal(0, 1, 4000), rng.normal(4, 1, 1000)]  # unequal group sizes
    right = np.r_[np.zeros(4000), np.ones(1000)]
    assert cal.crossing_threshold(s, right) == pytest.approx(2.0, abs=0.2)
    assert cal.crossing_threshold(s, right, bins=40) == pytest.approx(2.0, abs=0.3)


def test_crossing_on_real_scores_separates_right_from_wrong():
    s, cs, _ = _digits_arrays(score="energy")
    t = cal.crossing_threshold(s, cs)
    assert np.median(s[~cs]) < t < np.median(s[cs])
    # it beats the median of all scores at separating right from wrong (Youden's J)
    j = np.mean(s[~cs] < t) - np.mean(s[cs] < t)
    m = np.median(s)
    assert j >= np.mean(s[~cs] < m) - np.mean(s[cs] < m)


def test_crossing_errors():
    s = np.linspace(0, 1, 50)
    with pytest.raises(InsufficientDataError, match="gets wrong .* got 0"):
        cal.crossing_threshold(s, np.ones(50))
    with pytest.raises(InsufficientDataError, match="gets right .* got 0"):
        cal.crossing_threshold(s, np.zeros(50))
    with pytest.raises(InfeasibleTargetError, match="does not rank right answers higher"):
        cal.crossing_threshold(s, s < 0.5)  # right answers have the LOW scores
    with pytest.raises(ParameterError, match="bins >= 2"):
        cal.crossing_threshold(s, s > 0.5, bins=1)


# ------------------------------------------------------------------------------------------
# guaranteed_threshold: mechanics against a loop reference


def _ref_p_value(s, cs, ct, t, eps, method):
    n = len(s)
    harm = sum(1 for i in range(n) if s[i] >= t and not cs[i] and ct[i])
    if method == "binomial":
        return float(binom.cdf(harm, n, eps))
    if method == "hb":
        r = harm / n
        a = min(r, eps)
        h1 = (a * math.log(a / eps) if a > 0 else 0.0) + (1 - a) * math.log((1 - a) / (1 - eps))
        return min(1.0, math.exp(-n * h1), math.e * float(binom.cdf(harm, n, eps)))
    # betting: average over 100 constant bets of prod_i (1 + lambda (x_i - m))
    m = (1 - eps) / 2
    wealth = []
    for j in range(100):
        lam = (j + 0.5) / 100 / m
        log_k = 0.0
        for i in range(n):
            d = (int(ct[i]) - int(cs[i])) if s[i] >= t else 0
            log_k += math.log(1 + lam * ((1 - d) / 2 - m))
        wealth.append(log_k)
    log_w = np.logaddexp.reduce(wealth) - math.log(100)
    return min(1.0, math.exp(-log_w))


def _ref_ltt(s, cs, ct, grid, eps, delta, method):
    grid = sorted(set(grid), reverse=True)
    pvals, chosen = [], math.inf
    stopped = False
    for t in grid:
        p = _ref_p_value(s, cs, ct, t, eps, method)
        pvals.append(p)
        if not stopped and p <= delta:
            chosen = t
        else:
            stopped = True
    return chosen, pvals


@pytest.mark.parametrize("method", ["binomial", "betting", "hb"])
@pytest.mark.parametrize("seed", range(4))
def test_guarantee_matches_loop_reference(method, seed):
    rng = np.random.default_rng(seed)
    n = 300
    s = np.round(rng.uniform(size=n), 2)
    cs = rng.uniform(size=n) < 0.4 + 0.6 * s
    ct = rng.uniform(size=n) < 0.92
    grid = np.round(np.linspace(1.0, 0.0, 11), 2)
    want_t, want_p = _ref_ltt(s, cs, ct, grid, 0.05, 0.1, method)
    r = cal.guaranteed_threshold(s, cs, ct, 0.05, 0.1, method=method, grid=grid)
    assert r.thresholds == (want_t,)
    np.testing.assert_allclose(r.p_values, want_p, rtol=1e-9, atol=1e-300)
    keep = s >= r.thresholds[0]
    assert r.teacher_share == pytest.approx(np.mean(~keep))
    assert r.accuracy == pytest.approx(np.mean(np.where(keep, cs, ct)))
    assert r.epsilon == 0.05 and r.delta == 0.1 and r.n_calibration == n


def test_default_grid_is_descending_score_quantiles():
    s, cs, ct = _digits_arrays()
    r = cal.guaranteed_threshold(s, cs, ct, 0.05, 0.1, n_thresholds=50)
    g = np.array(r.grid)
    assert np.all(np.diff(g) < 0)
    assert g[-1] == -np.inf and len(g) <= 50  # the last keeps everything
    # each grid threshold keeps the same inputs as a score quantile, midway between two scores
    srt = np.sort(s)
    for t in g[:-1]:
        below, above = srt[srt < t].max(), srt[srt > t].min()
        assert t == (below + above) / 2
    assert not np.isin(g, s).any()


def test_fixed_sequence_stops_at_first_non_rejection():
    # scores descending: 300 neutral rows, a band of 12 harmful rows, then 120 helpful rows
    n_neutral, n_harm, n_gain = 300, 12, 120
    s = np.r_[np.full(n_neutral, 3.0), np.full(n_harm, 2.0), np.full(n_gain, 1.0)]
    cs = np.r_[np.ones(n_neutral), np.zeros(n_harm), np.ones(n_gain)].astype(bool)
    ct = np.r_[np.ones(n_neutral), np.ones(n_harm), np.zeros(n_gain)].astype(bool)
    r = cal.guaranteed_threshold(s, cs, ct, 0.02, 0.1, method="betting", grid=[3.0, 2.0, 1.0])
    p = np.array(r.p_values)
    assert p[0] <= 0.1 < p[1]  # the harmful band fails ...
    assert p[2] <= 0.1  # ... although keeping everything would pass on its own
    assert r.thresholds == (3.0,) and r.n_certified == 1 and r.n_tested == 2


def test_nothing_certified_gives_all_to_teacher_not_an_error():
    n = 1000
    s = np.linspace(0, 1, n)
    r = cal.guaranteed_threshold(s, np.zeros(n), np.ones(n), 0.01, 0.1, method="binomial")
    assert r.thresholds == (math.inf,) and r.teacher_share == 1.0 and r.n_certified == 0
    assert r.accuracy == 1.0 and r.n_tested == 1
    assert json.loads(json.dumps(r.to_dict()))["thresholds"] == [None]


@pytest.mark.parametrize(
    ("eps", "delta", "n"), [(0.01, 0.10, 230), (0.01, 0.05, 299), (0.02, 0.05, 149)]
)
def test_min_calibration_size_binomial_table(eps, delta, n):
    assert cal.min_calibration_size(eps, delta, "binomial") == n
    assert cal.min_calibration_size(eps, delta, "hb") == n
    assert (1 - eps) ** n <= delta < (1 - eps) ** (n - 1)


@pytest.mark.parametrize("method", ["binomial", "trinomial", "betting", "hb"])
def test_min_calibration_size_is_exact(method):
    need = cal.min_calibration_size(0.02, 0.1, method)
    ones = np.ones(need, dtype=bool)
    s = np.arange(need, dtype=float)
    r = cal.guaranteed_threshold(s, ones, ones, 0.02, 0.1, method=method)
    assert r.n_certified > 0
    with pytest.raises(InsufficientDataError, match=f"needs at least {need:,} calibration") as e:
        cal.guaranteed_threshold(s[1:], ones[1:], ones[1:], 0.02, 0.1, method=method)
    assert e.value.needed == need


def test_too_few_samples_message():
    s, cs, ct = _random_case(100, 10, 0)
    with pytest.raises(
        InsufficientDataError,
        match=r"epsilon=0\.01 with probability 1 - delta = 0\.9 needs at least 230 calibration "
        r"samples with the 'binomial' test .*got 100\. Collect more",
    ) as exc:
        cal.guaranteed_threshold(s, cs, ct, 0.01, 0.1, method="binomial")
    assert exc.value.needed == 230


def test_betting_can_certify_below_its_no_gain_size_when_student_beats_teacher():
    need = cal.min_calibration_size(0.05, 0.1, "betting")
    n = need - 10
    s = np.arange(n, dtype=float)
    r = cal.guaranteed_threshold(s, np.ones(n), np.zeros(n), 0.05, 0.1, method="betting")
    assert r.n_certified > 0  # no error: the data themselves certified something


@pytest.mark.parametrize("name", ["epsilon", "delta"])
@pytest.mark.parametrize("value", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_epsilon_delta_must_be_in_open_unit_interval(name, value):
    s, cs, ct = _random_case(50, 5, 0)
    kwargs = {"epsilon": 0.1, "delta": 0.1, name: value}
    with pytest.raises(ParameterError, match=f"{name} strictly between 0 and 1"):
        cal.guaranteed_threshold(s, cs, ct, **kwargs)
    with pytest.raises(ParameterError, match=f"{name} strictly between 0 and 1"):
        cal.min_calibration_size(**kwargs)


def test_guarantee_bad_method_and_grid():
    s, cs, ct = _random_case(50, 5, 0)
    with pytest.raises(UnknownNameError, match="Unknown guarantee method 'wsr'"):
        cal.guaranteed_threshold(s, cs, ct, 0.1, 0.1, method="wsr")
    with pytest.raises(ParameterError, match="got NaN. Remove the NaN values"):
        cal.guaranteed_threshold(s, cs, ct, 0.1, 0.1, grid=[1.0, np.nan])
    with pytest.raises(ParameterError, match="non-empty grid"):
        cal.guaranteed_threshold(s, cs, ct, 0.1, 0.1, grid=[])
    with pytest.raises(ParameterError, match="only \\+inf"):
        cal.guaranteed_threshold(s, cs, ct, 0.1, 0.1, grid=[np.inf])
    with pytest.raises(ParameterError, match="n_thresholds >= 1"):
        cal.guaranteed_threshold(s, cs, ct, 0.1, 0.1, n_thresholds=0)


def test_label_free_equals_agreement_with_teacher():
    s_log, t_log, _ = _digits()["calibrate"]
    s = sc.margin(s_log)
    ps, pt = s_log.argmax(1), t_log.argmax(1)
    for method in ("binomial", "betting"):
        r = cal.guaranteed_threshold_label_free(s, ps, pt, 0.05, 0.1, method=method)
        ref = cal.guaranteed_threshold(
            s, ps == pt, np.ones_like(ps, bool), 0.05, 0.1, method=method
        )
        assert r.label_free and not ref.label_free
        assert (r.thresholds, r.p_values, r.accuracy) == (
            ref.thresholds,
            ref.p_values,
            ref.accuracy,
        )
        assert r.teacher_accuracy == 1.0
    with pytest.raises(SampleCountError, match="teacher_predictions has 449"):
        cal.guaranteed_threshold_label_free(s, ps, pt[1:], 0.05, 0.1)


def test_binomial_guarantee_on_real_data_is_monotone_in_epsilon():
    s, cs, ct = _digits_arrays()
    shares = [
        cal.guaranteed_threshold(s, cs, ct, e, 0.1, method="binomial").teacher_share
        for e in (0.02, 0.04, 0.08)
    ]
    assert shares[0] >= shares[1] >= shares[2]
    assert shares[-1] < 1.0


def test_result_to_dict_is_json_friendly():
    s, cs, ct = _digits_arrays()
    r = cal.guaranteed_threshold(s, cs, ct, 0.05, 0.1, costs=[1, 10])
    d = json.loads(json.dumps(r.to_dict()))
    assert d["method"] == "trinomial" and d["epsilon"] == 0.05
    assert len(d["p_values"]) == len(d["grid"])
    assert d["accuracy_drop"] == pytest.approx(r.teacher_accuracy - r.accuracy)
    assert d["relative_cost"] == pytest.approx(0.1 + r.teacher_share)


# ------------------------------------------------------------------------------------------
# the trinomial test: exact computations on small n (every outcome enumerated)


def _trinomial_support(n):
    """Every outcome (n+, n-) of n rows, as two arrays."""
    k, g = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    ok = k + g <= n
    return k[ok], g[ok]


def _trinomial_pmf(k, g, n, p_plus, p_minus):
    from scipy.special import gammaln, xlogy

    z = n - k - g
    p_zero = max(0.0, 1.0 - p_plus - p_minus)
    log_p = (
        gammaln(n + 1.0)
        - gammaln(k + 1.0)
        - gammaln(g + 1.0)
        - gammaln(z + 1.0)
        + xlogy(k, p_plus)
        + xlogy(g, p_minus)
        + xlogy(z, p_zero)
    )
    return np.exp(log_p)


@pytest.mark.parametrize(("n", "eps"), [(40, 0.05), (60, 0.1), (80, 0.02)])
def test_trinomial_level_is_exact_over_the_whole_null(n, eps):
    # P(p <= delta) computed exactly (all outcomes) at null points: on the boundary
    # p+ - p- = eps (the worst case) on a fine grid of p-, and at random interior points
    k, g = _trinomial_support(n)
    p = p_values(k, g, n, eps, "trinomial")
    rng = np.random.default_rng(n)
    boundary = [(a + eps, a) for a in np.linspace(0, (1 - eps) / 2, 301)]
    interior = []
    while len(interior) < 100:
        pp, pm = rng.dirichlet([1, 1, 1])[:2]
        if pp - pm > eps:
            interior.append((pp, pm))
    for delta in (0.05, 0.1, 0.2):
        for pp, pm in boundary + interior:
            level = float(_trinomial_pmf(k, g, n, pp, pm)[p <= delta].sum())
            assert level <= delta + 1e-12, (delta, pp, pm, level)


def test_trinomial_p_values_are_the_exact_supremum_up_to_the_margin():
    # the p-value of an outcome is the largest probability of the outcomes with p-values at
    # most its own, over the null boundary: compare with a 2,000-point brute force
    n, eps = 50, 0.04
    k, g = _trinomial_support(n)
    p = p_values(k, g, n, eps, "trinomial")
    pmfs = np.array(
        [_trinomial_pmf(k, g, n, a + eps, a) for a in np.linspace(0, (1 - eps) / 2, 2001)]
    )
    for level in np.unique(p)[::7]:
        if not 1e-4 <= level < 1.0:  # (far tails: the table's bound is looser, still valid)
            continue
        brute = (pmfs[:, p <= level]).sum(axis=1).max()
        assert brute <= level + 1e-12
        assert level <= brute * 1.011 + 1e-12  # the 1% margin, nothing more


def test_trinomial_rejection_regions_are_closed_under_safer_outcomes():
    # fewer harmful rows or more helpful rows never raise the p-value
    n, eps = 70, 0.03
    k, g = _trinomial_support(n)
    pv = p_values(k, g, n, eps, "trinomial")
    p = {(int(a), int(b)): float(v) for a, b, v in zip(k, g, pv, strict=True)}
    for (a, b), v in p.items():
        if a > 0:
            assert p[(a - 1, b)] <= v
        if a + b < n:
            assert p[(a, b + 1)] <= v


def test_trinomial_uses_helpful_rows_binomial_does_not():
    # 3,000 rows: 45 harmful (1.5%) and 40 helpful kept; the drop is 0.17%, below eps = 1%
    n = 3000
    k, g = np.array([45.0]), np.array([40.0])
    tri = p_values(k, g, n, 0.01, "trinomial")[0]
    assert tri < 0.01 < 0.1 < p_values(k, g, n, 0.01, "betting")[0]
    assert p_values(k, g, n, 0.01, "binomial")[0] > 0.5  # harm alone is above eps
    # without helpful rows the two agree closely (the loss is binary then)
    t = p_values(np.array([20.0]), np.array([0.0]), n, 0.01, "trinomial")[0]
    b = p_values(np.array([20.0]), np.array([0.0]), n, 0.01, "binomial")[0]
    assert b <= t <= 1.5 * b


def test_trinomial_certifies_at_least_as_much_as_betting_on_real_data():
    s, cs, ct = _digits_arrays()
    tri = cal.guaranteed_threshold(s, cs, ct, 0.05, 0.1)
    bet = cal.guaranteed_threshold(s, cs, ct, 0.05, 0.1, method="betting")
    assert tri.method == "trinomial"
    assert tri.teacher_share <= bet.teacher_share < 1.0
    assert tri.accuracy_drop <= 0.05


def test_trinomial_n_stages():
    # three stages: the path of the guarantee uses the same test on the N-stage drop
    rng = np.random.default_rng(3)
    n = 3000
    s = [rng.uniform(size=n), rng.uniform(size=n)]
    correct = [
        rng.uniform(size=n) < 0.6 + 0.4 * s[0],
        rng.uniform(size=n) < 0.75 + 0.25 * s[1],
        rng.uniform(size=n) < 0.9,
    ]
    r = cal.calibrate_cascade(s, correct, {"accuracy_drop": 0.03, "delta": 0.1})
    b = cal.calibrate_cascade(
        s, correct, {"accuracy_drop": 0.03, "delta": 0.1, "method": "betting"}
    )
    assert r.method == "trinomial" and len(r.thresholds) == 2
    assert r.n_certified >= b.n_certified > 0
    assert r.accuracy_drop <= 0.03


# ------------------------------------------------------------------------------------------
# N stages


def _three_stage_case(n, seed, levels=6):
    rng = np.random.default_rng(seed)
    s = [rng.integers(0, levels, n).astype(float), rng.integers(0, levels, n).astype(float)]
    correct = [
        rng.uniform(size=n) < 0.3 + 0.6 * s[0] / levels,
        rng.uniform(size=n) < 0.5 + 0.4 * s[1] / levels,
        rng.uniform(size=n) < 0.9,
    ]
    return s, correct


def _brute_stage(s, ths, i):
    for k in range(len(ths)):
        if s[k][i] >= ths[k]:
            return k
    return len(ths)


def _brute_combos(s, correct, costs):
    n = len(s[0])
    grids = [[math.inf, *sorted(set(x.tolist()), reverse=True)] for x in s]
    out = []
    for t0 in grids[0]:
        for t1 in grids[1]:
            stages = [_brute_stage(s, (t0, t1), i) for i in range(n)]
            acc = sum(correct[stages[i]][i] for i in range(n)) / n
            share = stages.count(2) / n
            rel = sum(sum(costs[: k + 1]) for k in stages) / n / costs[-1]
            out.append(((t0, t1), acc, share, rel))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_three_stages_match_exhaustive_search(seed):
    n = 40
    s, correct = _three_stage_case(n, seed)
    costs = [1.0, 3.0, 10.0]
    combos = _brute_combos(s, correct, costs)
    accs = sorted(c[1] for c in combos)
    target = accs[len(accs) * 3 // 4]
    r = cal.calibrate_cascade(s, correct, {"accuracy": target}, costs=costs, n_thresholds=n)
    ok = [c for c in combos if c[1] >= target - 1e-12]
    assert r.relative_cost == pytest.approx(min(c[3] for c in ok))
    assert r.accuracy >= target
    assert isinstance(r.thresholds, tuple) and len(r.thresholds) == 2

    budget = float(np.median([c[3] for c in combos]))
    r = cal.calibrate_cascade(s, correct, {"relative_cost": budget}, costs=costs, n_thresholds=n)
    ok = [c for c in combos if c[3] <= budget + 1e-12]
    assert r.accuracy == pytest.approx(max(c[1] for c in ok))
    assert r.relative_cost <= budget + 1e-12

    r = cal.calibrate_cascade(s, correct, 0.3, costs=costs, n_thresholds=n)
    best = min(abs(c[2] - 0.3) for c in combos)
    assert abs(r.teacher_share - 0.3) == pytest.approx(best)
    # and the reported figures are those of routing with the returned thresholds
    stages = [_brute_stage(s, r.thresholds, i) for i in range(n)]
    assert r.teacher_share == pytest.approx(stages.count(2) / n)


def test_two_stage_calibrate_cascade_delegates_to_exact_functions():
    s, cs, ct = _digits_arrays()
    r = cal.calibrate_cascade([s], [cs, ct], {"accuracy": 0.95}, costs=[1, 5])
    assert r == cal.threshold_for_accuracy(s, cs, ct, 0.95, costs=[1, 5])
    r = cal.calibrate_cascade([s], [cs, ct], {"relative_cost": 0.5}, costs=[1, 5])
    assert r == cal.threshold_for_cost(s, cs, ct, 0.5, costs=[1, 5])
    r = cal.calibrate_cascade([s], [cs, ct], 0.3, costs=[1, 5])
    assert r.thresholds == (cal.threshold_for_teacher_share(s, 0.3),)
    r = cal.calibrate_cascade([s], [cs, ct], {"accuracy_drop": 0.05, "delta": 0.1}, costs=[1, 5])
    assert r == cal.guaranteed_threshold(s, cs, ct, 0.05, 0.1, costs=[1, 5])


@pytest.mark.parametrize("method", ["binomial", "betting"])
def test_three_stage_guarantee_path_matches_loop_reference(method):
    n = 600
    s, correct = _three_stage_case(n, 11, levels=50)
    eps, delta, ng = 0.06, 0.1, 20
    target = cal.Target("accuracy_drop", eps, delta=delta, method=method)
    r = cal.calibrate_cascade(s, correct, target, n_thresholds=ng)
    chosen = (math.inf, math.inf)
    pvals = []
    stopped = False
    for lv in [(ng - 1 - j) / ng for j in range(ng)]:
        # the score quantile of each stage, as a threshold midway to the next lower score
        ths = tuple(
            float(sc.separating_threshold_of(x, [np.sort(x)[min(int(lv * n), n - 1)]])[0])
            for x in s
        )
        stages = [_brute_stage(s, ths, i) for i in range(n)]
        # reduce to a 2-stage problem: "kept" = answered before the last stage
        kept_score = np.array([1.0 if k < 2 else 0.0 for k in stages])
        ans = np.array([correct[k][i] for i, k in enumerate(stages)])
        p = _ref_p_value(kept_score, ans, correct[2], 1.0, eps, method)
        pvals.append(p)
        if not stopped and p <= delta:
            chosen = ths
        else:
            stopped = True
    np.testing.assert_allclose(r.p_values, pvals, rtol=1e-9)
    assert r.thresholds == chosen
    assert r.n_certified == next((j for j, p in enumerate(pvals) if p > delta), ng)


def test_calibrate_cascade_errors():
    s, correct = _three_stage_case(30, 0)
    with pytest.raises(ParameterError, match="Expected a target: a teacher share .* got None"):
        cal.calibrate_cascade(s, correct, None)
    with pytest.raises(ParameterError, match="delta and method belong to the accuracy_drop"):
        cal.calibrate_cascade(s, correct, {"teacher_share": 0.2, "delta": 0.1})
    with pytest.raises(ParameterError, match="Unknown target kind 'recall'"):
        cal.Target("recall", 0.9)
    with pytest.raises(ParameterError, match="crossing target takes no value"):
        cal.Target("crossing", 0.5)
    with pytest.raises(ParameterError, match="Expected a number as the accuracy target"):
        cal.Target("accuracy")
    with pytest.raises(ParameterError, match="one correctness array per stage \\(3"):
        cal.calibrate_cascade(s, correct[:2], 0.2)
    with pytest.raises(ParameterError, match="at least one non-final stage"):
        cal.calibrate_cascade([], [correct[0]], 0.2)
    with pytest.raises(SampleCountError, match="has 29"):
        cal.calibrate_cascade([s[0], s[1][:-1]], correct, 0.2)
    with pytest.raises(InfeasibleTargetError, match="No thresholds reach target_accuracy=1") as e:
        cal.calibrate_cascade(s, correct, {"accuracy": 1.0})
    assert e.value.best < 1.0
    with pytest.raises(InfeasibleTargetError, match="costs 0\\.1 of the last stage") as e:
        cal.calibrate_cascade(s, correct, {"relative_cost": 0.05}, costs=[1, 3, 10])
    assert e.value.best == pytest.approx(0.1)
    with pytest.raises(ParameterError, match="teacher_share in"):
        cal.calibrate_cascade(s, correct, 2.0)
    with pytest.raises(ParameterError, match="positive relative_cost target"):
        cal.calibrate_cascade(s, correct, {"relative_cost": -1.0})
    with pytest.raises(ParameterError, match="epsilon strictly between"):
        cal.calibrate_cascade(s, correct, {"accuracy_drop": 1.0})
    with pytest.raises(InsufficientDataError, match="needs at least"):
        cal.calibrate_cascade(s, correct, {"accuracy_drop": 0.01})


# ------------------------------------------------------------------------------------------
# calibrate_outputs (the CLI's entry point)


def test_calibrate_outputs_agrees_with_array_functions():
    s_log, t_log, y = _digits()["calibrate"]
    s, cs, ct = _digits_arrays()
    r = cal.calibrate_outputs([s_log, t_log], y, {"accuracy": 0.95}, score="margin")
    assert r == cal.threshold_for_accuracy(s, cs, ct, 0.95)
    r = cal.calibrate_outputs([s_log, t_log.argmax(1)], y, {"accuracy_drop": 0.05}, score="margin")
    assert r == cal.guaranteed_threshold(s, cs, ct, 0.05, 0.1)
    target = {"accuracy_drop": 0.05, "delta": 0.2, "method": "binomial"}
    r = cal.calibrate_outputs([s_log, t_log], None, target, score="margin")
    ref = cal.guaranteed_threshold_label_free(s, s_log.argmax(1), t_log.argmax(1), 0.05, 0.2)
    assert r.label_free and r.thresholds == ref.thresholds
    r = cal.calibrate_outputs([s_log, t_log], y, "crossing", score="margin", costs=[1, 4])
    assert r.method == "crossing" and r.thresholds == (cal.crossing_threshold(s, cs),)
    with pytest.raises(ParameterError, match="at least 2 stages"):
        cal.calibrate_outputs([s_log], y, 0.3)
    with pytest.raises(ParameterError, match="2 stages for the crossing"):
        cal.calibrate_outputs([s_log, s_log, t_log], y, "crossing")


def test_auto_method_and_unknown_method():
    s_log, t_log, y = _digits()["calibrate"]
    s = sc.margin(s_log)
    r = cal.calibrate_outputs([s_log, t_log], None, {"accuracy_drop": 0.05}, score="margin")
    assert r.method == "binomial" and r.label_free
    r = cal.calibrate_outputs([s_log, t_log], y, {"accuracy_drop": 0.05}, score="margin")
    assert r.method == "trinomial" and not r.label_free
    cs, ct = s_log.argmax(1) == y, t_log.argmax(1) == y
    with pytest.raises(UnknownNameError, match=r"expected one of \[.*'auto'\]"):
        cal.calibrate_cascade([s], [cs, ct], {"accuracy_drop": 0.05, "method": "exact"})
    assert cal.guaranteed_threshold(s, cs, ct, 0.05, 0.1, method="auto").method == "trinomial"


def test_threshold_grid_from_another_split_is_accepted():
    from cascadekit import curves

    s_log = _digits()["test"][0]
    other = curves.threshold_grid(sc.margin(s_log), 50)  # fixed before the calibration rows
    assert np.all(np.diff(other) > 0) and other.shape[0] <= 51 and other[-1] == math.inf
    s, cs, ct = _digits_arrays("calibrate")
    r = cal.guaranteed_threshold(s, cs, ct, 0.05, 0.1, grid=other)
    safest_first = other[-2::-1]  # tested largest first; +inf needs no test
    assert r.grid == tuple(safest_first) and r.thresholds[0] in {math.inf, *other}
    with pytest.raises(ParameterError, match="n_thresholds >= 1"):
        curves.threshold_grid(s, 0)


def test_default_guarantee_grid_is_the_threshold_grid_safest_first():
    from cascadekit import curves

    s, cs, ct = _digits_arrays()
    r = cal.guaranteed_threshold(s, cs, ct, 0.05, 0.1, n_thresholds=40)
    assert r.grid == tuple(curves.threshold_grid(s, 40)[-2::-1])
    r2 = cal.guaranteed_threshold(s, cs, ct, 0.05, 0.1, grid=curves.threshold_grid(s, 40))
    assert r2.thresholds == r.thresholds and r2.p_values == r.p_values


def test_crossing_large_groups_are_thinned_but_stable():
    rng = np.random.default_rng(5)
    s = np.r_[rng.normal(0, 1, 40_000), rng.normal(4, 1, 60_000)]
    right = np.r_[np.zeros(40_000), np.ones(60_000)]
    assert cal.crossing_threshold(s, right) == pytest.approx(2.0, abs=0.15)


def test_label_free_target_is_agreement_not_accuracy():
    s_log, t_log, _ = _digits()["calibrate"]
    # without labels the accuracy target is agreement with the last stage
    r = cal.calibrate_outputs([s_log, t_log], None, {"accuracy": 0.95}, score="margin")
    agree = s_log.argmax(1) == t_log.argmax(1)
    keep = sc.margin(s_log) >= r.thresholds[0]
    assert r.agreement == pytest.approx(np.mean(np.where(keep, agree, True)))
    assert r.agreement >= 0.95
    assert r.method == "agreement" and r.accuracy_drop is None
    assert r.disagreement == pytest.approx(1 - r.agreement)
    d = r.to_dict()
    assert d["measured_against"] == "agreement with the last stage"
    assert not {"accuracy", "teacher_accuracy", "accuracy_drop"} & set(d)


# ------------------------------------------------------------------------------------------
# tie-in: every calibration target is a reduction of the curve it reads


def _cheapest(curve, ok):
    """Independent reduction: among the points ``ok``, the cheapest, then the most accurate."""
    idx = np.flatnonzero(ok)
    idx = idx[curve.relative_cost[idx] <= curve.relative_cost[idx].min() + 1e-12]
    return int(idx[np.argmax(curve.accuracy[idx])])


def _same_point(r, curve, i):
    th = np.asarray(curve.thresholds[i], dtype=float).reshape(-1)
    assert r.thresholds == tuple(th)
    assert (r.teacher_share, r.accuracy, r.relative_cost) == (
        curve.teacher_share[i],
        curve.accuracy[i],
        curve.relative_cost[i],
    )


@pytest.mark.parametrize("score", ["margin", "max_softmax", "entropy"])
def test_two_stage_targets_are_reductions_of_cascade_curve(score):
    from cascadekit import curves

    s, cs, ct = _digits_arrays(score=score)
    costs = [1.0, 6.0]
    curve = curves.cascade_curve(s, cs, ct, costs=costs)
    target = float(np.quantile(curve.accuracy, 0.7))
    r = cal.threshold_for_accuracy(s, cs, ct, target, costs=costs)
    _same_point(r, curve, _cheapest(curve, curve.accuracy >= target - 1e-12))
    # the accuracy target at the teacher's accuracy is the curve's speed-up at that accuracy
    r = cal.threshold_for_accuracy(s, cs, ct, float(np.mean(ct)), costs=costs)
    assert curves.speedup_at_teacher_accuracy(curve) == 1.0 / r.relative_cost
    assert curves.teacher_share_at_teacher_accuracy(curve) == r.teacher_share
    budget = 0.45
    r = cal.threshold_for_cost(s, cs, ct, budget, costs=costs)
    ok = curve.relative_cost <= budget + 1e-12
    best = curve.accuracy[ok].max()
    _same_point(r, curve, _cheapest(curve, ok & (curve.accuracy >= best - 1e-12)))
    assert r.accuracy == curves.accuracy_at_budget(curve, budget)
    r = cal.calibrate_cascade([s], [cs, ct], 0.3, costs=costs)
    dist = np.abs(curve.teacher_share - 0.3)
    _same_point(r, curve, int(np.flatnonzero(dist <= dist.min() + 1e-12)[0]))
    assert r.thresholds[0] == cal.threshold_for_teacher_share(s, 0.3)
    r = cal.calibrate_cascade([s], [cs, ct], "crossing", costs=costs)
    assert r.thresholds == (cal.crossing_threshold(s, cs),)
    _same_point(r, curve, int(np.flatnonzero(curve.thresholds == r.thresholds[0])[0]))


@pytest.mark.parametrize("seed", range(3))
def test_n_stage_targets_are_reductions_of_grid_curve(seed):
    from cascadekit import curves

    s, correct = _three_stage_case(300, seed, levels=40)
    costs = [1.0, 3.0, 10.0]
    ng = 16
    grid = curves.grid_curve(
        s, correct, costs, grids=[curves.threshold_grid(x, ng) for x in s], pareto=False
    )
    assert grid.thresholds.shape[1] == 2
    target = float(np.quantile(grid.accuracy, 0.8))
    r = cal.calibrate_cascade(s, correct, {"accuracy": target}, costs=costs, n_thresholds=ng)
    _same_point(r, grid, _cheapest(grid, grid.accuracy >= target - 1e-12))
    r = cal.calibrate_cascade(s, correct, {"relative_cost": 0.5}, costs=costs, n_thresholds=ng)
    ok = grid.relative_cost <= 0.5 + 1e-12
    best = grid.accuracy[ok].max()
    _same_point(r, grid, _cheapest(grid, ok & (grid.accuracy >= best - 1e-12)))
    r = cal.calibrate_cascade(s, correct, 0.3, costs=costs, n_thresholds=ng)
    assert abs(r.teacher_share - 0.3) == pytest.approx(np.abs(grid.teacher_share - 0.3).min())
    # and the reduction is what routing with the thresholds gives (no routing loop inside)
    stage = assign_stages(s, list(r.thresholds))
    assert r.teacher_share == np.mean(stage == 2)
    assert r.accuracy == pytest.approx(np.mean(np.asarray(correct)[stage, np.arange(300)]))


def test_reduce_curve_rejects_targets_without_a_curve():
    from cascadekit import curves

    curve = curves.cascade_curve([0.9, 0.5, 0.1], [1, 0, 0], [1, 1, 0])
    with pytest.raises(ParameterError, match="'crossing', which does not read a curve"):
        cal.reduce_curve(curve, "crossing")
    with pytest.raises(InfeasibleTargetError, match="No threshold reaches target_accuracy=1"):
        cal.reduce_curve(curve, {"accuracy": 1.0})


def test_auto_method_picks_trinomial_up_to_its_size_limit_then_betting() -> None:
    from cascadekit.calibration import TRINOMIAL_MAX_N, guaranteed_threshold

    rng = np.random.default_rng(0)
    for n, expected in ((2_000, "trinomial"), (TRINOMIAL_MAX_N + 1, "betting")):
        s = rng.uniform(size=n)
        cs = rng.uniform(size=n) < 0.7 + 0.3 * s
        ct = rng.uniform(size=n) < 0.9
        assert guaranteed_threshold(s, cs, ct, 0.02, 0.1).method == expected
    r = guaranteed_threshold(s, cs, ct, 0.02, 0.1, method="binomial")
    assert r.method == "binomial"
    with pytest.raises(UnknownNameError, match="Unknown guarantee method 'exact'"):
        guaranteed_threshold(s, cs, ct, 0.02, 0.1, method="exact")


def test_trinomial_refuses_a_delta_below_its_reach_and_auto_uses_betting() -> None:
    from cascadekit.calibration import TRINOMIAL_MIN_DELTA, guaranteed_threshold

    rng = np.random.default_rng(1)
    s = rng.uniform(size=3000)
    cs = rng.uniform(size=3000) < 0.8 + 0.2 * s
    ct = rng.uniform(size=3000) < 0.95
    tiny = TRINOMIAL_MIN_DELTA / 10
    assert guaranteed_threshold(s, cs, ct, 0.05, tiny).method == "betting"
    with pytest.raises(ParameterError, match=r"Expected delta >= 1e-08 for the trinomial test"):
        guaranteed_threshold(s, cs, ct, 0.05, tiny, method="trinomial")
    with pytest.raises(ParameterError, match="method='betting' or 'binomial'"):
        cal.min_calibration_size(0.03, tiny, "trinomial")
