"""COCO mean average precision through ``pycocotools`` (``pip install "cascadekit[detection]"``).

:func:`mean_average_precision` is the plain metric: COCO's box AP averaged over the IoU
thresholds 0.50:0.05:0.95 (``map``), and at IoU 0.50 (``map_50``) and 0.75 (``map_75``), over all
object sizes with up to 100 detections per image, averaged over the classes that have a true
box. Matching and accumulation are pycocotools' ``COCOeval.evaluate`` and ``accumulate``.

mAP is not a sum over images, so a cascade's mAP must be recomputed for each routing. That is
affordable because COCO matching is **per image**: :class:`CocoMAP` matches each detector's
predictions once (:meth:`CocoMAP.evaluate`), and :meth:`CocoMAP.mixed` takes, for every image,
the matching of the detector that answered it and runs only the accumulation. The result is
exactly the mAP of the mixed predictions (a test checks it against a direct evaluation).

Examples
--------
>>> import numpy as np
>>> from cascadekit.detection.metrics import mean_average_precision
>>> gt = [{"boxes": np.array([[0, 0, 10, 10]]), "labels": np.array([1])}]
>>> good = [{"boxes": np.array([[0, 0, 10, 10]]), "labels": np.array([1]), "scores": [0.9]}]
>>> mean_average_precision(good, gt)["map"]
1.0
>>> off = [{"boxes": np.array([[2, 0, 12, 10]]), "labels": np.array([1]), "scores": [0.9]}]
>>> round(mean_average_precision(off, gt)["map"], 4)   # IoU 0.667: a hit up to 0.65
0.4
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._optional import require
from ..errors import EmptyInputError, InputShapeError, LabelError, SampleCountError
from .energy import Detections
from .nms import as_box_scores, as_boxes

__all__ = ["CocoMAP", "MatchedDetections", "mean_average_precision"]

MAX_DETECTIONS = 100


def _cocoeval() -> tuple[Any, Any]:
    coco = require("pycocotools.coco", "detection", "Detection mAP")
    cocoeval = require("pycocotools.cocoeval", "detection", "Detection mAP")
    return coco.COCO, cocoeval.COCOeval


def _labels(x: Any, k: int, where: str, n_classes: int | None) -> NDArray[np.int64]:
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.shape[0] != k:
        raise SampleCountError(
            f"{where}: expected one label per box ({k} boxes); got labels of shape {arr.shape}."
        )
    if arr.size and (
        not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating))
        or not np.all(np.mod(arr, 1) == 0)
        or arr.min() < 0
        or (n_classes is not None and arr.max() >= n_classes)
    ):
        raise LabelError(
            f"{where}: expected integer labels in [0, {n_classes}); got {arr[:5].tolist()}."
        )
    return arr.astype(np.int64)


def _check_list(x: Any, what: str) -> Sequence[Any]:
    if isinstance(x, Mapping) or not isinstance(x, Sequence):
        raise InputShapeError(
            f"Expected {what} as a list with one dict per image; got {type(x).__name__}."
        )
    if len(x) == 0:
        raise EmptyInputError(f"Expected {what} for at least one image; got none.")
    return x


def _get(d: Any, key: str, where: str) -> Any:
    if isinstance(d, Detections):
        d = d.to_dict()
    if not isinstance(d, Mapping):
        raise InputShapeError(f"{where}: expected a dict; got {type(d).__name__}.")
    if key not in d:
        raise InputShapeError(f"{where}: missing key {key!r}; got keys {sorted(d)}.")
    return d[key]


def _xywh(b: NDArray[np.float64]) -> list[list[float]]:
    return np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]]).tolist()


@dataclass(eq=False)
class MatchedDetections:
    """One detector's per-image COCO matching on a :class:`CocoMAP`'s images (opaque)."""

    eval_imgs: list[Any]
    n_images: int


class CocoMAP:
    """COCO box mAP on a fixed set of images, with per-image matching reused across routings.

    Parameters
    ----------
    targets : list of dict
        Per image: ``boxes`` (k, 4) xyxy pixels and ``labels`` (k,) in ``[0, n_classes)``.
    n_classes : int, optional
        Number of classes (defaults to the largest label + 1).

    Examples
    --------
    >>> import numpy as np
    >>> gt = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}, {"boxes": [[5, 5, 9, 9]], "labels": [1]}]
    >>> hit = [{"boxes": [[0, 0, 10, 10]], "labels": [0], "scores": [0.9]},
    ...        {"boxes": [[5, 5, 9, 9]], "labels": [1], "scores": [0.8]}]
    >>> miss = [{"boxes": np.zeros((0, 4)), "labels": [], "scores": []}] * 2
    >>> m = CocoMAP(gt)
    >>> a, b = m.evaluate(hit), m.evaluate(miss)
    >>> m.compute(a)["map"], m.compute(b)["map"], m.mixed([a, b], [0, 1])["map"]
    (1.0, 0.0, 0.5)
    """

    def __init__(self, targets: Sequence[Mapping[str, Any]], n_classes: int | None = None) -> None:
        targets = _check_list(targets, "targets")
        boxes, labels = [], []
        for i, t in enumerate(targets):
            where = f"Targets of image {i}"
            try:
                b = as_boxes(_get(t, "boxes", where), "boxes")
            except InputShapeError as exc:
                raise InputShapeError(f"{where}: {exc}") from None
            boxes.append(b)
            labels.append(_labels(_get(t, "labels", where), b.shape[0], where, n_classes))
        if n_classes is None:
            n_classes = 1 + max((int(lab.max()) for lab in labels if lab.size), default=0)
        self.n_classes = int(n_classes)
        self.n_images = len(boxes)
        coco_cls, _ = _cocoeval()
        anns: list[dict[str, Any]] = []
        for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
            for box, c in zip(_xywh(b), lab.tolist(), strict=True):
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i + 1,
                        "category_id": int(c) + 1,
                        "bbox": box,
                        "area": float(box[2] * box[3]),
                        "iscrowd": 0,
                    }
                )
        self._images = [{"id": i + 1} for i in range(self.n_images)]
        self._categories = [{"id": c + 1} for c in range(self.n_classes)]
        self._gt = coco_cls()
        self._gt.dataset = {
            "images": self._images,
            "categories": self._categories,
            "annotations": anns,
        }
        with contextlib.redirect_stdout(io.StringIO()):
            self._gt.createIndex()
        self._template: Any = None

    def _predictions_coco(self, predictions: Sequence[Any]) -> Any:
        predictions = _check_list(predictions, "predictions")
        if len(predictions) != self.n_images:
            raise SampleCountError(
                f"Expected predictions for the {self.n_images} images of the targets; got "
                f"{len(predictions)}. Pass one dict per image, in the same order."
            )
        anns: list[dict[str, Any]] = []
        for i, p in enumerate(predictions):
            where = f"Predictions of image {i}"
            try:
                b = as_boxes(_get(p, "boxes", where), "boxes")
                s = as_box_scores(_get(p, "scores", where), b.shape[0])
            except (InputShapeError, SampleCountError) as exc:
                raise type(exc)(f"{where}: {exc}") from None
            lab = _labels(_get(p, "labels", where), b.shape[0], where, self.n_classes)
            for box, c, sc in zip(_xywh(b), lab.tolist(), s.tolist(), strict=True):
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i + 1,
                        "category_id": int(c) + 1,
                        "bbox": box,
                        "area": float(box[2] * box[3]),
                        "score": float(sc),
                        "iscrowd": 0,
                    }
                )
        coco_cls, _ = _cocoeval()
        dt = coco_cls()
        dt.dataset = {"images": self._images, "categories": self._categories, "annotations": anns}
        with contextlib.redirect_stdout(io.StringIO()):
            dt.createIndex()
        return dt

    def evaluate(self, predictions: Sequence[Mapping[str, Any] | Detections]) -> MatchedDetections:
        """Match one detector's predictions (one dict per image, same order as the targets)."""
        _, eval_cls = _cocoeval()
        e = eval_cls(self._gt, self._predictions_coco(predictions), iouType="bbox")
        e.params.areaRng = [[0.0, 1e10]]
        e.params.areaRngLbl = ["all"]
        e.params.maxDets = [MAX_DETECTIONS]
        with contextlib.redirect_stdout(io.StringIO()):
            e.evaluate()
        if self._template is None:
            self._template = e
        return MatchedDetections(list(e.evalImgs), self.n_images)

    def _accumulate(self, eval_imgs: list[Any]) -> dict[str, float]:
        e = self._template
        e.evalImgs = eval_imgs
        with contextlib.redirect_stdout(io.StringIO()):
            e.accumulate()
        prec = e.eval["precision"][:, :, :, 0, -1]  # (iou thresholds, recall, classes)

        def mean(p: np.ndarray) -> float:
            valid = p[p > -1]
            return float(valid.mean()) if valid.size else -1.0

        return {"map": mean(prec), "map_50": mean(prec[0]), "map_75": mean(prec[5])}

    def as_matched(self, x: Any) -> MatchedDetections:
        """``x`` matched against this evaluator's ground truth (a matching is checked)."""
        m = x if isinstance(x, MatchedDetections) else self.evaluate(x)
        if m.n_images != self.n_images:
            raise SampleCountError(
                f"Expected a matching of {self.n_images} images; got one of {m.n_images}."
            )
        return m

    def compute(self, predictions: MatchedDetections | Sequence[Any]) -> dict[str, float]:
        """``{"map", "map_50", "map_75"}`` of one detector (predictions or their matching)."""
        return self._accumulate(self.as_matched(predictions).eval_imgs)

    def mixed(
        self, matched: Sequence[MatchedDetections | Sequence[Any]], choice: ArrayLike
    ) -> dict[str, float]:
        """mAP when image ``i`` is answered by detector ``choice[i]`` (an index into ``matched``).

        A boolean ``choice`` picks ``matched[1]`` where True (e.g. "sent to the teacher").
        """
        ms = [self.as_matched(m) for m in matched]
        ch = np.asarray(choice)
        if ch.ndim != 1 or ch.shape[0] != self.n_images:
            raise SampleCountError(
                f"Expected one choice per image ({self.n_images}); got shape {ch.shape}."
            )
        ch = ch.astype(np.int64)
        if ch.size and (ch.min() < 0 or ch.max() >= len(ms)):
            raise InputShapeError(
                f"Expected choices in [0, {len(ms)}) (indices of the detectors); got "
                f"{sorted(set(ch.tolist()))[:5]}."
            )
        per = np.tile(ch, len(ms[0].eval_imgs) // self.n_images)
        mixed = [ms[int(c)].eval_imgs[j] for j, c in enumerate(per.tolist())]
        return self._accumulate(mixed)


def mean_average_precision(
    predictions: Sequence[Mapping[str, Any] | Detections],
    targets: Sequence[Mapping[str, Any]],
    n_classes: int | None = None,
) -> dict[str, float]:
    """COCO box mAP of ``predictions`` against ``targets`` (one dict per image each).

    Returns ``{"map", "map_50", "map_75"}``: AP averaged over IoU 0.50:0.95, and at 0.50 and
    0.75, all object sizes, up to 100 detections per image; -1.0 when no class has a true box.

    Examples
    --------
    >>> gt = [{"boxes": [[0, 0, 4, 4]], "labels": [0]}]
    >>> mean_average_precision([{"boxes": [[0, 0, 4, 4]], "labels": [0], "scores": [1.0]}], gt)
    {'map': 1.0, 'map_50': 1.0, 'map_75': 1.0}
    """
    m = CocoMAP(targets, n_classes)
    return m.compute(predictions)
