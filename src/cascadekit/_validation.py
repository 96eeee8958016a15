"""Input checks shared by every module. Each raises a :class:`~cascadekit.errors.CascadeError`
whose message says what was expected, what was got and what to do."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import (
    ClassCountError,
    EmptyInputError,
    InputShapeError,
    LabelError,
    NonFiniteError,
    ParameterError,
    RouterFileError,
    SampleCountError,
    ScoreInputError,
)

FloatArray = NDArray[np.floating[Any]]
IntArray = NDArray[np.integer[Any]]


def float_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """Return the dtype scores are computed in: float64 stays, everything else becomes float32.

    Half precision (and integer) inputs are upcast so that ``exp`` cannot overflow.
    """
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _first_bad(mask: NDArray[np.bool_]) -> int:
    flat = (
        np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
        if mask.ndim > 1
        else (np.flatnonzero(mask))
    )
    return int(flat[0])


def check_finite(x: np.ndarray, name: str) -> None:
    """Raise :class:`NonFiniteError` if ``x`` holds NaN or inf, naming the count and first row."""
    bad = ~np.isfinite(x)
    if bad.any():
        raise NonFiniteError(
            f"{name[0].upper()}{name[1:]} contain {int(bad.sum())} non-finite values "
            f"(NaN or inf), first at row {_first_bad(bad)}. Clean them (or fix the model) "
            "before routing."
        )


#: Absolute tolerance on a row's sum (probabilities) or logsumexp (log-probabilities) in
#: :func:`output_kind`: saved probabilities are often rounded to a few decimals.
NORMALIZED_ATOL = 1e-3

OUTPUT_KINDS = ("logits", "probabilities", "log_probabilities")


def output_kind(x: ArrayLike) -> str:
    """Which kind of classifier outputs a 2-D array holds: logits, probabilities or their logs.

    ``"probabilities"`` when every value is in [0, 1] and every row sums to 1, and
    ``"log_probabilities"`` when every value is <= 0 and every row's logsumexp is 0 (both within
    :data:`NORMALIZED_ATOL`); ``"logits"`` otherwise (raw scores, the default). Every row must
    match, so raw logits are practically never mistaken for either.

    Examples
    --------
    >>> output_kind([[0.2, 0.8], [1.0, 0.0]])
    'probabilities'
    >>> output_kind(np.log([[0.2, 0.8], [0.5, 0.5]]))
    'log_probabilities'
    >>> output_kind([[2.0, -1.0], [0.3, 0.1]])
    'logits'
    """
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] < 2 or not np.issubdtype(a.dtype, np.number):
        return "logits"
    lo, hi = a.min(), a.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        if hi <= 0 and not np.isnan(hi) and not np.isnan(a).any():
            pass  # log(0) = -inf entries: still possibly log-probabilities
        else:
            return "logits"
    a64 = a.astype(np.float64, copy=False)
    if lo >= 0.0 and hi <= 1.0:
        if np.all(np.abs(a64.sum(axis=1) - 1.0) <= NORMALIZED_ATOL):
            return "probabilities"
        return "logits"
    if hi <= NORMALIZED_ATOL:
        m = a64.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(a64 - m).sum(axis=1))
        if np.all(np.abs(lse) <= NORMALIZED_ATOL):
            return "log_probabilities"
    return "logits"


def proba_to_logits(proba: ArrayLike, eps: float = 1e-12) -> NDArray[np.floating[Any]]:
    """``log(clip(p, eps, 1))``: logits whose softmax is ``p`` (rows summing to one).

    Examples
    --------
    >>> proba_to_logits(np.array([[0.5, 0.5, 0.0]])).round(2)
    array([[ -0.69,  -0.69, -27.63]])
    """
    p = np.asarray(proba, dtype=np.float64)
    out: NDArray[np.floating[Any]] = np.log(np.clip(p, eps, 1.0))
    return out


#: How to turn a binary classifier's one number per input into two logit columns; said by every
#: error that refuses a 1-D array of scores.
BINARY_HINT = (
    "A 1-D array is labels (only the last stage may give labels only) or a binary "
    "classifier's one number per input: convert decision_function values d with "
    "cascadekit.binary_logits(d, 'decision') (= np.c_[-d, d] / 2) and predict_proba(X)[:, 1] "
    "values p with cascadekit.binary_logits(p, 'probability') (= np.log(np.c_[1 - p, p]))."
)

BINARY_KINDS = ("decision", "probability")


def binary_logits(values: ArrayLike, kind: str, eps: float = 1e-12) -> FloatArray:
    """Two logit columns from a binary classifier's one number per input.

    ``kind="decision"``: ``d = decision_function(X)`` (positive = class 1) gives
    ``[-d/2, d/2]``, whose softmax is ``[1 - sigmoid(d), sigmoid(d)]`` (the logistic link), whose
    margin is ``|d|`` and which is symmetric in the two classes. ``kind="probability"``:
    ``p = predict_proba(X)[:, 1]`` gives ``log([1 - p, p])`` (clipped at ``eps``), whose softmax
    is ``[1 - p, p]``. There is no rule that could tell the two apart (a decision function may
    lie in [0, 1] too), so ``kind`` is required.

    Examples
    --------
    >>> binary_logits(np.array([2.0, -1.0]), "decision")
    array([[-1. ,  1. ],
           [ 0.5, -0.5]])
    >>> binary_logits(np.array([0.5, 0.9]), "probability").round(3)
    array([[-0.693, -0.693],
           [-2.303, -0.105]])
    >>> binary_logits(np.array([1.5]), "probability")
    Traceback (most recent call last):
    ...
    cascadekit.errors.ParameterError: Expected probabilities of class 1 in [0, 1]; got values ...
    """
    if kind not in BINARY_KINDS:
        raise ParameterError(
            f"Expected kind 'decision' (decision_function values) or 'probability' "
            f"(predict_proba(X)[:, 1]); got {kind!r}."
        )
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise InputShapeError(
            f"Expected one number per input, shape (n_samples,); got shape {arr.shape} and dtype "
            f"{arr.dtype}. Pass decision_function(X) or predict_proba(X)[:, 1] of a binary "
            "classifier."
        )
    a = arr.astype(np.float64)
    check_finite(a, f"binary {kind} values")
    if kind == "decision":
        return np.stack([-a / 2.0, a / 2.0], axis=1)
    if a.size and (a.min() < 0.0 or a.max() > 1.0):
        raise ParameterError(
            f"Expected probabilities of class 1 in [0, 1]; got values from {a.min():.4g} to "
            f"{a.max():.4g}. These look like decision_function values: use kind='decision'."
        )
    return proba_to_logits(np.stack([1.0 - a, a], axis=1), eps)


def as_stage_output(x: ArrayLike, stage: str, *, last: bool, score: Any = None) -> np.ndarray:
    """Validate one stage's saved outputs: logits (n, C), or labels (n,) for the last stage.

    ``stage`` names the stage in messages (``"stage 'student'"``). A 1-D array of non-integer
    numbers is refused with :data:`BINARY_HINT` rather than taken for labels. 2-D outputs go
    through :func:`as_outputs` (probabilities detected and converted; ``score``, the stage's
    routing score, refused when it is energy on normalized outputs; ignored for the last stage).
    """
    arr = np.asarray(x)
    if last and arr.ndim == 1:
        if np.issubdtype(arr.dtype, np.floating) and not (
            np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
        ):
            raise InputShapeError(
                f"Expected the last {stage} to give logits (n_samples, n_classes) or integer "
                f"labels (n_samples,); got shape {arr.shape} of non-integer numbers. " + BINARY_HINT
            )
        return as_labels(arr, name=f"labels of the last {stage}")
    return as_outputs(
        arr, f"logits of {stage}", score=None if last else score, what=f"the outputs of {stage}"
    )


def as_logits(x: ArrayLike, name: str = "logits", *, min_classes: int = 2) -> FloatArray:
    """Validate logits of shape ``(n_samples, n_classes)`` and return them as a float array.

    float64 input stays float64; any other numeric dtype is converted to float32. Nothing is
    detected or converted here: this runs on every batch a model serves, and a decision that
    depended on which rows share a batch would make answers depend on it too (see
    :func:`as_outputs` for whole arrays of saved outputs).
    """
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise InputShapeError(
            f"Expected {name} to be a numeric array of shape (n_samples, n_classes); got dtype "
            f"{arr.dtype}. Pass the model's raw logits as a float array."
        )
    if arr.ndim != 2:
        hint = " " + BINARY_HINT if arr.ndim == 1 else ""
        raise InputShapeError(
            f"Expected {name} of shape (n_samples, n_classes); got shape {arr.shape}.{hint}"
        )
    if arr.shape[0] == 0:
        raise EmptyInputError(
            f"Expected {name} with at least one sample; got shape {arr.shape}. "
            "Pass a non-empty array."
        )
    if arr.shape[1] < min_classes:
        raise InputShapeError(
            f"Expected {name} with at least {min_classes} classes (columns); got shape "
            f"{arr.shape}. Pass one column per class."
        )
    out = arr.astype(float_dtype(arr.dtype), copy=False)
    check_finite(out, name)
    return out


#: Fewest rows :func:`as_outputs` needs to tell probabilities from logits: a handful of rows
#: can sum to one by chance.
MIN_ROWS_TO_DETECT = 10

#: Scores that are meaningless on normalized outputs (their logsumexp is constant).
LOGSUMEXP_SCORES = ("energy", "specialized_energy")


def check_score_suits(kind: str, score: Any, name: str = "these outputs") -> None:
    """Raise :class:`ScoreInputError` for energy on probabilities or log-probabilities.

    Examples
    --------
    >>> check_score_suits("logits", "energy")
    >>> check_score_suits("log_probabilities", "energy")
    Traceback (most recent call last):
    ...
    cascadekit.errors.ScoreInputError: The energy needs raw logits; these outputs are ...
    """
    if kind == "logits" or score not in LOGSUMEXP_SCORES:
        return
    raise ScoreInputError(
        f"The {str(score).replace('_', ' ')} needs raw logits; {name} are "
        f"{kind.replace('_', '-')} (every row sums to one), on which logsumexp is the same for "
        "every input, so routing by it would follow rounding noise. Pass the model's raw "
        "logits (e.g. a scikit-learn decision_function, or the layer before the softmax), or "
        "choose another score: max_softmax, margin or entropy."
    )


def as_outputs(
    x: ArrayLike,
    name: str = "logits",
    *,
    score: Any = None,
    what: str | None = None,
    min_classes: int = 2,
) -> FloatArray:
    """Validate a whole array of saved classifier outputs, whatever kind they are.

    Like :func:`as_logits`, and with at least :data:`MIN_ROWS_TO_DETECT` rows the kind is
    detected (:func:`output_kind`): probabilities are converted to their logs
    (:func:`proba_to_logits`), so that a softmax gives them back rather than being applied on
    top of them; log-probabilities are logits already (with ``log 0`` floored the same way).
    Energy is refused on both (:func:`check_score_suits`; ``what`` names the outputs there,
    default ``name``).

    Examples
    --------
    >>> p = np.full((10, 2), 0.5)
    >>> as_outputs(p).round(3)[0]
    array([-0.693, -0.693])
    >>> as_outputs(p, score="energy")
    Traceback (most recent call last):
    ...
    cascadekit.errors.ScoreInputError: The energy needs raw logits; logits are probabilities ...
    """
    arr = np.asarray(x)
    kind = output_kind(arr) if arr.ndim == 2 and arr.shape[0] >= MIN_ROWS_TO_DETECT else "logits"
    check_score_suits(kind, score, name if what is None else what)
    if kind == "probabilities" or (kind == "log_probabilities" and np.isneginf(arr).any()):
        src = arr if kind == "probabilities" else np.exp(arr.astype(np.float64))
        arr = proba_to_logits(src)
    return as_logits(arr, name, min_classes=min_classes)


def as_scores(x: ArrayLike, name: str = "scores") -> FloatArray:
    """Validate a 1-D array of finite routing scores (higher = more confident)."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InputShapeError(
            f"Expected {name} of shape (n_samples,); got shape {arr.shape}. "
            "Compute one score per sample, e.g. with cascadekit.scores.energy(logits)."
        )
    if arr.shape[0] == 0:
        raise EmptyInputError(f"Expected {name} with at least one sample; got an empty array.")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputShapeError(f"Expected {name} to be numeric; got dtype {arr.dtype}.")
    out = arr.astype(np.float64, copy=False)
    check_finite(out, name)
    return out


def as_labels(
    y: ArrayLike, n_samples: int | None = None, n_classes: int | None = None, name: str = "labels"
) -> IntArray:
    """Validate integer class labels of shape ``(n_samples,)`` in ``[0, n_classes)``."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise InputShapeError(
            f"Expected {name} of shape (n_samples,); got shape {arr.shape}. "
            "Pass one integer class index per sample."
        )
    if arr.shape[0] == 0:
        raise EmptyInputError(f"Expected {name} with at least one sample; got an empty array.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise LabelError(
                f"Expected integer {name}; got non-integer floats (dtype {arr.dtype}). "
                "Pass class indices 0..n_classes-1."
            )
        arr = arr.astype(np.int64)
    elif np.issubdtype(arr.dtype, np.bool_) or not np.issubdtype(arr.dtype, np.integer):
        raise LabelError(
            f"Expected integer {name}; got dtype {arr.dtype}. Pass class indices 0..n_classes-1."
        )
    arr = arr.astype(np.int64, copy=False)
    if n_samples is not None and arr.shape[0] != n_samples:
        raise SampleCountError(
            f"Expected {n_samples} {name} (one per sample); got {arr.shape[0]}. "
            "Check that labels and logits come from the same data in the same order."
        )
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or (n_classes is not None and hi >= n_classes):
        upper = f"{n_classes - 1}" if n_classes is not None else "n_classes-1"
        raise LabelError(
            f"Expected {name} in [0, {upper}]; got values from {lo} to {hi}. "
            "Check the label encoding matches the models' class order."
        )
    return arr


def encode_labels(labels: ArrayLike, classes: ArrayLike | None, what: str = "labels") -> np.ndarray:
    """Class indices of ``labels`` given the class names in class order.

    Text labels are looked up in ``classes``; integer labels are too when every one of them is
    a class name (``3`` for ``classes=["3", "5"]`` or ``[3, 5]``), and are otherwise class
    indices already. Without ``classes`` the labels are returned unchanged (text is refused).

    Examples
    --------
    >>> encode_labels(np.array(["dog", "cat", "dog"]), ["cat", "dog"])
    array([1, 0, 1])
    >>> encode_labels(np.array([0, 1]), None)
    array([0, 1])
    >>> encode_labels(np.array(["cat"]), None)
    Traceback (most recent call last):
    ...
    cascadekit.errors.LabelError: Expected labels as class indices 0..C-1; got text ...
    """
    arr = np.asarray(labels)
    is_text = arr.dtype.kind in "USO"
    if classes is None:
        if is_text:
            raise LabelError(
                f"Expected {what} as class indices 0..C-1; got text (first {arr.flat[0]!r}). "
                "Pass the class names in the models' column order with classes=[...], or "
                "encode the labels as 0..C-1."
            )
        return arr
    names = [str(c) for c in np.asarray(classes).tolist()]
    pos = {c: j for j, c in enumerate(names)}
    text = [str(v) for v in arr.reshape(-1).tolist()]
    if not is_text and not all(t in pos for t in text):
        return arr  # integers that are not all class names: class indices already
    unknown = sorted({t for t in text if t not in pos})
    if unknown:
        raise LabelError(
            f"Expected {what} among the classes {names}; got {len(unknown)} other value(s), "
            f"e.g. {unknown[:3]}. Add them to classes=[...] or fix the labels."
        )
    return np.array([pos[t] for t in text], dtype=np.int64).reshape(arr.shape)


def check_same_samples(named: Sequence[tuple[str, int]]) -> None:
    """Raise :class:`SampleCountError` unless every ``(name, n_samples)`` pair agrees."""
    if not named:
        return
    first_name, first_n = named[0]
    for nm, n in named[1:]:
        if n != first_n:
            raise SampleCountError(
                f"Expected every stage and the labels to cover the same samples; {first_name} "
                f"has {first_n} but {nm} has {n}. Make sure all arrays come from the same inputs "
                "in the same order."
            )


def check_same_classes(named: Sequence[tuple[str, int]], hint: str = "") -> None:
    """Raise :class:`ClassCountError` unless every ``(name, n_classes)`` pair agrees."""
    if not named:
        return
    first_name, first_c = named[0]
    for nm, c in named[1:]:
        if c != first_c:
            raise ClassCountError(
                f"{first_name} and {nm} disagree on the number of classes: {first_c} vs {c}. "
                + (hint or "Map the student's classes with class_map=... or check the models.")
            )


def check_costs(costs: ArrayLike | None, n_stages: int) -> FloatArray:
    """Validate per-stage costs: ``n_stages`` finite non-negative numbers; defaults to 1 each."""
    if costs is None:
        return np.ones(n_stages, dtype=np.float64)
    arr = np.asarray(costs, dtype=np.float64).reshape(-1)
    if arr.shape[0] != n_stages:
        raise ParameterError(
            f"Expected one cost per stage ({n_stages}); got {arr.shape[0]} ({arr.tolist()}). "
            "Pass e.g. costs=[1, 7] for a student seven times cheaper than its teacher."
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ParameterError(
            f"Expected finite, non-negative costs; got {arr.tolist()}. Costs are FLOPs, "
            "seconds or any unit per input, never negative."
        )
    if arr[-1] <= 0:
        raise ParameterError(
            f"Expected the last stage to have a positive cost (costs are reported relative to "
            f"it); got {arr.tolist()}."
        )
    return arr


def check_open_unit(name: str, value: float) -> float:
    """Require ``0 < value < 1`` (epsilon, delta, shares)."""
    v = float(value)
    if not (0.0 < v < 1.0) or not np.isfinite(v):
        raise ParameterError(
            f"Expected {name} strictly between 0 and 1; got {value!r}. For example {name}=0.1."
        )
    return v


def check_unit(name: str, value: float) -> float:
    """Require ``0 <= value <= 1``."""
    v = float(value)
    if not (0.0 <= v <= 1.0) or not np.isfinite(v):
        raise ParameterError(f"Expected {name} in [0, 1]; got {value!r}.")
    return v


def check_temperature(value: float) -> float:
    """Require a finite, positive temperature."""
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ParameterError(
            f"Expected a positive, finite temperature; got {value!r}. T=1 is the plain score."
        )
    return v


def as_correct(x: ArrayLike, name: str) -> NDArray[np.bool_]:
    """Validate a 1-D array of correctness indicators (booleans or 0/1)."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InputShapeError(
            f"Expected {name} of shape (n_samples,) with 1 where the stage is right; got shape "
            f"{arr.shape}. Compute it as predictions == labels."
        )
    if arr.shape[0] == 0:
        raise EmptyInputError(f"Expected {name} with at least one sample; got an empty array.")
    if arr.dtype == np.bool_:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise LabelError(
            f"Expected {name} to be booleans or 0/1; got dtype {arr.dtype}. Compute it as "
            "predictions == labels."
        )
    if np.issubdtype(arr.dtype, np.floating):
        check_finite(arr, name)
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        raise LabelError(
            f"Expected {name} to be booleans or 0/1 (1 = right); got {int(bad.sum())} other "
            f"values, first {arr[bad][0].item()!r} at row {int(np.flatnonzero(bad)[0])}. "
            "Compute it as predictions == labels."
        )
    out: NDArray[np.bool_] = arr == 1
    return out


def encode_threshold(t: float) -> float | str | None:
    """JSON form of a threshold: +inf -> None, -inf -> "-inf", else the float."""
    if math.isinf(t):
        return None if t > 0 else "-inf"
    return float(t)


def decode_threshold(v: Any) -> float:
    """Inverse of :func:`encode_threshold`."""
    if v is None or v == "inf":
        return math.inf
    if v == "-inf":
        return -math.inf
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise RouterFileError(
            f'Expected a threshold to be a number, null (+inf) or "-inf"; got {v!r}.'
        )
    return float(v)
