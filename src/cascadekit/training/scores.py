"""Routing scores for students built for the cascade (numpy only; higher = keep, as always).

==================  =====================================================  ===================
name                score (``z`` = a stage's outputs)                      outputs
==================  =====================================================  ===================
``p_norm_softmax``  log-odds of ``p_max`` of ``softmax(u / T)``,            ``(n, K)`` logits
                    ``u = (z - mean z) / ||z - mean z||_p`` (p = 2 unless
                    the router file says otherwise)
``deferral``        ``log p_max - c``: the student's confidence against    ``(n, K + 1)``: K
                    ``c = log P(teacher right)`` estimated by a deferral   logits + ``c``
                    head (:func:`cascadekit.training.train_deferral`)
``agreement``       the committee's last column: members voting for the    ``(n, K + 1)``: K
                    ensemble's class + the ensemble's probability of it    log-probabilities
                    (:class:`cascadekit.training.Committee`)               + agreement
==================  =====================================================  ===================

**p-NormSoftmax** (Cattelan & Silva): centring and dividing the logits by their p-norm changes
how inputs are *ordered* by max-softmax (a temperature alone never does), so it can reorder
predictions; ``p`` and ``T`` are tuned on held-out data with :func:`tune_p_norm`.

**Routing columns.** ``deferral`` and ``agreement`` read a signal the model emits in one extra,
last column, so that a cascade stage carries its own routing signal through
:meth:`~cascadekit.Cascade.predict`, router files and the server. Each has
``routing_columns = 1``: a :class:`~cascadekit.Stage` routed by it takes its predictions and
probabilities from the other columns, which are the classes.

Examples
--------
>>> import numpy as np
>>> from cascadekit.training.scores import deferral, p_norm_softmax
>>> z = np.array([[3.0, 0.0, -1.0], [1.0, 0.9, 0.0]])
>>> p_norm_softmax(z, p=2.0).round(3)
array([ 0.481, -0.145])
>>> out = np.column_stack([z, np.log([0.5, 0.99])])  # + log P(teacher right)
>>> deferral(out).round(3)   # confident student, unsure teacher: keep; the reverse: defer
array([ 0.627, -0.811])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from .._validation import as_logits, check_same_samples, check_temperature
from ..errors import ClassCountError, InputShapeError, ParameterError, UnknownNameError
from ..scores import SCORES, max_softmax

__all__ = [
    "DEFAULT_P_VALUES",
    "TRAINING_SCORES",
    "RoutingScore",
    "agreement",
    "committee_agreement",
    "deferral",
    "p_norm_softmax",
    "resolve_score",
    "routing_columns",
    "tune_p_norm",
]

FloatArray = NDArray[np.float64]

#: The p values :func:`tune_p_norm` tries by default (0 = no normalisation: plain max-softmax).
DEFAULT_P_VALUES: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
# The temperatures tune_p_norm tries by default. Not selection.TEMPERATURES (0.25 to 8, for raw
# logits): p-NormSoftmax divides the logits by their norm first, so its useful temperatures are
# far lower (on the digits pair's select split it picks T = 0.05, gap captured 0.510;
# restricted to the shared grid, T = 0.25 and 0.473).
_DEFAULT_TEMPERATURES: tuple[float, ...] = tuple(float(t) for t in np.geomspace(0.05, 4.0, 16))


def p_norm_softmax(logits: ArrayLike, temperature: float = 1.0, p: float = 2.0) -> FloatArray:
    """p-NormSoftmax: max-softmax (as log-odds) of centred logits divided by their p-norm.

    ``u = (z - mean_j z_j) / ||z - mean_j z_j||_p``, then :func:`cascadekit.scores.max_softmax`
    of ``u`` at ``temperature``. Higher = keep. ``p = 0`` skips the normalisation (plain
    max-softmax of the centred logits, the same order as max-softmax). The normalisation is a
    positive per-row scale, so the predicted class never changes; only the order does.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
    temperature : float, default=1.0
        Applied after the normalisation; tune it with ``p`` (:func:`tune_p_norm`).
    p : float, default=2.0
        Norm order, ``p >= 1``, or 0 for none.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[4.0, 0.0, 0.0], [8.0, 4.0, 4.0]])
    >>> p_norm_softmax(z, p=0.0) - p_norm_softmax(z, p=0.0)[0]   # same as max-softmax
    array([0., 0.])
    >>> p_norm_softmax(z, p=2.0, temperature=0.1).round(2)
    array([11.55, 11.55])
    """
    z = as_logits(logits, "logits").astype(np.float64)
    pv = float(p)
    if not (pv == 0.0 or (math.isfinite(pv) and pv >= 1.0)):
        raise ParameterError(f"Expected p = 0 (no normalisation) or p >= 1; got {p!r}.")
    u = z - z.mean(axis=1, keepdims=True)
    if pv > 0.0:
        norm = np.linalg.norm(u, ord=pv, axis=1, keepdims=True)
        u = u / np.where(norm > 0.0, norm, 1.0)
    out: FloatArray = np.asarray(max_softmax(u, temperature), dtype=np.float64)
    return out


def _split_routing_column(outputs: ArrayLike, what: str) -> tuple[FloatArray, FloatArray]:
    z = as_logits(outputs, f"{what} outputs", min_classes=3).astype(np.float64)
    return z[:, :-1], z[:, -1]


def deferral(outputs: ArrayLike, temperature: float = 1.0) -> FloatArray:
    """Score of a student with a deferral head: ``log p_max - log P(teacher right)``.

    ``outputs`` are those of :class:`cascadekit.training.DeferralStudent`: the student's ``K``
    class logits, then ``log P(teacher right | x)`` as its deferral head estimates it (from the
    cross-entropy surrogate of Mozannar & Sontag or the one-vs-all surrogate of Verma &
    Nalisnick). ``p_max`` is the student's softmax at ``temperature``. Higher = the student is
    more likely right than the teacher = keep; a threshold of 0 is the Bayes rule without costs.

    Examples
    --------
    >>> import numpy as np
    >>> deferral(np.array([[2.0, 0.0, np.log(0.5)]])).round(4)   # log 0.8808 - log 0.5
    array([0.5662])
    """
    z, c = _split_routing_column(outputs, "deferral student")
    t = check_temperature(temperature)
    log_pmax = z.max(axis=1) / t - logsumexp(z / t, axis=1)
    out: FloatArray = log_pmax - c
    return out


deferral.routing_columns = 1  # type: ignore[attr-defined]


def agreement(outputs: ArrayLike, temperature: float = 1.0) -> FloatArray:
    """Score of a committee: its last column (see :func:`committee_agreement`). Higher = keep.

    The temperature is ignored (the column is a vote count plus a probability).

    Examples
    --------
    >>> import numpy as np
    >>> agreement(np.array([[-0.1, -2.4, 2.9]]))
    array([2.9])
    """
    check_temperature(temperature)
    _, col = _split_routing_column(outputs, "committee")
    return col


agreement.routing_columns = 1  # type: ignore[attr-defined]


def committee_agreement(member_logits: Sequence[ArrayLike]) -> tuple[FloatArray, FloatArray]:
    """The committee's prediction and agreement from its members' logits (saved or live).

    The ensemble's log-probabilities are the log of the members' mean softmax; its class is
    their argmax. The agreement is the number of members whose own argmax is that class plus
    the ensemble's probability of it (in (0, 1], a tie-break within a vote count), so it orders
    inputs by votes first, then by ensemble confidence. For two members the vote count is
    ``1 +`` the ``agree`` column of :func:`cascadekit.policies.committee_features`.

    Returns
    -------
    log_probs : ndarray of shape (n_samples, n_classes)
    agreement : ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> a, b = np.array([[3.0, 0.0], [3.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 2.0]])
    >>> _, agree = committee_agreement([a, b])
    >>> agree.round(3)
    array([2.917, 1.536])
    """
    if len(member_logits) < 2:
        raise ParameterError(
            f"Expected the logits of at least 2 committee members; got {len(member_logits)}."
        )
    zs = [as_logits(z, f"logits of committee member {i}") for i, z in enumerate(member_logits)]
    check_same_samples([(f"committee member {i}", z.shape[0]) for i, z in enumerate(zs)])
    widths = {z.shape[1] for z in zs}
    if len(widths) != 1:
        raise ClassCountError(
            f"Expected committee members with the same classes; got {sorted(widths)} columns. "
            "Train every member on the same label set."
        )
    logp = [
        z.astype(np.float64) - logsumexp(z.astype(np.float64), axis=1, keepdims=True) for z in zs
    ]
    ens = logsumexp(np.stack(logp), axis=0) - math.log(len(zs))
    pred = ens.argmax(axis=1)
    votes = np.sum([lp.argmax(axis=1) == pred for lp in logp], axis=0).astype(np.float64)
    rows = np.arange(pred.shape[0])
    agree: FloatArray = votes + np.exp(ens[rows, pred])
    return ens, agree


class RoutingScore:
    """One of the scores here by name, with its keyword parameters bound.

    What a router file's ``score`` and ``score_params`` turn into (see :func:`resolve_score`):
    a callable ``(outputs, temperature) -> scores`` that a :class:`~cascadekit.Stage` routes by,
    whose ``str()`` is its name and parameters and which carries the score's
    ``routing_columns``.

    Examples
    --------
    >>> import numpy as np
    >>> s = RoutingScore("p_norm_softmax", {"p": 3.0})
    >>> str(s), s(np.array([[2.0, 0.0]])).round(3).tolist()
    ('p_norm_softmax(p=3.0)', [1.587])
    """

    def __init__(self, name: str, params: Mapping[str, Any] | None = None) -> None:
        if name not in TRAINING_SCORES:
            raise UnknownNameError(
                f"Unknown score {name!r}; expected one of {', '.join(TRAINING_SCORES)}."
            )
        self.name = str(name)
        self.params = _check_params(self.name, params)
        self._fn = TRAINING_SCORES[self.name]
        self.routing_columns = int(getattr(self._fn, "routing_columns", 0))

    def __call__(self, logits: ArrayLike, temperature: float = 1.0) -> FloatArray:
        out: FloatArray = np.asarray(self._fn(logits, temperature, **self.params), dtype=np.float64)
        return out

    def __str__(self) -> str:
        if not self.params:
            return self.name
        inner = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{self.name}({inner})"

    __repr__ = __str__


#: The scores of this module by name (router files name them; they are not in
#: :data:`cascadekit.scores.SCORES`, whose scores apply to any logits).
TRAINING_SCORES: dict[str, Any] = {
    "p_norm_softmax": p_norm_softmax,
    "deferral": deferral,
    "agreement": agreement,
}
#: Parameters each score accepts in a router file's ``score_params``.
_SCORE_PARAMS: dict[str, tuple[str, ...]] = {"p_norm_softmax": ("p",)}


def _check_params(name: str, params: Mapping[str, Any] | None) -> dict[str, float]:
    if not params:
        return {}
    if not isinstance(params, Mapping):
        raise ParameterError(
            f"Expected score_params to be an object of numbers; got {type(params).__name__}."
        )
    allowed = _SCORE_PARAMS.get(name, ())
    if not allowed:
        raise UnknownNameError(
            f"Score {name!r} takes no parameters; got score_params {dict(params)!r}. Remove "
            "them, or use a score that takes them (p_norm_softmax: p)."
        )
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise UnknownNameError(
            f"Score {name!r} takes parameters {list(allowed)}; got {unknown}. Fix score_params."
        )
    out = {}
    for k, v in params.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ParameterError(f"Expected score_params[{k!r}] to be a number; got {v!r}.")
        out[str(k)] = float(v)
    return out


def resolve_score(name: str, params: Mapping[str, Any] | None = None) -> str | RoutingScore:
    """The score a stage routes by, from a router file's ``score`` and ``score_params``.

    The scores of :mod:`cascadekit.scores` stay names; those of this module become a
    :class:`RoutingScore`.

    Raises
    ------
    UnknownNameError
        An unknown score, or a parameter the score does not take.

    Examples
    --------
    >>> resolve_score("margin")
    'margin'
    >>> resolve_score("p_norm_softmax", {"p": 4})
    p_norm_softmax(p=4.0)
    >>> resolve_score("margin", {"p": 4})
    Traceback (most recent call last):
    ...
    cascadekit.errors.UnknownNameError: Score 'margin' takes no parameters...
    """
    if name in TRAINING_SCORES:
        return RoutingScore(name, params)
    if name not in SCORES:
        raise UnknownNameError(
            f"Unknown score {name!r}; expected one of {', '.join([*SCORES, *TRAINING_SCORES])}."
        )
    _check_params(name, params)
    return name


def routing_columns(score: str | Any) -> int:
    """Trailing output columns a score reads as a routing signal instead of a class (0 or 1).

    Examples
    --------
    >>> routing_columns("deferral"), routing_columns("max_softmax")
    (1, 0)
    """
    fn = resolve_score(score) if isinstance(score, str) else score
    return int(getattr(fn, "routing_columns", 0))


def tune_p_norm(
    logits: ArrayLike,
    labels: ArrayLike,
    teacher_correct: ArrayLike | None = None,
    *,
    p_values: Sequence[float] = DEFAULT_P_VALUES,
    temperatures: Sequence[float] = _DEFAULT_TEMPERATURES,
) -> tuple[float, float, float]:
    """Choose ``p`` and ``T`` of :func:`p_norm_softmax` on held-out data (never the test set).

    With ``teacher_correct`` (the teacher's correctness on the same inputs) the criterion is
    the share of the random-to-oracle gap the cascade captures
    (:func:`cascadekit.selection.criterion_value`, ``"gap_captured"``); without it, the area
    under the ROC curve of the score for the student's own correctness (selective
    classification). The default temperatures (0.05 to 4) are lower than
    :data:`cascadekit.selection.TEMPERATURES`: the logits are divided by their norm first.

    Returns
    -------
    (p, temperature, criterion)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(300, 4)) * 3
    >>> y = rng.integers(0, 4, 300)
    >>> p, t, crit = tune_p_norm(z, y, p_values=(0.0, 2.0), temperatures=(0.5, 1.0))
    >>> p in (0.0, 2.0) and t in (0.5, 1.0) and 0.0 <= crit <= 1.0
    True
    """
    from ..selection import criterion_value

    z = as_logits(logits, "logits")
    y = np.asarray(labels)
    if y.shape != (z.shape[0],):
        raise InputShapeError(
            f"Expected one label per row of logits ({z.shape[0]}); got labels of shape {y.shape}."
        )
    cs = z.argmax(axis=1) == y
    ct = None if teacher_correct is None else np.asarray(teacher_correct, dtype=bool)
    if ct is not None and ct.shape != cs.shape:
        raise InputShapeError(
            f"Expected teacher_correct of shape {cs.shape}; got {ct.shape}. Give the teacher's "
            "correctness on the same inputs."
        )
    best = (float(p_values[0]), float(temperatures[0]), -math.inf)
    for p in p_values:
        for t in temperatures if float(p) > 0.0 else (1.0,):
            s = p_norm_softmax(z, float(t), float(p))
            if ct is not None:
                crit = criterion_value(s, cs, ct, criterion="gap_captured")
            else:
                crit = _auroc(s, cs)
            if crit > best[2]:
                best = (float(p), float(t), float(crit))
    return best


def _auroc(scores: FloatArray, positive: NDArray[np.bool_]) -> float:
    """Area under the ROC curve of ``scores`` for ``positive`` (ties count one half)."""
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = positive.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
