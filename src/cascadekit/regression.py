"""Routing scores for regressors: the regression energy of EBJR section 2.2, and ``-log sigma``.

**Score direction:** higher = more confident = keep the input on this stage, as everywhere in
cascadekit. An input stays on the student when ``score >= threshold``.

A regressor that defines an unnormalised density over targets, ``p(y | x) ∝ exp(f(x, y))``,
has the free energy ``F(x) = -log ∫ exp(f(x, y)) dy`` (EBJR eq. 9), and its router keeps
inputs with a high ``-F(x)`` (eq. 6 applied to eq. 9). The integral is computed here

* by deterministic quadrature for scalar targets (:func:`quadrature_energy`: Gauss-Legendre or
  trapezoid on a range around the prediction that is widened until the integrand is negligible
  at both ends, and narrowed when one node holds most of the mass);
* by importance sampling for vector targets (:func:`importance_sampling_energy`), with the
  proposal of Gustafsson et al. (ECCV 2020), a mixture of Gaussians centred on the prediction,
  drawn from **fixed random numbers** shared by every input, so scores are reproducible and
  rankings are not perturbed by independent noise.

``f`` is a vectorised function ``f(y, rows) -> values``: ``rows`` are the indices of the inputs
being evaluated (the routines work in chunks and refine some inputs only), ``y`` their candidate
targets, shape ``(len(rows), m)`` when ``center`` is ``(n,)`` (scalar targets) or
``(len(rows), m, d)`` when ``center`` is ``(n, d)``; it returns ``f(x_i, y_ij)`` of shape
``(len(rows), m)``. ``-inf`` means zero density.
:func:`gaussian_energy_fn` and :func:`binned_energy_fn` build such functions from a Gaussian head
and from a head of logits over target bins (an energy-based "regression as classification"
head; :func:`binned_energy` gives its energy in closed form).

.. warning::
   **A Gaussian head's naive energy has the wrong sign**. With the unnormalised
   score ``f = -(y - mu)^2 / (2 sigma^2)`` the integral is ``sigma * sqrt(2 pi)``, so
   ``-F = log sigma + const`` *grows* with the predicted uncertainty: thresholding it keeps the
   most uncertain inputs on the student. For a normalised density ``-F`` is constant (useless).
   Use :func:`gaussian_confidence`, ``-log sigma``, for such heads; do not call it a free energy.
   :func:`unnormalized_gaussian_energy` exists only to show the pitfall in ablations.

Per-sample losses feed the core curves: :func:`regression_curve` is
:func:`cascadekit.curves.cascade_curve` over absolute or squared errors (lower is better).

Only numpy and scipy are imported.

Examples
--------
>>> import numpy as np
>>> from cascadekit import regression as R
>>> mu, sigma = np.array([0.0, 1.0]), np.array([0.5, 2.0])
>>> f = R.gaussian_energy_fn(mu, sigma)
>>> R.quadrature_energy(f, mu, sigma).round(6)       # log(sigma * sqrt(2 pi))
array([0.225791, 1.612086])
>>> R.gaussian_confidence(sigma).round(4)              # the score to route a Gaussian head by
array([ 0.6931, -0.6931])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from ._validation import as_scores, check_costs, check_finite
from .curves import Curve, cascade_curve
from .errors import EmptyInputError, InputShapeError, NonFiniteError, ParameterError

__all__ = [
    "EnergyFn",
    "binned_energy",
    "binned_energy_fn",
    "binned_mean",
    "gaussian_confidence",
    "gaussian_energy_fn",
    "importance_sampling_energy",
    "per_sample_loss",
    "quadrature_energy",
    "regression_curve",
    "regression_energy",
    "unnormalized_gaussian_energy",
]

FloatArray = NDArray[np.float64]
EnergyFn = Callable[[FloatArray, NDArray[np.intp]], Any]
"""``f(y, rows) -> (len(rows), m)``: unnormalised log-density of candidates ``y`` of ``rows``."""

_LOG_2PI = math.log(2.0 * math.pi)
#: rows x points evaluated per call of ``f`` (bounds the memory of one call)
_CHUNK_ELEMENTS = 1 << 20


# ----------------------------------------------------------------------------------------------
# validation


def _as_center(center: ArrayLike) -> FloatArray:
    arr = np.asarray(center)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise InputShapeError(
            f"Expected center (the predictions) to be numeric, shape (n_samples,) or "
            f"(n_samples, n_targets); got dtype {arr.dtype}."
        )
    if arr.ndim not in (1, 2):
        raise InputShapeError(
            f"Expected center of shape (n_samples,) or (n_samples, n_targets); got shape "
            f"{arr.shape}. Pass one prediction per input."
        )
    if arr.shape[0] == 0 or (arr.ndim == 2 and arr.shape[1] == 0):
        raise EmptyInputError(f"Expected center with at least one sample; got shape {arr.shape}.")
    out = arr.astype(np.float64)
    check_finite(out, "center (the predictions)")
    return out


def _as_positive(x: ArrayLike, name: str, shape: tuple[int, ...]) -> FloatArray:
    """Broadcast a positive, finite ``x`` (scalar, per sample or per target) to ``shape``."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1 and len(shape) == 2 and arr.shape[0] == shape[0] != shape[1]:
        arr = arr[:, None]  # one value per sample for vector targets
    try:
        out = np.broadcast_to(arr, shape).astype(np.float64)
    except ValueError:
        raise InputShapeError(
            f"Expected {name} to be a scalar or broadcastable to {shape}; got shape {arr.shape}."
        ) from None
    if np.isnan(out).any():
        raise NonFiniteError(f"Expected {name} without NaN; got {int(np.isnan(out).sum())} NaN.")
    if not np.all(np.isfinite(out)) or np.any(out <= 0):
        bad = out[~(np.isfinite(out) & (out > 0))]
        raise ParameterError(
            f"Expected {name} > 0 and finite everywhere; got {bad.size} bad value(s), e.g. "
            f"{float(bad[0])!r}. A standard deviation or scale must be positive."
        )
    return out


def _call_f(f: EnergyFn, y: FloatArray, rows: NDArray[np.intp]) -> FloatArray:
    """Call ``f`` on candidates ``y`` (r, m[, d]) of inputs ``rows`` and check it returns (r, m)."""
    out = np.asarray(f(y, rows), dtype=np.float64)
    want = y.shape[:2]
    if out.shape != want:
        raise InputShapeError(
            f"Expected the energy function to return shape {want} (one value per input and "
            f"candidate target); got {out.shape}. f(y, rows) got y of shape {y.shape}."
        )
    if np.isnan(out).any() or np.isposinf(out).any():
        bad = np.isnan(out) | np.isposinf(out)
        raise NonFiniteError(
            f"The energy function returned {int(bad.sum())} NaN or +inf values. It must return "
            "finite log-densities, or -inf for zero density."
        )
    return out


def _check_log_z(log_z: FloatArray, offset: int = 0) -> FloatArray:
    bad = ~np.isfinite(log_z)
    if bad.any():
        raise NonFiniteError(
            f"The integral of exp(f) is 0 for {int(bad.sum())} input(s), first at row "
            f"{int(np.flatnonzero(bad)[0]) + offset}: f is -inf at every point tried. Check "
            "center and scale (the range searched) or the energy function."
        )
    return log_z


def _positive_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(f"Expected {name} to be an integer >= {minimum}; got {value!r}.")
    return int(value)


# ----------------------------------------------------------------------------------------------
# quadrature (scalar targets)


def _rule(rule: str, n_points: int) -> tuple[FloatArray, FloatArray]:
    """Nodes in [-1, 1] and log-weights of a quadrature rule on [-1, 1]."""
    if rule == "gauss-legendre":
        x, w = np.polynomial.legendre.leggauss(n_points)
    elif rule == "trapezoid":
        x = np.linspace(-1.0, 1.0, n_points)
        w = np.full(n_points, 2.0 / (n_points - 1))
        w[[0, -1]] /= 2.0
    else:
        raise ParameterError(
            f"Expected rule 'gauss-legendre' or 'trapezoid'; got {rule!r}. Gauss-Legendre is "
            "exact for smooth integrands with fewer points; trapezoid suits piecewise-linear f."
        )
    return np.asarray(x, dtype=np.float64), np.log(np.asarray(w, dtype=np.float64))


def quadrature_energy(
    f: EnergyFn,
    center: ArrayLike,
    scale: ArrayLike = 1.0,
    *,
    width: float = 8.0,
    n_points: int = 128,
    rule: Literal["gauss-legendre", "trapezoid"] = "gauss-legendre",
    tail_tol: float = 1e-8,
    max_refinements: int = 40,
) -> FloatArray:
    """Regression energy ``-F(x) = log ∫ exp(f(x, y)) dy`` for scalar targets, by quadrature.

    Higher = the model puts more unnormalised mass on its targets = keep on this stage
    (EBJR eq. 9 with the router of eq. 6).

    The integral runs over ``center ± width * scale`` for every input. The range adapts per
    input: where ``exp(f)`` at an end of the range is above ``tail_tol`` times its peak, the
    range is doubled; where a single node holds more than half of the mass (the peak is
    narrower than the grid), it is halved around the peak. Each input is refined at most
    ``max_refinements`` times.

    Parameters
    ----------
    f : callable
        ``f(y, rows)``: ``y`` of shape ``(len(rows), m)`` holds candidate targets of the inputs
        ``rows``; returns ``f(x_i, y_ij)`` of the same shape; ``-inf`` means zero density.
    center : array-like of shape (n_samples,)
        Where to centre the range, usually the model's prediction.
    scale : float or array-like of shape (n_samples,), default=1.0
        Width of the density's peak (e.g. the predicted sigma or the target's spread), > 0.
    width : float, default=8.0
        Half-width of the first range, in units of ``scale``.
    n_points : int, default=128
        Nodes per input.
    rule : {"gauss-legendre", "trapezoid"}
    tail_tol : float, default=1e-8
        Relative size of the integrand allowed at the ends of the range.
    max_refinements : int, default=40

    Returns
    -------
    ndarray of shape (n_samples,)
        ``log ∫ exp(f) dy`` (higher = keep).

    Raises
    ------
    InputShapeError
        ``center`` is not 1-D (use :func:`importance_sampling_energy` for vector targets) or
        ``f`` returns the wrong shape.
    NonFiniteError
        NaN in ``center`` or ``f``, or ``f`` is ``-inf`` everywhere for an input.
    ParameterError
        ``scale <= 0``, ``width <= 0``, too few points or an unknown rule.

    Examples
    --------
    >>> import numpy as np
    >>> f = lambda y, rows: -np.abs(y)               # Laplace: ∫ exp(-|y|) dy = 2
    >>> quadrature_energy(f, np.array([0.3]), rule="trapezoid", n_points=4001).round(4)
    array([0.6931])
    """
    c = _as_center(center)
    if c.ndim != 1:
        if c.shape[1] != 1:
            raise InputShapeError(
                f"Expected scalar targets, center of shape (n_samples,); got shape {c.shape}. "
                "Use importance_sampling_energy (or regression_energy) for vector targets."
            )
        c1 = c[:, 0]

        def f1(y: FloatArray, rows: NDArray[np.intp]) -> Any:
            return f(y[..., None], rows)

        return quadrature_energy(
            f1,
            c1,
            np.asarray(scale, dtype=np.float64).reshape(-1) if np.ndim(scale) else scale,
            width=width,
            n_points=n_points,
            rule=rule,
            tail_tol=tail_tol,
            max_refinements=max_refinements,
        )
    n = c.shape[0]
    s = _as_positive(scale, "scale", (n,))
    if not (math.isfinite(float(width)) and float(width) > 0):
        raise ParameterError(f"Expected width > 0 and finite; got {width!r}.")
    m = _positive_int(n_points, "n_points", 3)
    if not (0.0 < float(tail_tol) < 1.0):
        raise ParameterError(f"Expected tail_tol strictly between 0 and 1; got {tail_tol!r}.")
    refinements = _positive_int(max_refinements, "max_refinements", 0)
    nodes, log_w = _rule(rule, m)
    log_tail = math.log(float(tail_tol))
    half = s * float(width)
    mid = c.copy()
    log_z = np.empty(n, dtype=np.float64)
    todo = np.arange(n)
    chunk = max(1, _CHUNK_ELEMENTS // m)
    for step in range(refinements + 1):
        if todo.size == 0:
            break
        widen = np.zeros(todo.size, dtype=bool)
        narrow = np.zeros(todo.size, dtype=bool)
        peak_node = np.zeros(todo.size, dtype=np.intp)
        for lo in range(0, todo.size, chunk):
            rows = todo[lo : lo + chunk]
            y = mid[rows, None] + half[rows, None] * nodes[None, :]
            v = _call_f(f, y, rows)
            terms = v + log_w[None, :]
            lz = logsumexp(terms, axis=1) + np.log(half[rows])
            log_z[rows] = lz
            top = np.max(v, axis=1, keepdims=True)
            safe_top = np.where(np.isfinite(top), top, 0.0)
            ends = np.maximum(v[:, 0], v[:, -1]) - safe_top[:, 0]
            widen[lo : lo + rows.size] = np.isfinite(top[:, 0]) & (ends > log_tail)
            with np.errstate(invalid="ignore"):  # rows where f is -inf everywhere: NaN, False
                share = np.max(terms, axis=1) - logsumexp(terms, axis=1)
            narrow[lo : lo + rows.size] = np.isfinite(top[:, 0]) & (share > math.log(0.5))
            peak_node[lo : lo + rows.size] = np.argmax(terms, axis=1)
        if step == refinements:
            break
        # widen first: a range that cuts off mass is the worse error
        narrow &= ~widen
        half[todo[widen]] *= 2.0
        nr = todo[narrow]
        mid[nr] = mid[nr] + half[nr] * nodes[peak_node[narrow]]
        half[nr] /= 2.0
        todo = todo[widen | narrow]
    return _check_log_z(log_z)


# ----------------------------------------------------------------------------------------------
# importance sampling (any dimension)


def importance_sampling_energy(
    f: EnergyFn,
    center: ArrayLike,
    scale: ArrayLike = 1.0,
    *,
    n_samples: int = 1024,
    proposal_scales: ArrayLike = (0.25, 1.0, 4.0),
    random_state: int = 0,
) -> FloatArray:
    """Regression energy ``log ∫ exp(f(x, y)) dy`` by importance sampling; higher = keep.

    The proposal is Gustafsson et al.'s mixture of K Gaussians centred on the prediction,
    ``q(y) = (1/K) sum_k N(y; center, (proposal_scales[k] * scale)^2 I)``, and
    ``log Z ≈ logsumexp_m[f(y_m) - log q(y_m)] - log M``. The M standard-normal draws and the
    component of each draw (component ``m mod K``, so every component gets its share) are fixed
    by ``random_state`` and shared by every input (common random numbers): the same inputs always
    get the same scores, and the ranking between inputs is not perturbed by independent noise. The
    estimate of ``log Z`` is biased low (Jensen) and noisy for small ``n_samples``; for scalar
    targets prefer :func:`quadrature_energy`.

    Parameters
    ----------
    f : callable
        ``f(y, rows)``, ``y`` of shape ``(len(rows), M, d)`` (or ``(len(rows), M)`` when
        ``center`` is 1-D), returns shape ``(len(rows), M)``.
    center : array-like of shape (n_samples, d) or (n_samples,)
        The prediction of every input.
    scale : float or array-like broadcastable to (n_samples, d), default=1.0
        Per-input (and per-coordinate) spread of the proposal, > 0.
    n_samples : int, default=1024
        Draws per input (M).
    proposal_scales : sequence of float, default=(0.25, 1.0, 4.0)
        Standard deviations of the K mixture components, in units of ``scale``.
    random_state : int, default=0
        Seed of the fixed random numbers.

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> f = lambda y, rows: -0.5 * np.sum(y**2, axis=-1)   # ∫ exp(-|y|^2 / 2) dy = 2 pi
    >>> z = importance_sampling_energy(f, np.zeros((2, 2)), n_samples=4096)
    >>> bool(np.allclose(z, np.log(2 * np.pi), atol=0.02)), bool(z[0] == z[1])
    (True, True)
    """
    c = _as_center(center)
    scalar = c.ndim == 1
    c2 = c[:, None] if scalar else c
    n, d = c2.shape
    s = _as_positive(scale, "scale", (n, d))
    m = _positive_int(n_samples, "n_samples", 1)
    sig = np.asarray(proposal_scales, dtype=np.float64).reshape(-1)
    if sig.size == 0 or not np.all(np.isfinite(sig)) or np.any(sig <= 0):
        raise ParameterError(
            f"Expected proposal_scales to be positive, finite numbers; got {sig.tolist()}."
        )
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise ParameterError(f"Expected an integer random_state; got {random_state!r}.")
    k = sig.size
    rng = np.random.default_rng(int(random_state))
    eps = rng.standard_normal((m, d))
    comp = np.arange(m) % k
    step = sig[comp][:, None] * eps  # (M, d): offsets in units of scale
    # log q of each draw, up to the per-input term -sum_j log s_ij (same for every draw)
    r2 = np.sum(step**2, axis=1)  # (M,)
    per_comp = -0.5 * d * _LOG_2PI - d * np.log(sig)[None, :] - r2[:, None] / (2.0 * sig**2)
    log_q0 = logsumexp(per_comp, axis=1) - math.log(k)  # (M,)
    log_z = np.empty(n, dtype=np.float64)
    chunk = max(1, _CHUNK_ELEMENTS // (m * d))
    for lo in range(0, n, chunk):
        rows = np.arange(lo, min(lo + chunk, n))
        y = c2[rows, None, :] + s[rows, None, :] * step[None, :, :]
        v = _call_f(f, y[..., 0] if scalar else y, rows)
        log_q = log_q0[None, :] - np.sum(np.log(s[rows]), axis=1)[:, None]
        log_z[rows] = logsumexp(v - log_q, axis=1) - math.log(m)
    return _check_log_z(log_z)


def regression_energy(
    f: EnergyFn,
    center: ArrayLike,
    scale: ArrayLike = 1.0,
    *,
    method: Literal["auto", "quadrature", "importance"] = "auto",
    **options: Any,
) -> FloatArray:
    """Regression energy ``-F(x) = log ∫ exp(f(x, y)) dy`` (EBJR eq. 9); higher = keep.

    ``method="auto"`` uses :func:`quadrature_energy` for scalar targets (``center`` of shape
    ``(n,)`` or ``(n, 1)``) and :func:`importance_sampling_energy` otherwise; ``options`` go
    to the chosen function.

    Examples
    --------
    >>> import numpy as np
    >>> f = gaussian_energy_fn(np.zeros(3), np.ones(3))
    >>> regression_energy(f, np.zeros(3)).round(4)       # log sqrt(2 pi)
    array([0.9189, 0.9189, 0.9189])
    """
    if method not in ("auto", "quadrature", "importance"):
        raise ParameterError(
            f"Expected method 'auto', 'quadrature' or 'importance'; got {method!r}."
        )
    c = _as_center(center)
    one_d = c.ndim == 1 or c.shape[1] == 1
    if method == "quadrature" or (method == "auto" and one_d):
        return quadrature_energy(f, c, scale, **options)
    return importance_sampling_energy(f, c, scale, **options)


# ----------------------------------------------------------------------------------------------
# Gaussian heads


def _as_sigma(sigma: ArrayLike) -> FloatArray:
    arr = np.asarray(sigma, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[0] == 0:
        raise InputShapeError(
            f"Expected sigma of shape (n_samples,) or (n_samples, n_targets); got shape "
            f"{arr.shape}."
        )
    return _as_positive(arr, "sigma", arr.shape)


def gaussian_confidence(sigma: ArrayLike) -> FloatArray:
    """``-log sigma``: the routing score of a Gaussian head (higher = surer = keep).

    For vector targets with per-coordinate ``sigma`` of shape ``(n, d)`` it is
    ``-sum_j log sigma_j`` (minus the log of the volume of the predicted spread). Any
    decreasing function of ``sigma`` (``-sigma``, ``-sigma^2``) gives the same routing curve.

    .. warning:: Not a free energy. The naive unnormalised "-F" of a Gaussian head is
       ``+log sigma + const``, the wrong sign (see :func:`unnormalized_gaussian_energy`).

    Examples
    --------
    >>> gaussian_confidence([1.0, np.e]).round(3)
    array([-0., -1.])
    """
    s = _as_sigma(sigma)
    logs = np.log(s)
    out: FloatArray = -(logs if logs.ndim == 1 else logs.sum(axis=1))
    return out


def unnormalized_gaussian_energy(sigma: ArrayLike) -> FloatArray:
    """The naive "-F" of a Gaussian head, ``log(sigma * sqrt(2 pi))``: **the wrong sign**.

    With ``f(x, y) = -(y - mu)^2 / (2 sigma^2)``, ``log ∫ exp(f) dy = log sigma + log sqrt(2 pi)``
    grows with the predicted uncertainty, so routing by it (keep when high) keeps the least
    certain inputs on the student. It is here for ablations that show the pitfall; route by
    :func:`gaussian_confidence` instead (see the module docstring).

    Examples
    --------
    >>> unnormalized_gaussian_energy([1.0]).round(4)
    array([0.9189])
    """
    s = _as_sigma(sigma)
    logs = np.log(s)
    d = 1 if logs.ndim == 1 else logs.shape[1]
    out: FloatArray = (logs if logs.ndim == 1 else logs.sum(axis=1)) + 0.5 * d * _LOG_2PI
    return out


def gaussian_energy_fn(mean: ArrayLike, sigma: ArrayLike) -> EnergyFn:
    """``f(y) = -|y - mean|^2 / (2 sigma^2)``, the unnormalised score of a Gaussian head.

    Returns a function for :func:`quadrature_energy` / :func:`importance_sampling_energy`; its
    energy is ``log(sigma sqrt(2 pi))`` per coordinate, which makes it a reference to test
    against (and shows the sign pitfall of :func:`unnormalized_gaussian_energy`).

    Examples
    --------
    >>> f = gaussian_energy_fn([0.0], [2.0])
    >>> f(np.array([[1.0, 2.0]]), np.array([0]))
    array([[-0.125, -0.5  ]])
    """
    mu = _as_center(mean)
    s = _as_sigma(sigma)
    if s.shape != mu.shape:
        raise InputShapeError(
            f"Expected mean and sigma of the same shape; got {mu.shape} and {s.shape}."
        )

    def f(y: FloatArray, rows: NDArray[np.intp]) -> FloatArray:
        y = np.asarray(y, dtype=np.float64)
        if mu.ndim == 1:
            z = (y - mu[rows, None]) / s[rows, None]
            out: FloatArray = -0.5 * z**2
            return out
        z = (y - mu[rows, None, :]) / s[rows, None, :]
        out = -0.5 * np.sum(z**2, axis=-1)
        return out

    return f


def _interp_logits(logits: FloatArray, centers: FloatArray, y: FloatArray) -> FloatArray:
    """Piecewise-linear interpolation of each row's logits at ``y`` (n, m); -inf outside."""
    b = centers.shape[0]
    j = np.clip(np.searchsorted(centers, y, side="right") - 1, 0, b - 2)
    lo, hi = centers[j], centers[j + 1]
    t = (y - lo) / (hi - lo)
    rows = np.arange(y.shape[0])[:, None]
    v = (1.0 - t) * logits[rows, j] + t * logits[rows, j + 1]
    out: FloatArray = np.where((y >= centers[0]) & (y <= centers[-1]), v, -np.inf)
    return out


def _as_binned(logits: ArrayLike, bin_centers: ArrayLike) -> tuple[FloatArray, FloatArray]:
    z = np.asarray(logits, dtype=np.float64)
    c = np.asarray(bin_centers, dtype=np.float64)
    if c.ndim != 1 or c.shape[0] < 2:
        raise InputShapeError(
            f"Expected bin_centers of shape (n_bins,) with n_bins >= 2; got shape {c.shape}."
        )
    check_finite(c, "bin_centers")
    if np.any(np.diff(c) <= 0):
        raise ParameterError("Expected strictly increasing bin_centers; sort them.")
    if z.ndim != 2 or z.shape[1] != c.shape[0] or z.shape[0] == 0:
        raise InputShapeError(
            f"Expected logits of shape (n_samples, {c.shape[0]}) (one per bin); got shape "
            f"{z.shape}."
        )
    check_finite(z, "logits")
    return z, c


def binned_energy_fn(logits: ArrayLike, bin_centers: ArrayLike) -> EnergyFn:
    """``f(x, y)`` of a head of logits over target bins: the logits interpolated linearly in y.

    ``f`` is ``-inf`` outside ``[bin_centers[0], bin_centers[-1]]``. It is an unnormalised
    energy (``softmax`` over bins never fixes the logits' offset), so its regression energy
    varies with ``x`` like a classifier's energy. ``rows`` index the rows of ``logits``.

    Examples
    --------
    >>> f = binned_energy_fn([[0.0, 2.0]], [0.0, 1.0])
    >>> f(np.array([[0.5, 2.0]]), np.array([0]))
    array([[  1., -inf]])
    """
    z, c = _as_binned(logits, bin_centers)

    def f(y: FloatArray, rows: NDArray[np.intp]) -> FloatArray:
        return _interp_logits(z[rows], c, np.asarray(y, dtype=np.float64))

    return f


def binned_energy(logits: ArrayLike, bin_centers: ArrayLike) -> FloatArray:
    """Exact ``log ∫ exp(f) dy`` for :func:`binned_energy_fn` (higher = keep).

    On each segment ``[c_j, c_j+1]`` the integrand is ``exp`` of a linear function, whose
    integral is ``h (e^b - e^a) / (b - a)`` (``h e^a`` when ``a == b``); the segments are summed
    in log space.

    Examples
    --------
    >>> binned_energy([[0.0, 0.0]], [0.0, 2.0]).round(4)    # log 2
    array([0.6931])
    """
    z, c = _as_binned(logits, bin_centers)
    a, b = z[:, :-1], z[:, 1:]
    h = np.diff(c)[None, :]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    gap = hi - lo
    # log((e^hi - e^lo) / (hi - lo)) = hi + log((1 - e^-gap) / gap), -> hi when gap -> 0
    small = gap < 1e-8
    safe = np.where(small, 1.0, gap)
    corr = np.where(small, -gap / 2.0, np.log(-np.expm1(-safe)) - np.log(safe))
    out: FloatArray = logsumexp(hi + corr + np.log(h), axis=1)
    return out


def binned_mean(logits: ArrayLike, bin_centers: ArrayLike) -> FloatArray:
    """The prediction of a binned head: the mean of ``softmax(logits)`` over the bin centres.

    Examples
    --------
    >>> binned_mean([[0.0, 0.0], [-50.0, 0.0]], [1.0, 3.0]).round(4)
    array([2., 3.])
    """
    z, c = _as_binned(logits, bin_centers)
    p = np.exp(z - logsumexp(z, axis=1, keepdims=True))
    out: FloatArray = p @ c
    return out


# ----------------------------------------------------------------------------------------------
# per-sample losses and curves


def per_sample_loss(
    prediction: ArrayLike, target: ArrayLike, loss: Literal["absolute", "squared"] = "absolute"
) -> FloatArray:
    """Per-sample loss: ``|pred - y|`` or ``(pred - y)^2`` (summed over target coordinates).

    Examples
    --------
    >>> per_sample_loss([1.0, 2.0], [0.0, 4.0], "squared")
    array([1., 4.])
    """
    p = _as_center(prediction)
    y = _as_center(target)
    if p.shape != y.shape:
        raise InputShapeError(
            f"Expected predictions and targets of the same shape; got {p.shape} and {y.shape}."
        )
    diff = p - y
    if loss == "absolute":
        v = np.abs(diff)
    elif loss == "squared":
        v = diff**2
    else:
        raise ParameterError(f"Expected loss 'absolute' or 'squared'; got {loss!r}.")
    out: FloatArray = v if v.ndim == 1 else v.sum(axis=1)
    return out


def regression_curve(
    scores: ArrayLike,
    prediction_student: ArrayLike,
    prediction_teacher: ArrayLike,
    target: ArrayLike,
    costs: ArrayLike | None = None,
    *,
    loss: Literal["absolute", "squared"] = "absolute",
) -> Curve:
    """Mean loss against cost of a 2-stage regression cascade, at every threshold.

    :func:`cascadekit.curves.cascade_curve` over per-sample losses with
    ``higher_is_better=False``: the curve's ``accuracy`` field holds the mean loss. An input
    stays on the student when ``score >= threshold`` (higher = keep). The first point is the
    student alone, the last the teacher alone.

    Examples
    --------
    >>> c = regression_curve([2.0, 1.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0], costs=[1, 4])
    >>> c.accuracy, c.relative_cost
    (array([0.5, 0. , 0. ]), array([0.25, 0.75, 1.25]))
    """
    s = as_scores(scores, "scores")
    ls = per_sample_loss(prediction_student, target, loss)
    lt = per_sample_loss(prediction_teacher, target, loss)
    return cascade_curve(s, ls, lt, check_costs(costs, 2), higher_is_better=False)
