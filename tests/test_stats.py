"""McNemar's test: against statsmodels, a brute-force binomial sum, edge cases and errors."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascadekit.errors import EmptyInputError, InputShapeError, LabelError, SampleCountError
from cascadekit.stats import mcnemar


def _pairs(n_both: int, b: int, c: int, n_neither: int, seed: int = 0):
    a = np.r_[np.ones(n_both), np.ones(b), np.zeros(c), np.zeros(n_neither)].astype(bool)
    bb = np.r_[np.ones(n_both), np.zeros(b), np.ones(c), np.zeros(n_neither)].astype(bool)
    perm = np.random.default_rng(seed).permutation(a.shape[0])
    return a[perm], bb[perm]


def _brute_exact(b: int, c: int) -> float:
    m = b + c
    if m == 0:
        return 1.0
    tail = sum(Fraction(math.comb(m, k), 2**m) for k in range(min(b, c) + 1))
    return float(min(Fraction(1), 2 * tail))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 30), st.integers(0, 30))
def test_exact_p_value_matches_brute_force(b, c, both, neither):
    a, bb = _pairs(both, b, c, neither)
    if a.shape[0] == 0:
        return
    r = mcnemar(a, bb)
    assert (r.b, r.c, r.n) == (b, c, a.shape[0])
    assert r.p_exact == pytest.approx(_brute_exact(b, c), rel=1e-9, abs=1e-300)
    # swapping A and B swaps b and c and keeps the p-values
    s = mcnemar(bb, a)
    assert (s.b, s.c) == (c, b)
    assert s.p_exact == pytest.approx(r.p_exact) and s.p_corrected == pytest.approx(r.p_corrected)


@pytest.mark.parametrize(
    ("b", "c"), [(0, 0), (1, 0), (0, 3), (5, 5), (12, 3), (3, 12), (40, 25), (337, 237)]
)
def test_matches_statsmodels(b, c):
    contingency = pytest.importorskip("statsmodels.stats.contingency_tables")
    a, bb = _pairs(50, b, c, 20)
    r = mcnemar(a, bb)
    table = [[50, b], [c, 20]]
    exact = contingency.mcnemar(table, exact=True)
    assert r.p_exact == pytest.approx(float(exact.pvalue), rel=1e-9)
    if b + c > 0:
        chi = contingency.mcnemar(table, exact=False, correction=True)
        assert r.statistic == pytest.approx(float(chi.statistic), rel=1e-12)
        assert r.p_corrected == pytest.approx(float(chi.pvalue), rel=1e-9)


def test_odds_ratio_and_interval():
    r = mcnemar(*_pairs(100, 40, 25, 10))
    assert r.odds_ratio == pytest.approx(40 / 25)
    half = 1.959963984540054 * math.sqrt(1 / 40 + 1 / 25)
    assert r.ci_low == pytest.approx(math.exp(math.log(1.6) - half))
    assert r.ci_high == pytest.approx(math.exp(math.log(1.6) + half))
    assert r.ci_low < r.odds_ratio < r.ci_high and r.a_better


def test_ebjr_cifar10_back_calculation():
    # EBJR's reported test: b ~ 337, c ~ 237 reproduce EBJR's p = 3.2e-5 and OR = 1.42
    r = mcnemar(*_pairs(9000, 337, 237, 426))
    assert round(r.odds_ratio, 2) == 1.42
    assert 2e-5 < r.p_corrected < 5e-5 and 2e-5 < r.p_exact < 5e-5


def test_edge_cases_are_documented_values():
    r = mcnemar([1, 0, 1], [1, 0, 1])  # no discordant pair
    assert (r.b, r.c, r.p_exact, r.statistic, r.p_corrected) == (0, 0, 1.0, 0.0, 1.0)
    assert math.isnan(r.odds_ratio) and math.isnan(r.ci_low) and math.isnan(r.ci_high)
    r = mcnemar([1, 1, 1, 0], [0, 0, 0, 0])
    assert r.odds_ratio == math.inf and math.isnan(r.ci_low)
    r = mcnemar([0, 0, 0], [1, 1, 0])
    assert r.odds_ratio == 0.0 and not r.a_better
    d = json.loads(json.dumps(mcnemar([1, 1, 1, 0], [0, 0, 0, 0]).to_dict()))
    assert d["odds_ratio"] is None and d["b"] == 3


def test_real_cascade_beats_student():
    from cascadekit.data.digits import load_digits_pair

    pair = load_digits_pair()
    y = pair.labels["test"]
    cs = pair.logits["test"]["student"].argmax(1) == y
    ct = pair.logits["test"]["teacher"].argmax(1) == y
    r = mcnemar(ct, cs)
    assert r.b > r.c and r.p_exact < 1e-6  # the MLP teacher is clearly better on digits


def test_errors():
    with pytest.raises(SampleCountError, match="correct_b has 2"):
        mcnemar([1, 0, 1], [1, 0])
    with pytest.raises(LabelError, match="correct_a to be booleans or 0/1"):
        mcnemar([1, 2, 0], [1, 0, 1])
    with pytest.raises(InputShapeError, match="correct_b of shape"):
        mcnemar([1, 0], [[1, 0]])
    with pytest.raises(EmptyInputError, match="correct_a with at least one sample"):
        mcnemar([], [])
