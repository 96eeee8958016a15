"""Box operations and non-maximum suppression in plain numpy (no torchvision).

Boxes are ``(x1, y1, x2, y2)`` in pixels, ``x2 >= x1`` and ``y2 >= y1`` (the "xyxy" format of
torchvision and of the detection output format of :mod:`cascadekit.detection.energy`).

* :func:`box_area`, :func:`box_iou` -- areas and the pairwise IoU matrix.
* :func:`nms` -- greedy NMS: keep the highest-scoring box, drop every remaining box whose IoU
  with it is **greater than** ``iou_threshold``, repeat (torchvision's rule). Equal scores are
  taken in index order, so the result is deterministic.
* :func:`batched_nms` -- the same, separately per class label.

Examples
--------
>>> import numpy as np
>>> from cascadekit.detection.nms import nms, box_iou
>>> boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=float)
>>> box_iou(boxes[:1], boxes).round(3)
array([[1.   , 0.681, 0.   ]])
>>> nms(boxes, np.array([0.9, 0.8, 0.7]), iou_threshold=0.5)
array([0, 2])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputShapeError, NonFiniteError, ParameterError, SampleCountError

__all__ = ["as_boxes", "batched_nms", "box_area", "box_iou", "nms"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


def as_boxes(boxes: ArrayLike, name: str = "boxes") -> FloatArray:
    """Validate boxes of shape ``(k, 4)`` in ``(x1, y1, x2, y2)`` order, as float64.

    Examples
    --------
    >>> as_boxes([[0, 0, 2, 3]])
    array([[0., 0., 2., 3.]])
    >>> as_boxes([[0, 0, 2]])
    Traceback (most recent call last):
    ...
    cascadekit.errors.InputShapeError: Expected boxes of shape (k, 4) ...
    """
    arr = np.asarray(boxes)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise InputShapeError(
            f"Expected {name} to be a numeric array of shape (k, 4); got dtype {arr.dtype}."
        )
    if arr.ndim == 1 and arr.shape[0] == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputShapeError(
            f"Expected {name} of shape (k, 4) as (x1, y1, x2, y2); got shape {arr.shape}. "
            "Use an array of shape (0, 4) for an image without boxes."
        )
    out = arr.astype(np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise NonFiniteError(
            f"{name[0].upper()}{name[1:]} contain {int(bad.sum())} non-finite values (NaN or "
            f"inf), first in box {row}. Drop or fix those boxes."
        )
    if np.any(out[:, 2] < out[:, 0]) or np.any(out[:, 3] < out[:, 1]):
        row = int(np.flatnonzero((out[:, 2] < out[:, 0]) | (out[:, 3] < out[:, 1]))[0])
        raise InputShapeError(
            f"Expected {name} as (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1; box {row} is "
            f"{out[row].tolist()}. Convert (x, y, w, h) or (cx, cy, w, h) boxes first."
        )
    return out


def box_area(boxes: ArrayLike) -> FloatArray:
    """Area of each box.

    Examples
    --------
    >>> box_area([[0, 0, 2, 3], [1, 1, 1, 5]])
    array([6., 0.])
    """
    b = as_boxes(boxes)
    out: FloatArray = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return out


def box_iou(boxes1: ArrayLike, boxes2: ArrayLike) -> FloatArray:
    """Pairwise intersection over union, shape ``(len(boxes1), len(boxes2))``.

    Two empty (zero-area) boxes have IoU 0.

    Examples
    --------
    >>> box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [0, 0, 2, 2]]).round(4)
    array([[0.1429, 1.    ]])
    """
    a, b = as_boxes(boxes1, "boxes1"), as_boxes(boxes2, "boxes2")
    return iou_unchecked(a, b)


def iou_unchecked(a: FloatArray, b: FloatArray) -> FloatArray:
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    out: FloatArray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return out


def as_box_scores(scores: ArrayLike, k: int, name: str = "scores") -> FloatArray:
    s = np.asarray(scores)
    if s.ndim != 1 or not (
        np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)
    ):
        raise InputShapeError(f"Expected {name} of shape (k,), numeric; got shape {s.shape}.")
    if s.shape[0] != k:
        raise SampleCountError(
            f"Expected one {name[:-1]} per box: {k} boxes; got {s.shape[0]} {name}."
        )
    out = s.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise NonFiniteError(
            f"{name[0].upper()}{name[1:]} contain {int((~np.isfinite(out)).sum())} non-finite "
            "values (NaN or inf). Drop or fix those boxes."
        )
    return out


def _check_iou_threshold(value: Any) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = float("nan")
    if not 0.0 <= t <= 1.0:
        raise ParameterError(f"Expected iou_threshold in [0, 1]; got {value!r}. Try 0.5.")
    return t


def nms(boxes: ArrayLike, scores: ArrayLike, iou_threshold: float = 0.5) -> IntArray:
    """Greedy non-maximum suppression; returns the kept indices, highest score first.

    Parameters
    ----------
    boxes : array-like of shape (k, 4)
        ``(x1, y1, x2, y2)``.
    scores : array-like of shape (k,)
        Higher = better box. Equal scores are visited in index order.
    iou_threshold : float, default=0.5
        A box is dropped when its IoU with a kept box is greater than this.

    Returns
    -------
    ndarray of int, shape (n_kept,)

    Examples
    --------
    >>> import numpy as np
    >>> b = np.array([[0, 0, 4, 4], [0, 0, 4, 3], [10, 0, 14, 4]])
    >>> nms(b, [0.5, 0.9, 0.1], iou_threshold=0.7)
    array([1, 2])
    """
    b = as_boxes(boxes)
    s = as_box_scores(scores, b.shape[0])
    t = _check_iou_threshold(iou_threshold)
    return nms_unchecked(b, s, t)


def nms_unchecked(b: FloatArray, s: FloatArray, t: float) -> IntArray:
    order = np.argsort(-s, kind="stable")
    if order.shape[0] == 0:
        return order.astype(np.intp)
    iou = iou_unchecked(b[order], b[order])
    n = order.shape[0]
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > t
    out: IntArray = order[np.asarray(keep, dtype=np.intp)]
    return out


def batched_nms(
    boxes: ArrayLike, scores: ArrayLike, labels: ArrayLike, iou_threshold: float = 0.5
) -> IntArray:
    """NMS separately within each label; returns kept indices, highest score first.

    Examples
    --------
    >>> import numpy as np
    >>> b = np.array([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 4, 4]])
    >>> batched_nms(b, [0.9, 0.8, 0.7], [0, 1, 0])
    array([0, 1])
    """
    b = as_boxes(boxes)
    s = as_box_scores(scores, b.shape[0])
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != b.shape[0]:
        raise SampleCountError(
            f"Expected one label per box: {b.shape[0]} boxes; got labels of shape {lab.shape}."
        )
    t = _check_iou_threshold(iou_threshold)
    keep: list[IntArray] = []
    for c in np.unique(lab):
        idx = np.flatnonzero(lab == c)
        keep.append(idx[nms_unchecked(b[idx], s[idx], t)])
    if not keep:
        return np.zeros(0, dtype=np.intp)
    allk = np.sort(np.concatenate(keep))  # index order first: equal scores stay in it
    out: IntArray = allk[np.argsort(-s[allk], kind="stable")]
    return out
