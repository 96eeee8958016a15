"""What the curve modules share: value arrays, the accuracy tolerance, array aliases."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import (
    as_scores,
    check_same_samples,
)
from ..errors import InputShapeError

__all__ = [
    "ACCURACY_TOL",
    "BoolArray",
    "Float64Array",
    "IntArray",
    "accuracy_tol",
    "as_value_pair",
    "as_values",
    "direction_sign",
]


Float64Array = NDArray[np.floating[Any]]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

#: Tolerance of accuracy comparisons (relative to ``max(1, |target|)``).
ACCURACY_TOL = 1e-12


def accuracy_tol(target: float) -> float:
    """Tolerance of a comparison with accuracy ``target``: ``ACCURACY_TOL * max(1, |target|)``."""
    return ACCURACY_TOL * max(1.0, abs(target))


def as_values(x: ArrayLike, name: str) -> Float64Array:
    """Validate a 1-D array of per-sample values (bool, int or float; finite)."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InputShapeError(
            f"Expected {name} of shape (n_samples,): one value per sample, e.g. "
            f"correctness(logits, labels); got shape {arr.shape}."
        )
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float64)
    elif not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputShapeError(
            f"Expected {name} to be numeric or boolean; got dtype {arr.dtype}. Pass per-sample "
            "correctness (bool) or a per-sample quality value (float)."
        )
    out: Float64Array = as_scores(arr, name)
    return out


def as_value_pair(
    value_student: ArrayLike, value_teacher: ArrayLike
) -> tuple[Float64Array, Float64Array]:
    """Both models' per-sample values, validated and of the same length."""
    vs = as_values(value_student, "value_student")
    vt = as_values(value_teacher, "value_teacher")
    check_same_samples([("value_student", vs.shape[0]), ("value_teacher", vt.shape[0])])
    return vs, vt


def direction_sign(higher_is_better: bool) -> float:
    """``+1`` when higher values are better, ``-1`` for losses."""
    return 1.0 if higher_is_better else -1.0
