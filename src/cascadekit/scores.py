"""Routing scores computed from a stage's logits.

**One direction everywhere: higher = more confident = keep the input on this stage.** An input
stays at a stage when ``score >= threshold`` and moves on otherwise.

========================  ============================================  =====================
name                      formula (``z`` = logits, ``p = softmax(z/T)``)  note
========================  ============================================  =====================
``energy``                ``T * logsumexp(z / T)``                      EBJR's ``-F(x)`` at T=1
``max_softmax``           ``max_i p_i``                                 "softmax response"
``margin``                ``(z_(1) - z_(2)) / T``                      logit margin
``entropy``               ``sum_i p_i log p_i``                        negative entropy
``max_logit``             ``max_i z_i / T``                            T -> 0 limit of energy
========================  ============================================  =====================

Every score is computed with a max-shift, in float64 for float64 input and float32 otherwise
(half-precision logits are upcast first), so large logits never overflow.

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
>>> sorted(scores.available_scores())
['energy', 'entropy', 'margin', 'max_logit', 'max_softmax']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import as_logits, check_temperature
from .errors import InputShapeError, UnknownNameError

__all__ = [
    "SCORES",
    "ScoreFn",
    "available_scores",
    "compute_score",
    "energy",
    "entropy",
    "get_score",
    "margin",
    "max_logit",
    "max_softmax",
    "other_gate",
    "register_score",
    "specialized_energy",
]

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


def max_softmax(logits: ArrayLike, temperature: float = 1.0) -> FloatArray:
    """Maximum softmax probability ``max_i softmax(logits / T)_i``; higher = keep.

    Examples
    --------
    >>> import numpy as np
    >>> max_softmax(np.array([[2.0, 0.0], [0.0, 0.0]])).round(4)
    array([0.8808, 0.5   ])
    """
    z, t = _prepare(logits, temperature)
    _, _, s = _shifted_exp(_scaled(z, t))
    out: FloatArray = 1.0 / s[:, 0]  # the top class's exp(z_max - m) is 1
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


def entropy(logits: ArrayLike, temperature: float = 1.0) -> FloatArray:
    """Negative entropy ``sum_i p_i log p_i`` of ``softmax(logits / T)``; higher = keep.

    Ranges from ``-log(n_classes)`` (uniform) to 0 (one-hot).

    Examples
    --------
    >>> import numpy as np
    >>> entropy(np.array([[0.0, 0.0], [50.0, 0.0]])).round(4)
    array([-0.6931, -0.    ])
    """
    z, t = _prepare(logits, temperature)
    _, d, s = _shifted_exp(_scaled(z, t))
    logp = d - np.log(s)
    out: FloatArray = np.sum(np.exp(logp) * logp, axis=1)
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
