"""Statistical validity of the guaranteed thresholds on real logits (digits student/teacher).

The promise of :func:`cascadekit.calibration.guaranteed_threshold` is about the *population*:
with probability >= 1 - delta over the draw of n i.i.d. calibration rows, the population
accuracy drop against the teacher at the chosen threshold is <= epsilon. Two checks:

1. **Exact check (the promise itself).** The 900 pooled calibrate+test rows of
   ``load_digits_pair()`` are taken as the population. Each trial draws 450 calibration rows
   i.i.d. from it (with replacement), calibrates, and computes the drop at the chosen threshold
   on all 900 rows: that *is* the population drop, with no test-set noise. Over the trials the
   share of violations (drop > epsilon) must not be significantly above delta (one-sided exact
   binomial test at level 0.001). A negative control (the plug-in threshold: the cheapest one
   whose *calibration* drop is <= epsilon) must violate far more often, which shows the
   harness can see an invalid procedure.

2. **Split-half check (what a practitioner would see).** 450/450 splits without
   replacement; calibrate on one half, measure the drop on the other. The test-half drop is
   the population drop plus sampling noise of the same order as epsilon (its standard error
   here is about 0.01), so even a threshold whose population drop is exactly epsilon exceeds
   epsilon on the test half about half of the time: "share of test drops > epsilon <= delta"
   is *not* what is promised. What is implied, up to a normal approximation of the noise, is
   that the test drop exceeds ``epsilon + 2 * se`` (``se`` estimated on the test half) in at
   most about ``delta + 0.023`` of the splits; that is asserted (again with a binomial
   tolerance at level 0.001). Splits of one fixed pool also make the halves dependent, so this
   check is approximate by nature; the exact one is check 1.

3. **Worst-case nulls of the test itself.** The p-values of H0: p+ - p- > epsilon are
   checked on simulated counts drawn exactly at the null boundary (drop = epsilon), from
   p+ + p- = epsilon (the student never beats the teacher: the binary case) up to 1 (no ties):
   the boundary is where a valid test comes closest to its level, and small p+ + p- is where
   a normal approximation breaks. The rejection rate at delta must not be significantly above
   delta; a negative control (the Wald test with the plug-in variance) must be.

epsilon = 0.03 (3 accuracy points): with 450 calibration rows, epsilon = 0.01 is barely above
the smallest certifiable level (230 rows for the binomial test at delta = 0.1, more for
betting) and would certify almost nothing; at 0.03 the population-optimal teacher share is
about 0.27 and the guaranteed one stays well below 1. The routing score and its temperature
are chosen on the separate ``select`` split by :func:`cascadekit.selection.select_score`, as
everywhere else, never on the rows used here.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from cascadekit import calibration as cal
from cascadekit import selection
from cascadekit.calibration.guarantee import p_values
from cascadekit.data.digits import load_digits_pair

pytestmark = pytest.mark.statistical

EPS = 0.03
DELTA = 0.1
N_CAL = 450
N_BOOT = 400
N_SPLITS = 300
LEVEL = 0.001  # strictness of the binomial tolerance


def _pick_router(pair) -> selection.ScoreChoice:
    """The score and temperature :mod:`cascadekit.selection` chooses on the select split."""
    s_log, t_log = pair.logits["select"]["student"], pair.logits["select"]["teacher"]
    y = pair.labels["select"]
    return selection.select_score(s_log, s_log.argmax(1) == y, t_log.argmax(1) == y)


@pytest.fixture(scope="module")
def pool():
    pair = load_digits_pair()
    router = _pick_router(pair)
    s_log = np.concatenate([pair.logits[k]["student"] for k in ("calibrate", "test")])
    t_log = np.concatenate([pair.logits[k]["teacher"] for k in ("calibrate", "test")])
    y = np.concatenate([pair.labels[k] for k in ("calibrate", "test")])
    return {
        "score": router.score,
        "s": router.scores(s_log),
        "ps": s_log.argmax(1),
        "pt": t_log.argmax(1),
        "cs": s_log.argmax(1) == y,
        "ct": t_log.argmax(1) == y,
    }


def _calibrate(p, idx, method):
    s, cs, ct = p["s"][idx], p["cs"][idx], p["ct"][idx]
    if method == "plug-in":
        return cal.threshold_for_accuracy(s, cs, ct, float(np.mean(ct)) - EPS).thresholds[0]
    if method == "label-free":
        r = cal.guaranteed_threshold_label_free(s, p["ps"][idx], p["pt"][idx], EPS, DELTA)
        return r.thresholds[0]
    return cal.guaranteed_threshold(s, cs, ct, EPS, DELTA, method=method).thresholds[0]


def _drop(p, idx, t, method):
    """Drop vs the teacher on rows idx (for label-free: the disagreement it controls)."""
    keep = p["s"][idx] >= t
    if method == "label-free":
        d = (keep & (p["ps"][idx] != p["pt"][idx])).astype(float)
    else:
        d = keep * (p["ct"][idx].astype(float) - p["cs"][idx].astype(float))
    return d


def _not_above(violations: int, trials: int, rate: float) -> bool:
    """One-sided exact binomial test of H0: true rate <= rate, at level LEVEL."""
    return bool(binom.sf(violations - 1, trials, rate) > LEVEL)


@pytest.mark.parametrize("method", ["trinomial", "betting", "binomial", "hb", "label-free"])
def test_population_guarantee_holds(pool, method):
    rng = np.random.default_rng(2024)
    n = pool["s"].shape[0]
    everyone = np.arange(n)
    violations, shares = 0, []
    for _ in range(N_BOOT):
        idx = rng.integers(0, n, N_CAL)  # i.i.d. draws from the 900-row population
        t = _calibrate(pool, idx, method)
        violations += _drop(pool, everyone, t, method).mean() > EPS
        shares.append(np.mean(pool["s"] < t))
    rate, mean_share = violations / N_BOOT, float(np.mean(shares))
    msg = f"{method} ({pool['score']}): violation rate {rate:.3f}, mean share {mean_share:.3f}"
    assert _not_above(violations, N_BOOT, DELTA), msg
    assert mean_share < 0.6, msg  # useful, not "everything to the teacher"


def test_harness_detects_an_invalid_procedure(pool):
    rng = np.random.default_rng(7)
    n = pool["s"].shape[0]
    violations = 0
    for _ in range(200):
        idx = rng.integers(0, n, N_CAL)
        t = _calibrate(pool, idx, "plug-in")
        violations += _drop(pool, np.arange(n), t, "plug-in").mean() > EPS
    assert violations / 200 > 2 * DELTA  # plug-in thresholds violate far more often


@pytest.mark.parametrize("method", ["trinomial", "betting", "binomial", "label-free"])
def test_split_half_drop_within_noise(pool, method):
    rng = np.random.default_rng(99)
    n = pool["s"].shape[0]
    raw, noisy, shares = 0, 0, []
    for _ in range(N_SPLITS):
        perm = rng.permutation(n)
        cal_idx, test_idx = perm[:N_CAL], perm[N_CAL:]
        t = _calibrate(pool, cal_idx, method)
        d = _drop(pool, test_idx, t, method)
        se = d.std(ddof=1) / np.sqrt(d.shape[0]) if d.any() else 0.0
        raw += d.mean() > EPS
        noisy += d.mean() > EPS + 2 * se
        shares.append(np.mean(pool["s"][test_idx] < t))
    msg = (
        f"{method}: test drop > eps in {raw / N_SPLITS:.3f} of splits, > eps + 2 se in "
        f"{noisy / N_SPLITS:.3f}; mean test teacher share {np.mean(shares):.3f}"
    )
    assert _not_above(noisy, N_SPLITS, DELTA + 0.023), msg
    assert np.mean(shares) < 0.6, msg


# ------------------------------------------------------------------------------------------
# 3. the test itself at worst-case trinomial nulls

N_SIM = 4000
NULL_SUMS = (1.0, 2.0, 5.0, 20.0, 100.0)  # p+ + p- in multiples of epsilon (capped at 1)


def _null_counts(rng, n, eps, total, size):
    """(n+, n-) of n rows drawn at the boundary p+ - p- = eps with p+ + p- = total."""
    a = (total - eps) / 2
    x = rng.multinomial(n, [a + eps, a, 1 - total], size=size)
    return x[:, 0].astype(float), x[:, 1].astype(float)


@pytest.mark.parametrize(("n", "eps"), [(450, 0.03), (2000, 0.01), (5000, 0.005)])
@pytest.mark.parametrize("method", ["trinomial", "betting", "binomial"])
def test_level_at_worst_case_trinomial_nulls(n, eps, method):
    rng = np.random.default_rng(n)
    rates = {}
    for mult in NULL_SUMS:
        total = min(1.0, mult * eps)
        k, g = _null_counts(rng, n, eps, total, N_SIM)
        rejected = int(np.sum(p_values(k, g, n, eps, method) <= DELTA))
        rates[total] = rejected / N_SIM
        assert _not_above(rejected, N_SIM, DELTA), f"{method}: rejection rates {rates}"


def test_harness_detects_an_invalid_test_at_the_null():
    # the Wald test with the plug-in variance is too liberal when p+ + p- is small
    from scipy.stats import norm

    n, eps = 2000, 0.01
    k, g = _null_counts(np.random.default_rng(5), n, eps, eps, N_SIM)
    d = (k - g) / n
    se = np.sqrt(np.maximum((k + g) / n - d * d, 1e-12) / n)
    rejected = int(np.sum(norm.cdf((d - eps) / se) <= DELTA))
    assert not _not_above(rejected, N_SIM, DELTA), rejected / N_SIM


# ------------------------------------------------------------------------------------------
# 4. N stages: the population check on a three-stage population


@pytest.mark.parametrize("method", ["trinomial", "betting"])
def test_three_stage_population_guarantee_holds(method):
    # a fixed population of 4,000 rows (two routing scores, the correctness of three stages);
    # each trial draws 1,000 calibration rows i.i.d. from it and measures the drop of the
    # guaranteed thresholds on all 4,000 rows: the exact population drop
    from cascadekit.cascade import assign_stages

    rng = np.random.default_rng(11)
    n_pop, n_cal, eps, trials = 4000, 1000, 0.03, 300
    s = [rng.uniform(size=n_pop), rng.uniform(size=n_pop)]
    correct = np.vstack(
        [
            rng.uniform(size=n_pop) < 0.55 + 0.45 * s[0],
            rng.uniform(size=n_pop) < 0.75 + 0.25 * s[1],
            rng.uniform(size=n_pop) < 0.92,
        ]
    )
    rows = np.arange(n_pop)
    violations, shares = 0, []
    for _ in range(trials):
        idx = rng.integers(0, n_pop, n_cal)
        target = cal.Target("accuracy_drop", eps, delta=DELTA, method=method)
        r = cal.calibrate_cascade([x[idx] for x in s], [c[idx] for c in correct], target)
        stage = assign_stages(s, list(r.thresholds))
        drop = correct[-1].mean() - correct[stage, rows].mean()
        violations += drop > eps
        shares.append(np.mean(stage == 2))
    rate, share = violations / trials, np.mean(shares)
    msg = f"three stages, {method}: violation rate {rate:.3f}, mean share {share:.3f}"
    assert _not_above(violations, trials, DELTA), msg
    assert np.mean(shares) < 0.7, msg
