"""The monitor over arrays: window tests, false-alarm control, audits and the drop bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

import cascadekit as ck
from cascadekit.calibration import guaranteed_threshold_label_free
from cascadekit.errors import (
    EmptyInputError,
    InputShapeError,
    NonFiniteError,
    ParameterError,
    SampleCountError,
)
from cascadekit.monitoring import (
    CascadeMonitor,
    disagreement_bound,
    score_drift_test,
    share_test,
    window_level,
)


def _route(s: np.ndarray, t: float) -> np.ndarray:
    return (s < t).astype(np.int64)


# ---------------------------------------------------------------- statistics


def test_window_level_splits_the_false_alarm_budget() -> None:
    assert window_level(0.5, 1000, 2) == pytest.approx(0.0025)
    # 100 windows of 1000 per 100k requests, each at 0.005: expected 0.5 false alarms
    assert window_level(0.5, 1000) * 100 == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.0, 1000), "false_alarms_per_100k > 0"),
        ((math.nan, 1000), "false_alarms_per_100k > 0"),
        ((0.5, 0), "window to be a positive integer"),
        ((0.5, 10.5), "window to be a positive integer"),
        ((0.5, 1000, 0), "n_tests to be a positive integer"),
        ((200_000.0, 1000), "every window would alarm"),
    ],
)
def test_window_level_rejects(args: tuple[float, ...], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        window_level(*args)  # type: ignore[arg-type]


def test_share_test_matches_scipy() -> None:
    r = share_test(130, 1000, 0.1)
    assert r.statistic == 0.13
    assert r.p_value == pytest.approx(sps.binomtest(130, 1000, 0.1).pvalue)
    # with a reference of 5000: tested against the end of the reference's 99% interval
    f = share_test(130, 1000, 0.1, n_reference=5000, reference_level=0.01)
    hi = sps.binomtest(500, 5000).proportion_ci(0.99, method="exact").high
    assert f.p_value == pytest.approx(2 * sps.binom.sf(129, 1000, hi))
    assert f.p_value > r.p_value  # the reference's noise makes the test less eager
    lo = sps.binomtest(500, 5000).proportion_ci(0.99, method="exact").low
    assert share_test(70, 1000, 0.1, 5000, 0.01).p_value == pytest.approx(
        2 * sps.binom.cdf(70, 1000, lo)
    )
    assert share_test(100, 1000, 0.1, 5000, 0.01).p_value == 1.0


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((5, 0, 0.1), {}, "n >= 1"),
        ((11, 10, 0.1), {}, "0 <= n_teacher <= n"),
        ((1, 10, 1.5), {}, r"expected in \[0, 1\]"),
        ((1, 10, 0.1), {"n_reference": 0}, "n_reference >= 1"),
        ((1, 10, 0.1), {"n_reference": 10, "reference_level": 0.0}, "reference_level strictly"),
    ],
)
def test_share_test_rejects(args: tuple[float, ...], kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        share_test(*args, **kwargs)  # type: ignore[arg-type]


def test_score_drift_test_is_ks() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=300), rng.normal(0.2, 1, size=3000)
    r = score_drift_test(a, b)
    ref = sps.ks_2samp(a, b, method="asymp")
    assert r.statistic == pytest.approx(ref.statistic)
    assert r.p_value == pytest.approx(ref.pvalue)


def test_score_drift_test_with_a_reference_margin() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.3, 1, size=1000), rng.normal(size=5000)
    r = score_drift_test(a, b, reference_level=0.01)
    d = sps.ks_2samp(a, b).statistic
    e = math.sqrt(math.log(2 / 0.01) / 10_000)
    assert r.statistic == pytest.approx(d)
    assert r.p_value == pytest.approx(sps.kstwo.sf(d - e, 1000))
    # a window closer to the reference than its margin never alarms
    assert score_drift_test(b[:1000], b, reference_level=0.01).p_value == 1.0


def test_score_drift_test_rejects() -> None:
    with pytest.raises(ParameterError, match="reference_level strictly between 0 and 1"):
        score_drift_test([1.0], [1.0], reference_level=1.0)
    with pytest.raises(EmptyInputError, match="at least one sample"):
        score_drift_test([], [1.0])
    with pytest.raises(InputShapeError, match=r"reference of shape \(n_samples,\)"):
        score_drift_test([1.0], [[1.0]])
    with pytest.raises(NonFiniteError, match="(?i)scores contain"):
        score_drift_test([np.nan], [1.0])


def test_disagreement_bound_inverts_the_label_free_test() -> None:
    rng = np.random.default_rng(2)
    n = 3000
    s = rng.uniform(size=n)
    t = rng.integers(0, 4, size=n)
    st = np.where(rng.uniform(size=n) < 0.9, t, (t + 1) % 4)
    b = disagreement_bound(s, st, t, threshold=0.3, delta=0.05)
    assert b.disagreement == pytest.approx(np.mean((s >= 0.3) & (st != t)))
    assert b.n == n and b.disagreement < b.upper
    # the bound is where the library's test switches from "not certified" to "certified"
    above = guaranteed_threshold_label_free(s, st, t, b.upper + 2e-4, 0.05, grid=[0.3])
    below = guaranteed_threshold_label_free(s, st, t, b.upper - 2e-4, 0.05, grid=[0.3])
    assert above.n_certified == 1 and below.n_certified == 0
    # and it is the exact binomial (Clopper-Pearson) upper bound
    k = int(np.sum((s >= 0.3) & (st != t)))
    assert b.upper == pytest.approx(sps.beta.ppf(0.95, k + 1, n - k), abs=2e-4)
    assert disagreement_bound(s, st, t, math.inf, 0.05).upper == 0.0
    # a handful of rows gives a wide bound; all disagreeing, the trivial 1
    assert 0.2 < disagreement_bound(s[:10], st[:10], t[:10], 0.3, 0.05).upper < 1.0
    assert disagreement_bound([0.5, 0.6], [0, 0], [1, 1], 0.3, 0.05).upper == 1.0


def test_disagreement_bound_rejects() -> None:
    with pytest.raises(ParameterError, match="delta strictly between 0 and 1"):
        disagreement_bound([0.5], [1], [1], 0.0, 1.0)
    with pytest.raises(ParameterError, match="threshold to be a number"):
        disagreement_bound([0.5], [1], [1], math.nan, 0.1)
    with pytest.raises(ParameterError, match="of the same shape"):
        disagreement_bound([0.5, 0.6], [1], [1, 1], 0.0, 0.1)


# ---------------------------------------------------------------- monitor


def test_no_alarm_on_unshifted_traffic_and_alarms_on_shifts() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=10_000)
    mon = CascadeMonitor(-1.0, reference_scores=ref, window=1000)
    assert mon.expected_teacher_share == pytest.approx(np.mean(ref < -1.0))
    s = rng.normal(size=20_000)
    assert mon.update(s, _route(s, -1.0)) == []
    assert mon.n_windows_ == 20 and mon.n_seen_ == 20_000
    # a shift of the scores that keeps the share: only the score test fires
    s = rng.normal(size=2000)
    s = np.where(s >= -1.0, -1.0 + 2 * (s + 1.0), s)  # kept scores stretched, same share
    alarms = mon.update(s, _route(s, -1.0))
    assert [a.kind for a in alarms] == ["score_drift", "score_drift"]
    a = alarms[0]
    assert a.window == 20 and a.requests == 21_000 and a.p_value <= a.level == mon.level
    assert alarms[1].requests == 22_000
    st = mon.status()
    assert st["alarms"]["score_drift"] >= 1 and st["recent_alarms"]


def test_share_alarm_from_stage_alone() -> None:
    """Fallbacks or a teacher that takes more than the scores say: the share test sees it."""
    rng = np.random.default_rng(4)
    ref = rng.normal(size=10_000)
    mon = CascadeMonitor(0.0, reference_scores=ref, window=500)
    s = rng.normal(size=500)
    stage = np.ones(500, dtype=np.int64)  # everything went to the teacher
    alarms = mon.update(s, stage)
    assert [a.kind for a in alarms] == ["teacher_share"]
    assert alarms[0].statistic == 1.0 and alarms[0].expected == pytest.approx(0.5, abs=0.02)


def test_windows_span_update_calls() -> None:
    rng = np.random.default_rng(5)
    mon = CascadeMonitor(0.0, reference_scores=rng.normal(size=2000), window=100)
    for _ in range(7):
        s = rng.normal(size=33)
        mon.update(s, _route(s, 0.0))
    assert mon.n_windows_ == 2 and mon.n_seen_ == 231


def test_false_alarms_stay_near_the_stated_rate() -> None:
    """Unshifted streams: the measured rate is within sampling noise of the stated bound."""
    alarms = 0
    for rep in range(3):
        rng = np.random.default_rng(100 + rep)
        mon = CascadeMonitor(
            0.5, reference_scores=rng.normal(size=10_000), window=500, false_alarms_per_100k=20
        )
        s = rng.normal(size=100_000)
        mon.update(s, _route(s, 0.5))
        alarms += sum(mon.alarm_counts_.values())
    # 3 x 100k requests at <= 20 expected per 100k: at most 60 expected
    assert alarms <= 60 + 3 * math.sqrt(60)


def test_warmup_reference_and_expected_share() -> None:
    rng = np.random.default_rng(6)
    mon = CascadeMonitor(0.0, expected_teacher_share=0.5, window=200, reference_size=1000)
    assert not mon.reference_ready and mon.expected_teacher_share == 0.5
    s = rng.normal(size=1500)
    mon.update(s, _route(s, 0.0))
    assert mon.reference_ready and mon.n_windows_ == 2  # 1000 for the reference, 500 tested
    # without a share, the warm-up reference gives it
    mon2 = CascadeMonitor(0.0, window=200, reference_size=1000)
    assert mon2.expected_teacher_share is None
    mon2.update(s, _route(s, 0.0))
    assert mon2.expected_teacher_share == pytest.approx(np.mean(s[:1000] < 0.0))


def test_set_threshold_moves_the_expected_share() -> None:
    mon = CascadeMonitor(0.0, reference_scores=np.arange(100.0))
    assert mon.expected_teacher_share == 0.0
    mon.set_threshold(50.0)
    assert mon.expected_teacher_share == 0.5
    with pytest.raises(ParameterError, match="got NaN"):
        mon.set_threshold(math.nan)


def test_observe_a_real_cascade() -> None:
    rng = np.random.default_rng(7)
    student = rng.normal(size=(3000, 5))
    teacher = rng.normal(size=(3000, 5))
    c = ck.Cascade.from_outputs([student, teacher], thresholds=[1.0], score="margin")
    r = c.route()
    mon = CascadeMonitor(1.0, reference_scores=r.score[:1000], window=500)
    assert mon.observe(r) == []
    assert mon.n_teacher_ == int(np.sum(r.stage == 1))
    with pytest.raises(ParameterError, match="Expected a 3-stage result; got 2"):
        CascadeMonitor(1.0, n_stages=3).observe(r)


def test_audits_estimate_the_disagreement_and_cost() -> None:
    rng = np.random.default_rng(8)
    n = 200_000
    s = rng.normal(size=n)
    teacher = rng.integers(0, 10, size=n)
    # the student disagrees more on low scores
    student = np.where(rng.uniform(size=n) < sps.norm.cdf(s + 2), teacher, (teacher + 1) % 10)
    t = -0.5
    mon = CascadeMonitor(
        t, reference_scores=s[:10_000], audit_rate=0.05, random_state=0, epsilon=0.05, delta=0.05
    )
    stage = _route(s, t)
    mon.update(s, stage)
    mask = mon.audit_mask(n)
    mon.add_audits(s[mask], student[mask], teacher[mask])
    truth = float(np.mean((s >= t) & (student != teacher)))
    b = mon.drop_estimate()
    assert b is not None
    assert abs(b.disagreement - truth) < 4 * math.sqrt(truth / mask.sum())
    assert b.upper > b.disagreement
    kept = int(np.sum(mask & (s >= t)))
    assert mon.n_shadow_ == kept
    assert mon.audit_cost == pytest.approx(kept / (np.sum(stage == 1) + kept))
    audits = mon.status()["audits"]
    assert audits["guarantee"] == ("certified" if b.upper <= 0.05 else "not certified")
    mon.audit_dropped(3)
    assert mon.status(with_bound=False)["audits"]["dropped"] == 3


def test_no_audit_no_estimate() -> None:
    mon = CascadeMonitor(0.0)
    assert mon.drop_estimate() is None
    mon.add_audits([], [], [])
    assert mon.status()["audits"]["disagreement"] is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": math.nan}, "threshold to be a number"),
        ({"audit_rate": 1.5}, r"audit_rate in \[0, 1\]"),
        ({"audit_window": 0}, "audit_window to be a positive integer"),
        ({"epsilon": 0.0}, "epsilon strictly between 0 and 1"),
        ({"delta": 1.0}, "delta strictly between 0 and 1"),
        ({"n_stages": 1}, "n_stages >= 2"),
        ({"reference_size": 0}, "reference_size to be a positive integer"),
        ({"window": 0}, "window to be a positive integer"),
        ({"reference_level": 0.0}, "reference_level strictly between 0 and 1"),
        ({"expected_teacher_share": 2.0}, r"expected_teacher_share in \[0, 1\]"),
    ],
)
def test_monitor_rejects_parameters(kwargs: dict[str, float], match: str) -> None:
    args: dict[str, float] = {"threshold": 0.0, **kwargs}
    with pytest.raises(ParameterError, match=match):
        CascadeMonitor(**args)  # type: ignore[arg-type]


def test_monitor_rejects_bad_reference() -> None:
    with pytest.raises(NonFiniteError, match="(?i)reference_scores contain"):
        CascadeMonitor(0.0, reference_scores=[np.inf])


def test_update_rejects_bad_inputs() -> None:
    mon = CascadeMonitor(0.0)
    with pytest.raises(InputShapeError, match="integer stage indices"):
        mon.update([0.1, 0.2], [0.0, 1.0])
    with pytest.raises(SampleCountError, match="2 scores and 1 stages"):
        mon.update([0.1, 0.2], [0])
    with pytest.raises(InputShapeError, match=r"stages in \[0, 1\].*n_stages="):
        mon.update([0.1, 0.2], [0, 2])
    with pytest.raises(NonFiniteError, match="(?i)scores contain"):
        mon.update([np.nan], [0])
    with pytest.raises(ParameterError, match="n to be a non-negative integer"):
        mon.audit_mask(-1)
    with pytest.raises(SampleCountError, match="student_predictions of shape"):
        mon.add_audits([0.1, 0.2], [1], [1, 1])
    with pytest.raises(InputShapeError, match="teacher_predictions to be integer"):
        mon.add_audits([0.1], [1], [1.0])
