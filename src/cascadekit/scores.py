"""Routing scores computed from a stage's logits.

**One direction everywhere: higher = more confident = keep the input on this stage.** An input
stays at a stage when ``score >= threshold`` and moves on otherwise.

========================  ============================================  =====================
name                      formula (``z`` = logits, ``p = softmax(z/T)``)  note
========================  ============================================  =====================
``energy``                ``T * logsumexp(z / T)``                      EBJR's ``-F(x)`` at T=1
``max_softmax``           ``log p_max - log(1 - p_max)``                log-odds of the
                                                                        softmax response
``margin``                ``(z_(1) - z_(2)) / T``                      logit margin
``entropy``               ``-log H(p)``, ``H = -sum_i p_i log p_i``    log of 1 / entropy
``max_logit``             ``max_i z_i / T``                            T -> 0 limit of energy
========================  ============================================  =====================

**Resolution.** Confident inputs are where a threshold usually sits, and there ``p_max`` is
within float rounding of 1 and the entropy of 0: in that form thousands of inputs share a few
representable values and which side of a threshold they fall on is decided by rounding noise
(the batch an input arrives in, the tensor encoding). ``max_softmax`` and ``entropy`` are
therefore computed as monotone transforms that keep their resolution there, entirely in the log
domain: the log-odds of ``p_max`` is ``z_(1)/T - logsumexp_{j != argmax} z_j/T`` and ``-log H``
comes from a logsumexp of the entropy's terms. The routing order, and so every curve, is the
same as for ``p_max`` and ``sum p log p`` in exact arithmetic. :func:`max_probability` and
:func:`negative_entropy` give the plain values, and :func:`from_probability_form` converts a
threshold written for them.

Energy, margin and max-logit are computed with a max-shift in float64 for float64 input and
float32 otherwise (half-precision logits are upcast first), so large logits never overflow;
``max_softmax`` and ``entropy`` always in float64.

**Probabilities are not logits.** Energy is meaningless on probabilities and on
log-probabilities (``logsumexp(log p) = log 1 = 0`` for every input: routing by it follows
rounding noise). The functions here take logits as they are; saved outputs are checked as a
whole where they enter (``Cascade.route``, the calibration and the command line):
probabilities are converted to their logs and energy on either is refused with a clear error,
and model adapters that return log-probabilities (scikit-learn's ``predict_proba``) say so.

The *specialized* student of EBJR section 2.4 has the C most frequent classes plus an extra
"other" class. :func:`specialized_energy` is the energy over the real classes only, and
:func:`other_gate` marks the inputs whose argmax is "other": those always move on.

Examples
--------
>>> import numpy as np
>>> from cascadekit import scores
>>> z = np.array([[4.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
>>> scores.energy(z).round(3)
array([4.036, 2.099])
>>> scores.get_score("margin")(z)
array([4., 0.])
>>> scores.max_softmax(z).round(3)   # log-odds of p_max: 4 - log 2 for the first row
array([ 3.307, -0.693])
>>> sorted(scores.available_scores())
['energy', 'entropy', 'margin', 'max_logit', 'max_softmax']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import as_logits, check_temperature
from .errors import InputShapeError, UnknownNameError

__all__ = [
    "MAX_NEAR_SHARE",
    "SCORES",
    "SCORE_RTOL",
    "ScoreFn",
    "available_scores",
    "compute_score",
    "energy",
    "entropy",
    "from_probability_form",
    "get_score",
    "margin",
    "max_logit",
    "max_probability",
    "max_softmax",
    "near_threshold",
    "negative_entropy",
    "numerical_margin",
    "other_gate",
    "register_score",
    "resolution_blocks",
    "separating_threshold_of",
    "separating_thresholds",
    "specialized_energy",
]

SCORE_RTOL = 1e-5
"""Relative numerical resolution of a routing score: two scores closer than
``SCORE_RTOL * max(1, |score|)`` are treated as one value (a tie) when thresholds are chosen.

Float32 logits carry about 7 significant digits, and the same input's logits differ in their
last digits between batch sizes and kernels; a threshold is never placed closer than this to a
calibration score (see :func:`separating_thresholds`)."""

MAX_NEAR_SHARE = 1e-4
"""Largest share of calibration scores allowed within resolution of a threshold (see
:func:`resolution_blocks`): 0 below 10,000 scores, at most one in 10,000 above."""

FloatArray = NDArray[np.floating[Any]]


class ScoreFn(Protocol):
    """A routing score: ``(logits, temperature=1.0) -> (n_samples,)``, higher = keep."""

    def __call__(self, logits: ArrayLike, temperature: float = 1.0) -> FloatArray: ...


def _prepare(logits: ArrayLike, temperature: float) -> tuple[FloatArray, float]:
    z = as_logits(logits, "logits")
    t = check_temperature(temperature)
    return z, t


def _scaled(z: FloatArray, t: float) -> FloatArray:
    """``z / t`` without a copy at ``t == 1`` (the common case)."""
    return z if t == 1.0 else z / np.asarray(t, dtype=z.dtype)


def _shifted_exp(z: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Row max ``m`` (n, 1), ``d = z - m`` and ``s = sum(exp(d))`` (n, 1), in z's dtype.

    The row-wise logsumexp is ``m + log(s)``: the max shift keeps every exponent <= 0, so
    nothing overflows, and ``s >= 1`` so its log is safe. Plain numpy on finite logits (checked
    by :func:`as_logits`) is several times faster than :func:`scipy.special.logsumexp`, which
    also handles infinities, weights and signs; routing runs on every batch a model serves.
    """
    m = z.max(axis=1, keepdims=True)
    d = z - m
    s = np.exp(d).sum(axis=1, keepdims=True)
    return m, d, s


def energy(logits: ArrayLike, temperature: float = 1.0) -> FloatArray:
    """Negative free energy ``T * logsumexp(logits / T)`` (EBJR eq. 3 and 6 at ``T=1``).

    Higher means lower free energy, i.e. the input is more typical for the model: keep it.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
        Raw (pre-softmax) outputs of the stage.
    temperature : float, default=1.0
        ``T > 0``. As ``T -> 0`` the ranking approaches :func:`max_logit`.

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> energy(np.array([[0.0, 0.0]])).round(4)
    array([0.6931])
    >>> energy(np.array([[1000.0, 0.0]], dtype=np.float16))  # no overflow
    array([1000.], dtype=float32)
    """
    z, t = _prepare(logits, temperature)
    m, _, s = _shifted_exp(_scaled(z, t))
    out: FloatArray = (m + np.log(s))[:, 0]
    if t != 1.0:
        out *= np.asarray(t, dtype=out.dtype)
    return out.astype(z.dtype, copy=False)


def _others_logsumexp(zt: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``d = zt - max`` (row-wise, the argmax entry set to -inf) and ``L = logsumexp(d)``.

    ``L = log((1 - p_max) / p_max)`` exactly, computed with its own max shift so that it stays
    finite and accurate however confident the row is.
    """
    n = zt.shape[0]
    rows = np.arange(n)
    top = zt.argmax(axis=1)
    d = zt - zt[rows, top][:, None]
    d[rows, top] = -np.inf
    r = np.exp(d).sum(axis=1)  # positive terms only: no cancellation, full relative precision
    with np.errstate(divide="ignore"):
        lse = np.log(r)
    tiny = r == 0.0  # every other class more than ~745 below the top: shift by the second
    if tiny.any():
        dt = d[tiny]
        m2 = dt.max(axis=1)
        lse[tiny] = m2 + np.log(np.exp(dt - m2[:, None]).sum(axis=1))
    return d, lse


def _float64_scaled(logits: ArrayLike, temperature: float) -> NDArray[np.float64]:
    z, t = _prepare(logits, temperature)
    z64 = z.astype(np.float64, copy=False)
    return z64 if t == 1.0 else z64 / t


def max_softmax(logits: ArrayLike, temperature: float = 1.0) -> FloatArray:
    """Log-odds of the maximum softmax probability, ``log p_max - log(1 - p_max)``; higher = keep.

    ``p = softmax(logits / T)``. A monotone transform of ``p_max`` (same routing order, same
    curves) that keeps its resolution near ``p_max = 1``: it is computed as
    ``z_(1)/T - logsumexp_{j != argmax}(z_j / T)`` in float64, so two confident inputs whose
    ``p_max`` both round to 1.0 still get distinct scores. ``scipy.special.expit(score)`` (or
    :func:`max_probability`) gives ``p_max``; :func:`from_probability_form` converts a
    threshold written for ``p_max``.

    Examples
    --------
    >>> import numpy as np
    >>> max_softmax(np.array([[2.0, 0.0], [0.0, 0.0]]))
    array([2., 0.])
    >>> max_softmax(np.array([[40.0, 0.0], [41.0, 0.0]]))  # p_max rounds to 1.0 for both
    array([40., 41.])
    """
    _, lse = _others_logsumexp(_float64_scaled(logits, temperature))
    out: FloatArray = 0.0 - lse  # not -lse: no negative zero for ties
    return out


def max_probability(logits: ArrayLike, temperature: float = 1.0) -> FloatArray:
    """The maximum softmax probability ``p_max`` itself (for display and averaging).

    Route with :func:`max_softmax`, its log-odds: ``p_max`` saturates at 1.0 in floating point.

    Examples
    --------
    >>> import numpy as np
    >>> max_probability(np.array([[2.0, 0.0], [0.0, 0.0]])).round(4)
    array([0.8808, 0.5   ])
    """
    _, lse = _others_logsumexp(_float64_scaled(logits, temperature))
    out: FloatArray = np.exp(-np.logaddexp(0.0, lse))
    return out


def margin(logits: ArrayLike, temperature: float = 1.0) -> FloatArray:
    """Logit margin ``(z_(1) - z_(2)) / T`` between the two largest logits; higher = keep.

    The temperature only rescales it, so the routing curve does not depend on ``T``.

    Examples
    --------
    >>> import numpy as np
    >>> margin(np.array([[3.0, 1.0, 2.5]]))
    array([0.5])
    """
    z, t = _prepare(logits, temperature)
    top2 = np.partition(z, z.shape[1] - 2, axis=1)[:, -2:]
    out: FloatArray = (top2[:, 1] - top2[:, 0]) / t
    return out


def _log_entropy(logits: ArrayLike, temperature: float) -> NDArray[np.float64]:
    """``log H(softmax(logits / T))`` in the log domain (finite even when ``H`` underflows)."""
    d, lse = _others_logsumexp(_float64_scaled(logits, temperature))
    log_s = np.logaddexp(0.0, lse)  # log sum_j exp(d_j) over all classes, d_max = 0
    # log(log_s), accurate when log_s = log1p(exp(lse)) is tiny (very confident rows)
    with np.errstate(divide="ignore"):
        log_log_s = np.where(lse < -20.0, lse - 0.5 * np.exp(lse), np.log(log_s))
    # term of class j: p_j (-log p_j) = exp(d_j - log_s) (log_s - d_j); its log, -inf at argmax
    with np.errstate(invalid="ignore"):
        terms = (d - log_s[:, None]) + np.log(log_s[:, None] - d)
    rows = np.arange(d.shape[0])
    top = np.isneginf(d).argmax(axis=1)
    terms[rows, top] = log_log_s - log_s
    m = terms.max(axis=1)
    out: NDArray[np.float64] = m + np.log(np.exp(terms - m[:, None]).sum(axis=1))
    return out


def entropy(logits: ArrayLike, temperature: float = 1.0) -> FloatArray:
    """``-log H`` with ``H = -sum_i p_i log p_i`` the entropy of ``softmax(logits / T)``.

    Higher = lower entropy = keep. A monotone transform of the negative entropy
    ``sum_i p_i log p_i`` (same routing order, same curves) that keeps its resolution where
    confident inputs live: ``H`` itself is within rounding of 0 there. It ranges from
    ``-log(log(n_classes))`` (uniform) to large positive values; :func:`negative_entropy` gives
    ``-H`` and :func:`from_probability_form` converts a threshold written for it.

    Examples
    --------
    >>> import numpy as np
    >>> entropy(np.array([[0.0, 0.0], [50.0, 0.0]])).round(4)   # -log(log 2), then 50 - log(51)
    array([ 0.3665, 46.0682])
    """
    out: FloatArray = -_log_entropy(logits, temperature)
    return out


def negative_entropy(logits: ArrayLike, temperature: float = 1.0) -> FloatArray:
    """The negative entropy ``sum_i p_i log p_i`` itself, in ``[-log(n_classes), 0]``.

    Route with :func:`entropy` (``-log H``): ``-H`` saturates at 0 in floating point.

    Examples
    --------
    >>> import numpy as np
    >>> negative_entropy(np.array([[0.0, 0.0], [50.0, 0.0]])).round(4)
    array([-0.6931, -0.    ])
    """
    out: FloatArray = -np.exp(_log_entropy(logits, temperature))
    return out


def max_logit(logits: ArrayLike, temperature: float = 1.0) -> FloatArray:
    """Largest logit ``max_i z_i / T``; higher = keep.

    Examples
    --------
    >>> import numpy as np
    >>> max_logit(np.array([[3.0, 1.0]]))
    array([3.])
    """
    z, t = _prepare(logits, temperature)
    out: FloatArray = z.max(axis=1) / t
    return out


def _other_index(z: FloatArray, other_class: int) -> int:
    c = z.shape[1]
    if not -c <= other_class < c:
        raise InputShapeError(
            f"Expected other_class in [{-c}, {c - 1}] for logits with {c} classes; got "
            f"{other_class}. Pass the column index of the 'other' class (usually -1, the last)."
        )
    return other_class % c


def specialized_energy(
    logits: ArrayLike, temperature: float = 1.0, other_class: int = -1
) -> FloatArray:
    """Energy over the real classes only, excluding the "other" column (EBJR eq. 17).

    Parameters
    ----------
    logits : array-like of shape (n_samples, C + 1)
        Logits of a specialized student: C real classes and one "other" class.
    temperature : float, default=1.0
    other_class : int, default=-1
        Column of the "other" class.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[0.0, 0.0, 9.0]])  # "other" is the last column and is ignored
    >>> specialized_energy(z).round(4)
    array([0.6931])
    """
    z = as_logits(logits, "specialized student logits", min_classes=3)
    k = _other_index(z, other_class)
    keep = np.delete(z, k, axis=1)
    return energy(keep, temperature)


def other_gate(logits: ArrayLike, other_class: int = -1) -> NDArray[np.bool_]:
    """True where the argmax is the "other" class: such inputs always move on (EBJR eq. 16).

    Examples
    --------
    >>> import numpy as np
    >>> other_gate(np.array([[2.0, 0.0, 1.0], [0.0, 0.0, 3.0]]))
    array([False,  True])
    """
    z = as_logits(logits, "specialized student logits", min_classes=3)
    k = _other_index(z, other_class)
    gate: NDArray[np.bool_] = np.argmax(z, axis=1) == k
    return gate


SCORES: dict[str, ScoreFn] = {
    "energy": energy,
    "max_softmax": max_softmax,
    "margin": margin,
    "entropy": entropy,
    "max_logit": max_logit,
}
"""The registry of score functions by name (see :func:`register_score`)."""


def available_scores() -> list[str]:
    """Names of the registered scores, in registration order."""
    return list(SCORES)


def get_score(name: str | Callable[..., Any]) -> ScoreFn:
    """Return the score function registered under ``name`` (a callable is returned as is).

    Examples
    --------
    >>> get_score("energy") is energy
    True
    >>> get_score("energi")
    Traceback (most recent call last):
    ...
    cascadekit.errors.UnknownNameError: Unknown score 'energi'; expected one of energy, ...
    """
    if callable(name):
        return name
    try:
        return SCORES[name]
    except KeyError:
        raise UnknownNameError(
            f"Unknown score {name!r}; expected one of {', '.join(SCORES)}. "
            "Register your own with cascadekit.scores.register_score(name, fn)."
        ) from None


def register_score(name: str, fn: ScoreFn, *, overwrite: bool = False) -> None:
    """Add a score to the registry. It must follow the direction: higher = keep on this stage."""
    if name in SCORES and not overwrite:
        raise UnknownNameError(
            f"A score named {name!r} is already registered; pass overwrite=True to replace it."
        )
    SCORES[name] = fn


def compute_score(
    name: str | Callable[..., Any], logits: ArrayLike, temperature: float = 1.0
) -> FloatArray:
    """Compute the score ``name`` of ``logits`` at ``temperature`` (higher = keep).

    Examples
    --------
    >>> import numpy as np
    >>> compute_score("max_logit", np.array([[1.0, 2.0]]), temperature=2.0)
    array([1.])
    """
    return get_score(name)(logits, temperature)


def from_probability_form(score: str, threshold: float) -> float:
    """Convert a threshold written for ``p_max`` or ``sum p log p`` to the routing form.

    Before version 2 of the router file format, ``max_softmax`` was ``p_max`` and ``entropy``
    was the negative entropy ``-H``; today they are ``log(p_max / (1 - p_max))`` and ``-log H``
    (the same order, with resolution where confident inputs live). Other scores are unchanged.

    Examples
    --------
    >>> round(from_probability_form("max_softmax", 0.9), 4)
    2.1972
    >>> round(from_probability_form("entropy", -0.5), 4)
    0.6931
    >>> from_probability_form("max_softmax", 1.0), from_probability_form("margin", 3.0)
    (inf, 3.0)
    """
    t = float(threshold)
    if score == "max_softmax":
        if t >= 1.0:
            return math.inf
        if t <= 0.0:
            return -math.inf
        return math.log(t) - math.log1p(-t)
    if score == "entropy":
        if t >= 0.0:
            return math.inf
        return -math.log(-t)
    return t


def _tolerance(values: NDArray[np.float64], rtol: float) -> NDArray[np.float64]:
    out: NDArray[np.float64] = rtol * np.maximum(1.0, np.abs(values))
    return out


def resolution_blocks(
    sorted_scores: ArrayLike, rtol: float = SCORE_RTOL, max_near_share: float = MAX_NEAR_SHARE
) -> NDArray[np.intp]:
    """Start of each block of scores that no threshold may separate, in an ascending array.

    Between two neighbouring distinct scores the candidate threshold is their midpoint. It is
    allowed (a new block starts) when at most ``floor(max_near_share * n)`` scores lie within
    numerical resolution of it, ``rtol * max(1, |threshold|)`` (:func:`near_threshold`): with
    fewer than ``1 / max_near_share`` scores, none may. So a threshold never sits in a cluster
    of scores that differ by rounding only (confident inputs whose scores saturate, ties):
    which side of it such inputs fall on would depend on the batch they arrive in. Where
    scores are merely dense (a million of them), the share of them near any midpoint stays
    below ``max_near_share`` and every distinct score keeps its own block.

    Examples
    --------
    >>> resolution_blocks([0.0, 1.0, 1.0 + 1e-9, 2.0])
    array([0, 1, 3])
    """
    ss = np.asarray(sorted_scores, dtype=np.float64)
    if ss.ndim != 1 or ss.shape[0] == 0:
        raise InputShapeError(f"Expected a non-empty 1-D array of scores; got shape {ss.shape}.")
    new = np.empty(ss.shape[0], dtype=bool)
    new[0] = True
    mid = 0.5 * (ss[1:] + ss[:-1])
    tol = _tolerance(mid, rtol)
    near = np.searchsorted(ss, mid + tol, side="right") - np.searchsorted(ss, mid - tol, "left")
    allowed = math.floor(max_near_share * ss.shape[0])
    np.logical_and(ss[1:] > ss[:-1], near <= allowed, out=new[1:])
    return np.flatnonzero(new)


def separating_thresholds(
    sorted_scores: ArrayLike, starts: ArrayLike | None = None, rtol: float = SCORE_RTOL
) -> NDArray[np.float64]:
    """For each block of tied scores, the threshold that keeps it and every block above it.

    The midpoint between the block's smallest score and the largest score of the block below
    (``-inf`` for the lowest block): it keeps exactly the same inputs as a threshold at the
    block's smallest score, and sits as far as the data allow from every score, so rounding
    noise in a new input's score cannot move it across (see :func:`near_threshold`).

    Parameters
    ----------
    sorted_scores : array-like of shape (n,)
        Scores sorted ascending.
    starts : array-like of int, optional
        Block starts (default: :func:`resolution_blocks` of the scores).
    rtol : float, default=SCORE_RTOL

    Examples
    --------
    >>> separating_thresholds([0.0, 1.0, 1.0 + 1e-9, 2.0])
    array([-inf,  0.5,  1.5])
    """
    ss = np.asarray(sorted_scores, dtype=np.float64)
    st = resolution_blocks(ss, rtol) if starts is None else np.asarray(starts, dtype=np.intp)
    out = np.empty(st.shape[0], dtype=np.float64)
    out[0] = -np.inf if st[0] == 0 else 0.5 * (ss[st[0]] + ss[st[0] - 1])
    inner = st[1:]
    out[1:] = 0.5 * (ss[inner] + ss[inner - 1])
    return out


def separating_threshold_of(
    scores: ArrayLike, values: ArrayLike, rtol: float = SCORE_RTOL
) -> NDArray[np.float64]:
    """For each of ``values`` (scores or candidate thresholds), the separating threshold that
    keeps every score ``>= value`` together with the rest of its tie block.

    Turns a threshold picked on the scores themselves (a quantile, a grid point) into one that
    routes the calibration inputs the same way but sits midway between two blocks of
    ``scores``; values below every score give ``-inf``, values above every score ``+inf``.

    Examples
    --------
    >>> separating_threshold_of([0.0, 1.0, 2.0], [1.0, 0.0, 2.0, 5.0])
    array([ 0.5, -inf,  1.5,  inf])
    """
    ss = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))
    starts = resolution_blocks(ss, rtol)
    sep = np.append(separating_thresholds(ss, starts, rtol), np.inf)
    v = np.asarray(values, dtype=np.float64)
    # the first block whose largest score is >= value; blocks are contiguous in sorted order
    ends = np.append(starts[1:], ss.shape[0]) - 1
    blk = np.searchsorted(ss[ends], v, side="left")
    out: NDArray[np.float64] = sep[blk]
    return out


def numerical_margin(
    stage_scores: Sequence[ArrayLike], thresholds: Sequence[float] | float
) -> float | None:
    """Distance from each finite threshold to the nearest score of its stage, the smallest.

    The router's numerical margin on the data it was calibrated on: rounding noise smaller
    than this cannot move a calibration input across a threshold. None when every threshold
    is infinite (all inputs on one stage).

    Examples
    --------
    >>> numerical_margin([[0.0, 1.0, 3.0]], [2.0])
    1.0
    >>> numerical_margin([[0.0, 1.0]], [float("inf")]) is None
    True
    """
    ths = [float(thresholds)] if isinstance(thresholds, int | float) else list(thresholds)
    best: float | None = None
    for s, t in zip(stage_scores, ths, strict=False):
        if math.isfinite(float(t)):
            d = float(np.min(np.abs(np.asarray(s, dtype=np.float64) - float(t))))
            best = d if best is None else min(best, d)
    return best


def near_threshold(
    scores: ArrayLike, threshold: float, rtol: float = SCORE_RTOL
) -> NDArray[np.bool_]:
    """True where a score is within numerical resolution of ``threshold``.

    Which side such an input falls on can depend on rounding (the batch it is computed in, the
    tensor encoding): calibration keeps thresholds away from the calibration scores, and the
    share of new inputs this flags measures how robust the routing is.

    Examples
    --------
    >>> near_threshold([1.0, 1.0 + 1e-9, 3.0], 1.0)
    array([ True,  True, False])
    """
    s = np.asarray(scores, dtype=np.float64)
    if not math.isfinite(float(threshold)):
        return np.zeros(s.shape, dtype=bool)
    t = float(threshold)
    out: NDArray[np.bool_] = np.abs(s - t) <= rtol * max(1.0, abs(t))
    return out
