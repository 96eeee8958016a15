"""Curves: exact curves against brute force, baselines' closed forms, metrics, N-stage grids,
Pareto fronts, pool analysis on real digits models, bootstrap, and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_softmax

from cascadekit import assign_stages, scores
from cascadekit import curves as cv
from cascadekit.curves import exact
from cascadekit.errors import (
    EmptyInputError,
    InfeasibleTargetError,
    InputShapeError,
    LabelError,
    NonFiniteError,
    ParameterError,
    SampleCountError,
    UnknownNameError,
)

RNG = np.random.default_rng(7)


# ----------------------------------------------------------------------------------------------
# brute-force references
# ----------------------------------------------------------------------------------------------


def _brute_curve(s, vs, vt, costs=(1.0, 1.0)):
    """One point per distinct score (and +inf), routing every input with a mask.

    The reported threshold of a point is the midpoint between its score and the next lower one
    (-inf for the lowest): it keeps the same inputs, away from every score.
    """
    cum = np.cumsum(costs)
    rows = []
    u = np.unique(s)
    mids = [-np.inf, *((u[1:] + u[:-1]) / 2), np.inf]
    for t, lowest_kept in zip(mids, [*u, np.inf], strict=True):
        keep = s >= lowest_kept
        assert np.array_equal(keep, s >= t)
        stage = np.where(keep, 0, 1)
        rows.append(
            (t, np.mean(~keep), np.mean(np.where(keep, vs, vt)), cum[stage].mean() / costs[-1])
        )
    return [np.array(col) for col in zip(*rows, strict=True)]


def _random_case(n, n_distinct=None, binary=True, rng=RNG):
    s = (
        rng.integers(0, n_distinct, n).astype(float)
        if n_distinct
        else rng.normal(size=n).round(rng.integers(1, 4))
    )
    if binary:
        vs, vt = rng.random(n) < 0.6, rng.random(n) < 0.75
    else:
        vs, vt = rng.normal(size=n), rng.normal(0.3, 1.0, size=n)
    return s, vs, vt


def _brute_pareto(c, a):
    keep = []
    for i in range(len(c)):
        dominated = any(
            (c[j] < c[i] and a[j] >= a[i])
            or (c[j] == c[i] and a[j] > a[i])
            or (c[j] == c[i] and a[j] == a[i] and j < i)
            for j in range(len(c))
            if j != i
        )
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: (c[i], -a[i]))


def _brute_oracle_at(vs, vt, m):
    """Best total value with at most m inputs sent to the teacher (subset enumeration)."""
    n = len(vs)
    best = -np.inf
    for k in range(m + 1):
        for sub in itertools.combinations(range(n), k):
            v = vs.copy()
            v[list(sub)] = vt[list(sub)]
            best = max(best, v.sum())
    return best / n


# ----------------------------------------------------------------------------------------------
# correctness
# ----------------------------------------------------------------------------------------------


def test_correctness_top1_is_argmax_and_labels_work() -> None:
    z = RNG.integers(0, 3, size=(200, 4)).astype(float)  # many ties
    y = RNG.integers(0, 4, 200)
    np.testing.assert_array_equal(cv.correctness(z, y), np.argmax(z, axis=1) == y)
    pred = np.argmax(z, axis=1)
    np.testing.assert_array_equal(cv.correctness(pred, y), pred == y)
    assert cv.correctness(z, y).dtype == bool


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_correctness_top_k_matches_stable_sort_reference(k: int) -> None:
    z = RNG.integers(0, 4, size=(300, 5)).astype(np.float32)  # heavy ties
    y = RNG.integers(0, 5, 300)
    ref = [y[i] in sorted(range(5), key=lambda c, i=i: (-z[i, c], c))[:k] for i in range(300)]
    np.testing.assert_array_equal(cv.correctness(z, y, top_k=k), ref)


# ----------------------------------------------------------------------------------------------
# the exact 2-stage curve
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_distinct", [1, 2, 5, None])
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_cascade_curve_matches_brute_force(n_distinct, binary, seed) -> None:
    rng = np.random.default_rng(seed)
    s, vs, vt = _random_case(int(rng.integers(1, 60)), n_distinct, binary, rng)
    costs = (float(rng.uniform(0, 3)), float(rng.uniform(0.5, 5)))
    c = cv.cascade_curve(s, vs, vt, costs=costs)
    th, share, acc, rel = _brute_curve(s, vs.astype(float), vt.astype(float), costs)
    assert c.thresholds.shape == (len(c), 1)  # (n_points, N-1) for two stages too
    np.testing.assert_array_equal(c.thresholds[:, 0], th)
    np.testing.assert_allclose(c.teacher_share, share, rtol=0, atol=1e-15)
    np.testing.assert_allclose(c.accuracy, acc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c.relative_cost, rel, rtol=1e-12)
    assert c.n_stages == 2 and c.stage_shares is None
    np.testing.assert_array_equal(c.costs, costs)


@pytest.mark.parametrize("n_distinct", [1, 3, None])
def test_binary_fast_path_equals_the_general_path(n_distinct) -> None:
    s, vs, vt = _random_case(500, n_distinct)
    vs, vt = vs.astype(float), vt.astype(float)
    fast = exact._gains_binary(s, vs, vt)
    general = exact._gains_sorted(s, vs, vt)
    for f, g in zip(fast, general, strict=True):
        np.testing.assert_array_equal(f, g)
    # 0/1 floats take the fast path; 0/1 plus a tiny offset the general one: same curve
    c1 = cv.cascade_curve(s, vs, vt)
    c2 = cv.cascade_curve(s, vs + 0.25, vt + 0.25)
    np.testing.assert_allclose(c2.accuracy - 0.25, c1.accuracy, atol=1e-12)


def test_cascade_curve_routes_like_assign_stages() -> None:
    s, vs, vt = _random_case(80, n_distinct=6)
    c = cv.cascade_curve(s, vs, vt, costs=[1, 3])
    for t, share, acc in zip(c.thresholds, c.teacher_share, c.accuracy, strict=True):
        stage = assign_stages([s], list(t))  # a row is the thresholds of one point
        assert np.mean(stage == 1) == share
        assert np.mean(np.where(stage == 0, vs, vt)) == pytest.approx(acc, abs=1e-12)


def test_losses_give_the_mean_loss_and_mirror_metrics() -> None:
    s, es, et = _random_case(120, n_distinct=None, binary=False)
    loss_s, loss_t = es**2, (0.5 * et) ** 2
    lc = cv.cascade_curve(s, loss_s, loss_t, higher_is_better=False)
    gc = cv.cascade_curve(s, -loss_s, -loss_t)  # same thing as a gain
    np.testing.assert_allclose(lc.accuracy, -gc.accuracy, atol=1e-12)
    ls = cv.summarize(lc, loss_s, loss_t)
    gs = cv.summarize(gc, -loss_s, -loss_t)
    for key in ("auc", "random_auc", "oracle_auc", "student_accuracy", "teacher_accuracy"):
        assert ls[key] == pytest.approx(-gs[key], abs=1e-12)
    for key in ("gap_captured", "apgr", "teacher_share_at_teacher_accuracy"):
        assert ls[key] == pytest.approx(gs[key], abs=1e-12)
    assert ls["speedup_at_teacher_accuracy"] == pytest.approx(gs["speedup_at_teacher_accuracy"])
    budget = float(lc.relative_cost[len(lc) // 2])
    assert cv.accuracy_at_budget(lc, budget) == pytest.approx(-cv.accuracy_at_budget(gc, budget))


_case = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(-3, 3) | st.floats(-5, 5, allow_nan=False), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.tuples(st.floats(0, 10), st.floats(0.01, 10)),
        st.randoms(use_true_random=False),
    )
)


@settings(max_examples=150, deadline=None)
@given(_case)
def test_curve_properties(case) -> None:
    s_l, vs_l, vt_l, costs, rnd = case
    s, vs, vt = np.array(s_l, dtype=float), np.array(vs_l), np.array(vt_l)
    c = cv.cascade_curve(s, vs, vt, costs=costs)
    # ends: all on the student at share 0, all on the teacher at share 1
    assert c.teacher_share[0] == 0.0 and c.teacher_share[-1] == 1.0
    assert c.accuracy[0] == np.mean(vs) and c.accuracy[-1] == np.mean(vt)
    th = c.thresholds[:, 0]
    assert th[0] == -np.inf and th[-1] == np.inf
    # monotone shares and thresholds; one point per block of tied scores plus +inf
    assert np.all(np.diff(c.teacher_share) > 0) and np.all(th[1:] > th[:-1])
    assert len(c) == scores.resolution_blocks(np.sort(s)).size + 1
    # relative cost = (c_S + share * c_T) / c_T
    np.testing.assert_allclose(c.relative_cost, (costs[0] + c.teacher_share * costs[1]) / costs[1])
    # permuting rows changes nothing
    perm = list(range(len(s)))
    rnd.shuffle(perm)
    p = cv.cascade_curve(s[perm], vs[perm], vt[perm], costs=costs)
    for f in ("thresholds", "teacher_share", "accuracy", "relative_cost"):
        np.testing.assert_array_equal(getattr(p, f), getattr(c, f))  # 0/1 sums are exact
    # the oracle bounds the curve from above at every share
    o = cv.oracle_curve(vs, vt, costs=costs)
    assert np.all(c.accuracy <= np.interp(c.teacher_share, o.teacher_share, o.accuracy) + 1e-12)


# ----------------------------------------------------------------------------------------------
# baselines and metrics
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_oracle_binary_closed_forms(seed) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    vs, vt = rng.random(n) < rng.random(), rng.random(n) < rng.random()
    acc_s = vs.mean()
    q = np.mean(~vs & vt)
    o = cv.oracle_curve(vs, vt)
    k = np.linspace(0, 1, 257)
    np.testing.assert_allclose(
        np.interp(k, o.teacher_share, o.accuracy), acc_s + np.minimum(k, q), atol=1e-12
    )
    assert cv.oracle_auc(vs, vt) == pytest.approx(acc_s + q - q**2 / 2, abs=1e-12)
    assert cv.auc(o) == pytest.approx(cv.oracle_auc(vs, vt), abs=1e-15)
    assert o.accuracy.max() == pytest.approx(np.mean(vs | vt))


@pytest.mark.parametrize("seed", range(3))
def test_oracle_general_values_match_subset_enumeration(seed) -> None:
    rng = np.random.default_rng(seed)
    n = 7
    vs, vt = rng.normal(size=n).round(1), rng.normal(size=n).round(1)  # ties in improvement
    o = cv.oracle_curve(vs, vt)
    for m in range(n + 1):
        got = np.interp(m / n, o.teacher_share, o.accuracy)
        assert got == pytest.approx(_brute_oracle_at(vs, vt, m), abs=1e-12)
    lo = cv.oracle_curve(-vs, -vt, higher_is_better=False)  # losses: largest reductions first
    np.testing.assert_allclose(lo.accuracy, -o.accuracy)
    # exact area of the piecewise-linear curve = trapezoid on a fine grid of whole inputs
    fine = [_brute_oracle_at(vs, vt, m) for m in range(n + 1)]
    assert cv.oracle_auc(vs, vt) == pytest.approx(np.trapezoid(fine, np.arange(n + 1) / n))


@pytest.mark.parametrize(("a_s", "a_t"), [(0.7, 0.8), (0.9, 0.6), (0.5, 0.5)])
def test_random_curve_and_auc_closed_form(a_s, a_t) -> None:
    r = cv.random_curve(a_s, a_t, costs=[1, 4], n_points=11)
    assert cv.auc(r) == pytest.approx(cv.random_auc(a_s, a_t)) == pytest.approx((a_s + a_t) / 2)
    np.testing.assert_allclose(r.accuracy, a_s + r.teacher_share * (a_t - a_s))
    np.testing.assert_allclose(r.relative_cost, 0.25 + r.teacher_share)
    assert (r.thresholds[0, 0], r.thresholds[-1, 0]) == (-np.inf, np.inf)
    if a_s != a_t:
        assert cv.apgr(r) == pytest.approx(0.5)
    else:
        assert math.isnan(cv.apgr(r))


def test_metrics_on_a_hand_computed_case() -> None:
    # scores descending: S right, S right, S wrong/T right, S wrong/T right; T wrong on row 1
    s = np.array([0.9, 0.8, 0.4, 0.1])
    vs, vt = np.array([1, 1, 0, 0]), np.array([1, 0, 1, 1])
    c = cv.cascade_curve(s, vs, vt, costs=[1, 4])
    np.testing.assert_allclose(c.accuracy, [0.5, 0.75, 1.0, 0.75, 0.75])
    area = 0.25 * (0.625 + 0.875 + 0.875 + 0.75)
    q = 0.5
    oracle = 0.5 + q - q**2 / 2
    summary = cv.summarize(c, vs, vt)
    assert summary == pytest.approx(
        {
            "auc": area,
            "random_auc": 0.625,
            "oracle_auc": oracle,
            "gap_captured": (area - 0.625) / (oracle - 0.625),
            "apgr": (area - 0.5) / (0.75 - 0.5),
            "teacher_share_at_teacher_accuracy": 0.25,
            "speedup_at_teacher_accuracy": 1 / ((1 + 0.25 * 4) / 4),
            "student_accuracy": 0.5,
            "teacher_accuracy": 0.75,
        }
    )
    assert cv.auc(c) == summary["auc"]
    assert cv.apgr(c) == summary["apgr"]
    assert cv.gap_captured(c, vs, vt) == summary["gap_captured"]
    assert cv.teacher_share_at_teacher_accuracy(c) == 0.25
    assert cv.speedup_at_teacher_accuracy(c) == 2.0
    assert cv.teacher_share_at_teacher_accuracy(c, 1.0) == 0.5
    assert [cv.accuracy_at_budget(c, b) for b in (0.25, 0.6, 0.75, 9)] == [0.5, 0.75, 1.0, 1.0]


def test_apgr_gap_and_summary_of_baselines() -> None:
    # a worked example: acc_S = 0.70, acc_T = 0.80, q = 0.15 -> oracle APGR 1.39
    vs = np.repeat([1, 0, 1, 0], [65, 15, 5, 15])
    vt = np.repeat([1, 1, 0, 0], [65, 15, 5, 15])
    o = cv.oracle_curve(vs, vt)
    assert cv.apgr(o, 0.7, 0.8) == pytest.approx((0.15 - 0.15**2 / 2) / 0.1)
    assert cv.gap_captured(o, vs, vt) == pytest.approx(1.0)
    assert cv.summarize(o, vs, vt)["gap_captured"] == pytest.approx(1.0)
    r = cv.random_curve(0.7, 0.8)
    assert cv.gap_captured(r, vs, vt) == pytest.approx(0.0, abs=1e-12)
    rs = cv.summarize(r, vs, vt)
    assert rs["apgr"] == pytest.approx(0.5)
    assert rs["teacher_share_at_teacher_accuracy"] == 1.0
    # equal student and teacher: APGR undefined; an oracle no better than random: gap undefined
    same = np.array([1, 0, 1, 0])
    c = cv.cascade_curve([1, 2, 3, 4], same, same)
    assert math.isnan(cv.apgr(c)) and math.isnan(cv.gap_captured(c, same, same))


def test_speedup_is_below_one_when_only_the_teacher_end_qualifies() -> None:
    vs, vt = np.array([0, 0, 0, 1]), np.array([1, 1, 1, 1])
    c = cv.cascade_curve([4.0, 3.0, 2.0, 1.0], vs, vt, costs=[1, 2])  # the worst ordering
    assert cv.teacher_share_at_teacher_accuracy(c) == 1.0
    assert cv.speedup_at_teacher_accuracy(c) == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(3))
def test_teacher_share_and_budget_match_brute_force(seed) -> None:
    rng = np.random.default_rng(seed)
    s, vs, vt = _random_case(50, n_distinct=8, rng=rng)
    c = cv.cascade_curve(s, vs, vt, costs=[1, 5])
    _, share, acc, rel = _brute_curve(s, vs, vt, (1, 5))
    ok = acc >= vt.mean() - 1e-12
    i = np.flatnonzero(ok)[np.argmin(rel[ok])]
    assert cv.teacher_share_at_teacher_accuracy(c) == share[i]
    assert cv.speedup_at_teacher_accuracy(c) == pytest.approx(1 / rel[i])
    for b in np.linspace(0.2, 1.2, 11):
        assert cv.accuracy_at_budget(c, b) == pytest.approx(acc[rel <= b + 1e-12].max())


def test_downsample_keeps_ends_and_spreads_evenly() -> None:
    s, vs, vt = _random_case(5000)
    c = cv.cascade_curve(s + RNG.normal(size=5000) * 1e-3, vs, vt)
    d = c.downsample(21)
    assert len(d) <= 21 and len(d) >= 20
    assert d.teacher_share[0] == 0 and d.teacher_share[-1] == 1
    assert d.accuracy[0] == c.accuracy[0] and d.accuracy[-1] == c.accuracy[-1]
    assert np.max(np.diff(d.teacher_share)) < 1.5 / 20
    assert np.all(np.isin(d.thresholds, c.thresholds))
    small = cv.cascade_curve([1, 2, 3], [1, 0, 1], [1, 1, 1])
    same = cv.downsample(small, 10)
    np.testing.assert_array_equal(same.accuracy, small.accuracy)
    assert same is not small


def test_to_records_and_json_safety() -> None:
    c = cv.cascade_curve([1.0, 2.0], [1, 0], [1, 1], costs=[1, 2])
    recs = c.to_records()
    assert recs[0] == {
        "threshold": -math.inf,
        "teacher_share": 0.0,
        "accuracy": 0.5,
        "relative_cost": 0.5,
    }
    assert recs[1]["threshold"] == 1.5  # midway between the two scores
    assert recs[-1]["threshold"] == math.inf
    safe = c.to_records(json_safe=True)
    assert safe[-1]["threshold"] is None and safe[0]["threshold"] == "-inf"  # router-file form
    g = cv.grid_curve([np.array([1.0, 2.0]), np.array([0.0, 1.0])], [[1, 0], [0, 1], [1, 1]])
    rec = g.to_records(json_safe=True)[-1]
    assert rec["thresholds"] == [None, None] and rec["stage_shares"] == [0.0, 0.0, 1.0]


# ----------------------------------------------------------------------------------------------
# Pareto fronts and N-stage grids
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_pareto_front_matches_brute_force(seed) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    c, a = rng.integers(0, 6, n).astype(float), rng.integers(0, 6, n) / 5  # heavy ties
    idx = cv.pareto_front(c, a)
    assert list(idx) == _brute_pareto(c, a)
    assert np.all(np.diff(c[idx]) > 0) and np.all(np.diff(a[idx]) > 0)
    assert list(cv.pareto_front(c, -a, higher_is_better=False)) == list(idx)
    assert cv.pareto_front([], []).shape == (0,)


def _brute_grid(ss, vals, costs, n_thresholds):
    grids = [cv.threshold_grid(s, n_thresholds) for s in ss]
    cum = np.cumsum(costs)
    pts = []
    for ths in itertools.product(*grids):
        stage = assign_stages(ss, list(ths))
        acc = np.mean(np.choose(stage, vals))
        shares = np.bincount(stage, minlength=len(vals)) / len(stage)
        pts.append((cum[stage].mean() / costs[-1], acc, shares))
    return pts


@pytest.mark.parametrize(("n_stages", "n_thresholds", "seed"), [(3, 6, 0), (3, 9, 1), (4, 4, 2)])
def test_grid_curve_matches_brute_force_on_the_same_grid(n_stages, n_thresholds, seed) -> None:
    rng = np.random.default_rng(seed)
    n = 70
    ss = [
        rng.integers(0, 5, n).astype(float) + rng.random(n) * (k % 2) for k in range(n_stages - 1)
    ]
    vals = [(rng.random(n) < 0.5 + 0.1 * k).astype(float) for k in range(n_stages)]
    costs = np.array([1.0, 2.5, 4.0, 9.0][:n_stages])
    pts = _brute_grid(ss, vals, costs, n_thresholds)
    rel = np.array([p[0] for p in pts])
    acc = np.array([p[1] for p in pts])
    # every grid point: re-route with its thresholds
    full = cv.grid_curve(ss, vals, costs, n_thresholds=n_thresholds, pareto=False)
    assert len(full) == len(pts)
    for i in range(len(full)):
        stage = assign_stages(ss, list(full.thresholds[i]))
        assert full.accuracy[i] == pytest.approx(np.mean(np.choose(stage, vals)), abs=1e-12)
        np.testing.assert_allclose(
            full.stage_shares[i], np.bincount(stage, minlength=n_stages) / n, atol=1e-12
        )
        assert full.relative_cost[i] == pytest.approx(np.cumsum(costs)[stage].mean() / costs[-1])
    # Pareto set equals the brute-force front (plus the forced all-last end)
    front = cv.grid_curve(ss, vals, costs, n_thresholds=n_thresholds)
    ref = _brute_pareto(np.round(rel, 12), np.round(acc, 12))
    ref_pts = {(round(rel[i], 9), round(acc[i], 9)) for i in ref}
    got = {
        (round(r, 9), round(a, 9)) for r, a in zip(front.relative_cost, front.accuracy, strict=True)
    }
    last = (round(float(np.sum(costs) / costs[-1]), 9), round(vals[-1].mean(), 9))
    assert got == ref_pts | {last}
    # ends and order
    np.testing.assert_array_equal(front.stage_shares[0], np.eye(n_stages)[0])
    np.testing.assert_array_equal(front.stage_shares[-1], np.eye(n_stages)[-1])
    assert front.accuracy[0] == vals[0].mean() and front.accuracy[-1] == vals[-1].mean()
    assert np.all(np.diff(front.relative_cost) > 0) and np.all(np.diff(front.accuracy[:-1]) > 0)
    assert front.thresholds.shape == (len(front), n_stages - 1)
    assert front.n_stages == n_stages


@pytest.mark.parametrize("n_thresholds", [1, 2, 7, 50])
def test_threshold_grid_levels_are_shares_sent_on(n_thresholds) -> None:
    s = RNG.integers(0, 12, 97).astype(float)  # ties
    g = cv.threshold_grid(s, n_thresholds, unique=False)
    assert g.shape == (n_thresholds + 1,) and g[0] == -np.inf and g[-1] == np.inf
    assert np.all(g[1:] >= g[:-1]) and not np.isin(g, s).any()
    for k, t in enumerate(g[:-1]):  # level k/n: at most that share sent on, a whole tie block
        srt = np.sort(s)
        pos = math.floor(k * s.shape[0] / n_thresholds)
        assert np.mean(s < t) <= k / n_thresholds and np.sum(s < t) == np.sum(srt < srt[pos])
    assert np.array_equal(cv.threshold_grid(s, n_thresholds), np.unique(g))


def test_grid_curve_with_two_stages_is_the_exact_curve_on_the_grid() -> None:
    s, vs, vt = _random_case(300, n_distinct=None)
    g = cv.grid_curve([s], [vs, vt], costs=[1, 3], n_thresholds=30, pareto=False)
    c = cv.cascade_curve(s, vs, vt, costs=[1, 3])
    assert g.thresholds.shape == (len(g), 1) and g.n_stages == 2
    for t, a in zip(g.thresholds[:, 0], g.accuracy, strict=True):
        j = np.searchsorted(c.thresholds[:, 0], t)  # first curve threshold >= t: same routing
        assert a == pytest.approx(c.accuracy[min(j, len(c) - 1)], abs=1e-12)
    assert cv.auc(cv.grid_curve([s], [vs, vt], n_thresholds=30)) <= cv.auc(c) + 0.05


def test_summary_of_a_three_stage_curve_uses_first_and_last_stage() -> None:
    ss = [RNG.normal(size=200), RNG.normal(size=200)]
    vals = [RNG.random(200) < p for p in (0.6, 0.7, 0.8)]
    g = cv.grid_curve(ss, vals, costs=[1, 2, 4], n_thresholds=10)
    out = cv.summarize(g, vals[0], vals[-1])
    assert out["student_accuracy"] == g.accuracy[0] and out["teacher_accuracy"] == g.accuracy[-1]
    assert 0 <= out["teacher_share_at_teacher_accuracy"] <= 1
    x = (g.relative_cost - g.relative_cost[0]) / (g.relative_cost[-1] - g.relative_cost[0])
    assert out["auc"] == pytest.approx(np.trapezoid(g.accuracy, x))
    d = g.downsample(5)
    assert len(d) <= 5 and d.accuracy[-1] == g.accuracy[-1]


# ----------------------------------------------------------------------------------------------
# pool analysis on real models (digits)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_pair():
    from cascadekit.data.digits import load_digits_pair

    return load_digits_pair()


@pytest.fixture(scope="module")
def digits_pool(digits_pair):
    pair = digits_pair
    z_s, z_t = pair.logits["test"]["student"], pair.logits["test"]["teacher"]

    # a third real model: the ensemble (mean log-probabilities) of both, costing both
    z_e = (log_softmax(z_s, axis=1) + log_softmax(z_t, axis=1)) / 2
    costs = [
        pair.flops["student"],
        pair.flops["teacher"],
        pair.flops["student"] + pair.flops["teacher"],
    ]
    return [z_s, z_t, z_e], pair.labels["test"], costs, ["student", "teacher", "ensemble"]


def _step_cost(points, a):
    ok = [p.cost for p in points if p.accuracy >= a - 1e-12]
    return min(ok) if ok else np.inf


@pytest.mark.parametrize("max_depth", [2, 3])
def test_pool_frontier_on_digits(digits_pool, max_depth) -> None:
    outs, y, costs, names = digits_pool
    order = list(np.argsort(costs, kind="stable"))
    pf = cv.pool_frontier(outs, y, costs, names, max_depth=max_depth, n_thresholds=20)
    assert pf.names == [names[i] for i in order]
    accs = [float(np.mean(np.argmax(outs[i], 1) == y)) for i in order]
    np.testing.assert_allclose(pf.accuracies, accs)
    n_cascades = 3 + (1 if max_depth == 3 else 0)
    assert len(pf.curves) == n_cascades
    # front endpoints
    assert pf.single_front[0].models == (pf.names[0],)
    assert pf.single_front[-1].accuracy == max(accs)
    assert pf.cascade_front[0].models == (pf.names[0],)
    everything = max(float(c.accuracy.max()) for c in pf.curves.values())
    assert pf.cascade_front[-1].accuracy == pytest.approx(max(everything, max(accs)))
    fc = np.array([p.cost for p in pf.cascade_front])
    fa = np.array([p.accuracy for p in pf.cascade_front])
    assert np.all(np.diff(fc) > 0) and np.all(np.diff(fa) > 0)
    # the cascade front is never below the best single model at equal cost
    for p in pf.singles:
        assert _step_cost(pf.cascade_front, p.accuracy) <= p.cost * (1 + 1e-12)
    for budget in np.linspace(min(costs), max(costs), 50):
        best_single = max((p.accuracy for p in pf.singles if p.cost <= budget), default=-1)
        best_casc = max((p.accuracy for p in pf.cascade_front if p.cost <= budget), default=-1)
        assert best_casc >= best_single - 1e-12
    # every front point re-routes to its cost and accuracy
    z = dict(zip(pf.names, [outs[i] for i in order], strict=True))
    cost_of = dict(zip(pf.names, pf.costs, strict=True))
    for p in pf.cascade_front:
        m = p.models
        ss = [scores.max_softmax(z[k]) for k in m[:-1]]
        stage = assign_stages(ss, list(p.thresholds)) if len(m) > 1 else np.zeros(len(y), int)
        pred = np.choose(stage, [np.argmax(z[k], 1) for k in m])
        assert np.mean(pred == y) == pytest.approx(p.accuracy, abs=1e-12)
        run = np.cumsum([cost_of[k] for k in m])[stage].mean()
        assert run == pytest.approx(p.cost)
    # the saving at equal accuracy
    sv = pf.saving
    assert sv.mean >= 1 and sv.max >= sv.mean and np.all(sv.ratio >= 1 - 1e-12)
    assert sv.levels[0] == pf.single_front[0].accuracy
    assert sv.levels[-1] == pf.single_front[-1].accuracy
    assert set(sv.per_model) == {p.models[0] for p in pf.single_front}
    assert sv.per_model[pf.names[0]] == pytest.approx(1.0)
    for p in pf.single_front:
        assert sv.per_model[p.models[0]] == pytest.approx(
            p.cost / _step_cost(pf.cascade_front, p.accuracy)
        )
    again = pf.compute_saving_at_equal_accuracy(n_levels=11)
    assert len(again.levels) == 11 and again.per_model == sv.per_model
    d = pf.to_dict(json_safe=True)
    assert d["saving"]["mean"] == sv.mean and len(d["cascade_front"]) == len(pf.cascade_front)


def test_saving_at_equal_accuracy_reference() -> None:
    ref_c, ref_a = [1.0, 3.0, 10.0, 8.0], [0.6, 0.7, 0.9, 0.65]  # 8.0 is dominated
    cas_c, cas_a = [1.0, 2.0, 5.0, 10.0], [0.6, 0.7, 0.9, 0.95]
    sv = cv.compute_saving_at_equal_accuracy(
        ref_c, ref_a, cas_c, cas_a, n_levels=401, names=["a", "b", "c", "d"]
    )
    expected = []
    for a in sv.levels:
        cr = min(c for c, x in zip(ref_c, ref_a, strict=True) if x >= a - 1e-12)
        cc = min(c for c, x in zip(cas_c, cas_a, strict=True) if x >= a - 1e-12)
        expected.append(cr / cc)
    np.testing.assert_allclose(sv.ratio, expected)
    assert sv.mean == pytest.approx(np.mean(expected)) and sv.max == 2.0
    assert sv.per_model == pytest.approx({"a": 1.0, "b": 1.5, "c": 2.0})


# ----------------------------------------------------------------------------------------------
# bootstrap
# ----------------------------------------------------------------------------------------------


def test_bootstrap_reweighting_equals_explicit_resampling() -> None:
    s, vs, vt = _random_case(150, n_distinct=12)
    for seed in range(3):
        ci = cv.bootstrap_summary(s, vs, vt, costs=[1, 4], n_resamples=1, random_state=seed)
        idx = np.random.default_rng(seed).integers(0, 150, 150)
        c = cv.cascade_curve(s[idx], vs[idx], vt[idx], costs=[1, 4])
        assert ci["auc"] == pytest.approx((cv.auc(c),) * 2, abs=1e-12)
        sp = cv.speedup_at_teacher_accuracy(c)
        assert ci["speedup_at_teacher_accuracy"] == pytest.approx((sp, sp))
        sh = cv.teacher_share_at_teacher_accuracy(c)
        assert ci["teacher_share_at_teacher_accuracy"] == pytest.approx((sh, sh))


def test_bootstrap_interval_on_digits(digits_pair) -> None:
    pair = digits_pair
    zs, zt, y = pair.logits["test"]["student"], pair.logits["test"]["teacher"], pair.labels["test"]
    s, vs, vt = scores.max_softmax(zs), cv.correctness(zs, y), cv.correctness(zt, y)
    costs = [pair.flops["student"], pair.flops["teacher"]]
    ci = cv.bootstrap_summary(s, vs, vt, costs, n_resamples=300, random_state=1)
    again = cv.bootstrap_summary(s, vs, vt, costs, n_resamples=300, random_state=1)
    assert ci == again
    point = cv.summarize(cv.cascade_curve(s, vs, vt, costs), vs, vt)
    lo, hi = ci["auc"]
    assert lo < point["auc"] < hi and hi - lo < 0.1
    lo, hi = ci["speedup_at_teacher_accuracy"]
    assert 0 < lo <= hi
    narrow = cv.bootstrap_summary(s, vs, vt, costs, n_resamples=300, random_state=1, confidence=0.5)
    assert ci["auc"][0] <= narrow["auc"][0] <= narrow["auc"][1] <= ci["auc"][1]


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------

GOOD_S, GOOD_V = np.array([0.1, 0.5, 0.9]), np.array([True, False, True])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"scores": np.ones((3, 2))}, InputShapeError, r"Expected scores of shape \(n_samples,\)"),
        ({"scores": [0.1, np.nan, 0.3]}, NonFiniteError, r"1 non-finite values.*row 1"),
        ({"scores": [0.1, np.inf, 0.3]}, NonFiniteError, "non-finite"),
        ({"scores": []}, EmptyInputError, "at least one sample"),
        ({"scores": [0.1, 0.2]}, SampleCountError, "same samples"),
        ({"value_student": [[1, 0, 1]]}, InputShapeError, "value_student of shape"),
        ({"value_teacher": ["a", "b", "c"]}, InputShapeError, "numeric or boolean"),
        ({"value_teacher": [1.0, 0.0]}, SampleCountError, "value_teacher has 2"),
        ({"value_student": [1.0, np.nan, 0.0]}, NonFiniteError, "Value_student contain"),
        ({"costs": [1, 2, 3]}, ParameterError, r"one cost per stage \(2\)"),
        ({"costs": [-1, 2]}, ParameterError, "non-negative"),
        ({"costs": [1, 0]}, ParameterError, "last stage to have a positive cost"),
    ],
)
def test_cascade_curve_errors(kwargs, error, match) -> None:
    args = {"scores": GOOD_S, "value_student": GOOD_V, "value_teacher": GOOD_V} | kwargs
    with pytest.raises(error, match=match):
        cv.cascade_curve(**args)


@pytest.mark.parametrize(
    ("outputs", "labels", "top_k", "error", "match"),
    [
        (np.eye(3), [0, 1, 2], 0, ParameterError, "positive integer"),
        (np.eye(3), [0, 1, 2], True, ParameterError, "positive integer"),
        (np.eye(3), [0, 1, 2], 4, ParameterError, r"top_k <= n_classes \(3\)"),
        (np.array([0, 1, 2]), [0, 1, 2], 2, ParameterError, "1-D predicted labels"),
        (np.eye(3), [0, 1, 3], 1, LabelError, r"labels in \[0, 2\]"),
        (np.eye(3), [0, 1], 1, SampleCountError, "Expected 3 labels"),
        (np.ones((2, 2, 2)), [0, 1], 1, InputShapeError, "n_samples, n_classes"),
        (np.array([0.5, 1.0]), [0, 1], 1, LabelError, "predicted labels"),
    ],
)
def test_correctness_errors(outputs, labels, top_k, error, match) -> None:
    with pytest.raises(error, match=match):
        cv.correctness(outputs, labels, top_k=top_k)


def test_metric_errors() -> None:
    c = cv.cascade_curve(GOOD_S, GOOD_V, ~GOOD_V | True)
    with pytest.raises(ParameterError, match="Expected a cascadekit.curves.Curve; got dict"):
        cv.auc({"accuracy": [1.0]})
    with pytest.raises(ParameterError, match="value_student has mean 1 but the curve starts"):
        cv.summarize(c, ~GOOD_V | True, GOOD_V)  # swapped
    assert cv.summarize(c, GOOD_V, GOOD_V | True, costs=[1, 1])["auc"] == cv.auc(c)
    with pytest.raises(ParameterError, match=r"computed with costs \[1.0, 1.0\], not \[1.0, 5.0\]"):
        cv.summarize(c, GOOD_V, GOOD_V | True, costs=[1, 5])
    with pytest.raises(InfeasibleTargetError, match="reaches accuracy 1.5; the best is 1") as ei:
        cv.teacher_share_at_teacher_accuracy(c, 1.5)
    assert ei.value.best == 1.0
    with pytest.raises(InfeasibleTargetError, match="costs at most 0.5.*cheapest costs 1") as ei:
        cv.accuracy_at_budget(c, 0.5)
    assert ei.value.best == 1.0
    with pytest.raises(ParameterError, match="finite max_relative_cost"):
        cv.accuracy_at_budget(c, math.nan)
    with pytest.raises(ParameterError, match="max_points >= 2"):
        cv.downsample(c, 1)
    with pytest.raises(ParameterError, match="max_points to be an integer"):
        cv.downsample(c, 2.5)
    with pytest.raises(InputShapeError, match="one row per point"):
        cv.Curve(np.zeros(2), np.zeros(2), np.zeros(3), np.zeros(3))
    with pytest.raises(ParameterError, match="finite accuracies"):
        cv.random_curve(math.nan, 0.5)
    with pytest.raises(ParameterError, match="n_points to be an integer >= 2"):
        cv.random_curve(0.5, 0.6, n_points=1)
    with pytest.raises(InputShapeError, match="two 1-D arrays of equal length"):
        cv.pareto_front([1, 2], [0.5])
    with pytest.raises(ParameterError, match="finite costs and accuracies"):
        cv.pareto_front([1, np.nan], [0.5, 0.6])


def test_grid_and_bootstrap_errors() -> None:
    s, v = [np.arange(5.0)], [np.ones(5), np.ones(5)]
    with pytest.raises(ParameterError, match="N-1 stage_scores.*got 2 values and 2 scores"):
        cv.grid_curve([np.arange(5.0)] * 2, v)
    with pytest.raises(ParameterError, match="N >= 2 stage_values"):
        cv.grid_curve([], [np.ones(5)])
    with pytest.raises(SampleCountError, match="stage_values\\[1\\] has 4"):
        cv.grid_curve(s, [np.ones(5), np.ones(4)])
    with pytest.raises(ParameterError, match="n_thresholds >= 1"):
        cv.threshold_grid(np.arange(5.0), 0)
    with pytest.raises(ParameterError, match="n_thresholds to be an integer"):
        cv.threshold_grid(np.arange(5.0), 3.0)
    big = [RNG.normal(size=200)] * 4
    with pytest.raises(ParameterError, match="too large.*Lower n_thresholds"):
        cv.grid_curve(big, [np.ones(200)] * 5, n_thresholds=100)
    with pytest.raises(ParameterError, match="n_resamples to be a positive integer"):
        cv.bootstrap_summary(GOOD_S, GOOD_V, GOOD_V, n_resamples=0)
    with pytest.raises(ParameterError, match="confidence strictly between 0 and 1"):
        cv.bootstrap_summary(GOOD_S, GOOD_V, GOOD_V, confidence=1.5)


def test_pool_errors(digits_pool) -> None:
    outs, y, costs, _ = digits_pool
    with pytest.raises(ParameterError, match="at least 2 models; got 1"):
        cv.pool_frontier(outs[:1], y, costs[:1])
    with pytest.raises(ParameterError, match="one positive, finite cost per model"):
        cv.pool_frontier(outs, y, [1, 0, 2])
    with pytest.raises(ParameterError, match="one positive, finite cost per model"):
        cv.pool_frontier(outs, y, [1, 2])
    with pytest.raises(ParameterError, match="3 distinct model names"):
        cv.pool_frontier(outs, y, costs, ["a", "a", "b"])
    with pytest.raises(ParameterError, match="max_depth >= 1"):
        cv.pool_frontier(outs, y, costs, max_depth=0)
    assert len(cv.pool_frontier(outs, y, costs, max_depth=9, n_thresholds=5).curves) == 4
    with pytest.raises(UnknownNameError, match="Unknown score 'energi'"):
        cv.pool_frontier(outs, y, costs, score="energi")
    with pytest.raises(SampleCountError, match="same samples"):
        cv.pool_frontier([outs[0], outs[1][:10]], y, costs[:2])
    with pytest.raises(InfeasibleTargetError, match="Include the single models"):
        cv.compute_saving_at_equal_accuracy([1, 2], [0.5, 0.9], [1, 2], [0.5, 0.8])
    with pytest.raises(ParameterError, match="one name per reference point"):
        cv.compute_saving_at_equal_accuracy([1, 2], [0.5, 0.9], [1], [0.9], names=["a"])
    single = cv.pool_frontier(outs, y, costs, max_depth=1)
    assert single.curves == {} and single.saving.mean == 1.0


def test_grid_curve_with_explicit_grids() -> None:
    rng = np.random.default_rng(4)
    s = [rng.random(300), rng.random(300)]
    values = [s[0] > 0.4, s[1] > 0.3, rng.random(300) < 0.9]
    grids = [[0.2, 0.5, 0.8], [0.1, 0.6]]
    c = cv.grid_curve(s, values, [1, 2, 5], grids=grids, pareto=False)
    assert len(c) == 5 * 4  # each grid gains -inf and +inf
    for th, share in zip(c.thresholds, c.teacher_share, strict=True):
        stage = assign_stages(s, list(th))
        assert share == np.mean(stage == 2)
    with pytest.raises(
        ParameterError, match=r"one threshold grid per non-final stage \(2\); got 1"
    ):
        cv.grid_curve(s, values, grids=[[0.5]])
    with pytest.raises(ParameterError, match=r"thresholds of grids\[1\] .* got NaN"):
        cv.grid_curve(s, values, grids=[[0.5], [np.nan]])
