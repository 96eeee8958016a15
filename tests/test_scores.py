"""Scores: reference formulas, numerical stability, direction, registry and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cascadekit import scores
from cascadekit.errors import (
    EmptyInputError,
    InputShapeError,
    NonFiniteError,
    ParameterError,
    UnknownNameError,
)

RNG = np.random.default_rng(0)
Z = RNG.normal(scale=3.0, size=(50, 7))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("t", [0.3, 1.0, 4.0])
def test_scores_match_naive_formulas(t: float) -> None:
    p = _softmax(Z / t)
    s = np.sort(Z, axis=1)
    np.testing.assert_allclose(scores.energy(Z, t), t * np.log(np.exp(Z / t).sum(axis=1)))
    pm = p.max(axis=1)
    others = np.sort(p, axis=1)[:, :-1].sum(axis=1)  # 1 - p_max, without cancellation
    np.testing.assert_allclose(scores.max_softmax(Z, t), np.log(pm) - np.log(others), rtol=1e-9)
    np.testing.assert_allclose(scores.max_probability(Z, t), pm)
    np.testing.assert_allclose(scores.margin(Z, t), (s[:, -1] - s[:, -2]) / t)
    neg_h = (p * np.log(p)).sum(axis=1)
    np.testing.assert_allclose(scores.negative_entropy(Z, t), neg_h, atol=1e-12)
    np.testing.assert_allclose(scores.entropy(Z, t), -np.log(-neg_h), rtol=1e-6)
    np.testing.assert_allclose(scores.max_logit(Z, t), Z.max(axis=1) / t)


def _reference_log_odds_and_log_entropy(row: list[float]) -> tuple[float, float]:
    """High-precision log(p_max / (1 - p_max)) and -log H of softmax(row)."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(400):
        e = [mpmath.e ** mpmath.mpf(v) for v in row]
        total = sum(e)
        p = [v / total for v in e]
        k = p.index(max(p))
        rest = sum(v for j, v in enumerate(p) if j != k)
        h = -sum(v * mpmath.log(v) for v in p)
        return float(mpmath.log(p[k] / rest)), float(-mpmath.log(h))


@pytest.mark.parametrize("top", [5.0, 20.0, 38.0, 45.0, 200.0])
def test_confident_scores_keep_their_resolution(top: float) -> None:
    # p_max rounds to 1.0 above ~37 (float64): the plain forms saturate, the routing forms
    # match a 400-digit reference
    row = [top, 1.0, -2.0, 0.5]
    lo, le = _reference_log_odds_and_log_entropy(row)
    z = np.array([row])
    np.testing.assert_allclose(scores.max_softmax(z)[0], lo, rtol=1e-12)
    np.testing.assert_allclose(scores.entropy(z)[0], le, rtol=1e-12)


def test_saturated_inputs_get_distinct_ordered_scores() -> None:
    z = np.array([[40.0, 0.0, 0.0], [41.0, 0.0, 0.0], [42.0, 0.0, 0.0]], dtype=np.float32)
    assert np.unique(scores.max_probability(z)).shape[0] == 1  # all 1.0: ties by rounding
    for name in ("max_softmax", "entropy"):
        s = scores.compute_score(name, z)
        assert np.all(np.diff(s) > 0.5), (name, s)


@given(arrays(np.float64, (6, 4), elements=st.floats(-30, 30)), st.floats(0.2, 5.0))
@settings(max_examples=50, deadline=None)
def test_routing_forms_are_monotone_in_the_plain_forms(z: np.ndarray, t: float) -> None:
    lo = scores.max_softmax(z, t)
    np.testing.assert_allclose(scores.max_probability(z, t), 1.0 / (1.0 + np.exp(-lo)))
    np.testing.assert_allclose(
        scores.negative_entropy(z, t), -np.exp(-scores.entropy(z, t)), atol=1e-12
    )


@pytest.mark.parametrize("name", ["max_softmax", "entropy"])
def test_probability_form_thresholds_convert_to_the_same_routing(name: str) -> None:
    plain = scores.max_probability if name == "max_softmax" else scores.negative_entropy
    for t_plain in np.quantile(plain(Z), [0.1, 0.37, 0.5, 0.8]):
        t_new = scores.from_probability_form(name, float(t_plain))
        np.testing.assert_array_equal(
            scores.compute_score(name, Z) >= t_new - 1e-9, plain(Z) >= t_plain - 1e-15
        )


def test_resolution_blocks_and_separating_thresholds() -> None:
    rng = np.random.default_rng(3)
    s = np.sort(np.r_[rng.normal(size=200), np.full(50, 2.0) + rng.normal(size=50) * 1e-9])
    starts = scores.resolution_blocks(s)
    thr = scores.separating_thresholds(s, starts)
    assert thr[0] == -np.inf and np.all(np.diff(thr) > 0)
    for j, st_ in enumerate(starts):
        # the separating threshold keeps exactly the block and those above it
        np.testing.assert_array_equal(s >= thr[j], np.arange(s.shape[0]) >= st_)
        assert not scores.near_threshold(s, thr[j]).any()
    # the 50 near-identical scores form one block
    sizes = np.diff(np.r_[starts, s.shape[0]])
    assert sizes.max() >= 50 and np.sum(sizes >= 50) == 1


def test_energy_temperature_limits() -> None:
    # T -> 0 gives the max logit; large T approaches T log C + mean(z).
    np.testing.assert_allclose(scores.energy(Z, 1e-3), Z.max(axis=1), atol=1e-2)
    big = 1e4
    np.testing.assert_allclose(
        scores.energy(Z, big), big * np.log(Z.shape[1]) + Z.mean(axis=1), rtol=1e-6
    )


@pytest.mark.parametrize("name", scores.available_scores())
def test_every_score_says_higher_is_more_confident(name: str) -> None:
    confident = np.array([[9.0, 0.0, 0.0]])
    unsure = np.array([[1.0, 0.9, 0.8]])
    fn = scores.get_score(name)
    assert fn(confident)[0] > fn(unsure)[0]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", scores.available_scores())
def test_stable_for_huge_logits_in_any_float_dtype(name: str, dtype: type) -> None:
    z = np.array([[60000.0, 0.0, -60000.0], [1.0, 2.0, 3.0]], dtype=dtype)
    out = scores.compute_score(name, z)
    assert np.all(np.isfinite(out))
    always64 = name in ("max_softmax", "entropy")  # computed in float64 for resolution
    assert out.dtype == (np.float64 if dtype is np.float64 or always64 else np.float32)


def test_integer_logits_are_accepted_as_float() -> None:
    out = scores.energy(np.array([[1, 2], [3, 4]]))
    assert out.dtype == np.float32


@given(
    arrays(np.float64, (8, 5), elements=st.floats(-50, 50)),
    st.floats(-20, 20),
)
@settings(max_examples=50, deadline=None)
def test_shift_invariance_of_softmax_scores(z: np.ndarray, c: float) -> None:
    # Softmax-based scores and the margin ignore a constant shift; energy moves with it.
    for name in ("max_softmax", "margin", "entropy"):
        np.testing.assert_allclose(
            scores.compute_score(name, z + c), scores.compute_score(name, z), atol=1e-9
        )
    np.testing.assert_allclose(scores.energy(z + c), scores.energy(z) + c, atol=1e-9)


def test_specialized_energy_excludes_other_and_gate() -> None:
    z = np.array([[2.0, 1.0, 5.0], [3.0, 0.0, 1.0]])
    expected = [np.log(np.exp([2.0, 1.0]).sum()), np.log(np.exp([3.0, 0.0]).sum())]
    np.testing.assert_allclose(scores.specialized_energy(z), expected)
    np.testing.assert_array_equal(scores.other_gate(z), [True, False])
    np.testing.assert_array_equal(scores.other_gate(z, other_class=0), [False, True])


def test_registry_register_and_overwrite() -> None:
    def neg_max(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        return -np.asarray(logits).max(axis=1)

    scores.register_score("test_neg_max", neg_max)
    try:
        assert scores.get_score("test_neg_max") is neg_max
        with pytest.raises(UnknownNameError, match="already registered"):
            scores.register_score("test_neg_max", neg_max)
    finally:
        scores.SCORES.pop("test_neg_max")


@pytest.mark.parametrize(
    ("logits", "err", "match"),
    [
        (np.zeros(3), InputShapeError, r"shape \(n_samples, n_classes\); got shape \(3,\)"),
        (np.zeros((2, 3, 4)), InputShapeError, r"got shape \(2, 3, 4\)"),
        (np.zeros((0, 3)), EmptyInputError, "at least one sample"),
        (np.zeros((4, 1)), InputShapeError, "at least 2 classes"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), NonFiniteError, "1 non-finite values .* row 0"),
        (np.array([[1.0, 2.0], [0.0, np.inf]]), NonFiniteError, "first at row 1"),
        (np.array([["a", "b"]]), InputShapeError, "numeric array"),
    ],
)
def test_bad_logits(logits: np.ndarray, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        scores.energy(logits)


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature(t: float) -> None:
    with pytest.raises(ParameterError, match="positive, finite temperature"):
        scores.max_softmax(Z, t)


def test_unknown_score_lists_known_names() -> None:
    with pytest.raises(UnknownNameError, match="Unknown score 'softmax'; expected one of energy"):
        scores.get_score("softmax")


def test_other_class_out_of_range() -> None:
    with pytest.raises(InputShapeError, match="other_class in"):
        scores.other_gate(np.zeros((2, 3)), other_class=5)
    with pytest.raises(InputShapeError, match="at least 3 classes"):
        scores.specialized_energy(np.zeros((2, 2)))


def test_dense_distinct_scores_keep_their_own_blocks() -> None:
    # 200,000 distinct scores packed into [0, 1] (neighbours ~5e-6 apart, below resolution):
    # few of them lie near any midpoint, so no two are merged; a saturated cluster still is
    rng = np.random.default_rng(4)
    dense = np.sort(rng.uniform(size=200_000))
    assert scores.resolution_blocks(dense).shape[0] == np.unique(dense).shape[0]
    cluster = np.sort(np.r_[dense, 1.5 + rng.normal(size=100) * 1e-9])
    starts = scores.resolution_blocks(cluster)
    assert starts.shape[0] == np.unique(dense).shape[0] + 1  # the 100 form one block
    thr = scores.separating_thresholds(cluster, starts)[1:]
    tol = scores.SCORE_RTOL * np.maximum(1.0, np.abs(thr))
    near = np.searchsorted(cluster, thr + tol, "right") - np.searchsorted(cluster, thr - tol)
    assert near.max() <= scores.MAX_NEAR_SHARE * cluster.shape[0]
