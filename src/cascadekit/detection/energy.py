"""Per-image routing scores of a detector: EBJR's detection energy and its alternatives.

**Score direction: higher = more confident = keep the image on the student detector.** An image
stays on the student when ``score >= threshold`` and goes to the teacher otherwise. Images whose
score is ``-inf`` (by default: no box survived the selection) always go to the teacher, except at
the threshold ``-inf`` that keeps everything on the student.

The output format
-----------------
One dict (or :class:`Detections`) per image, as torchvision-style detectors return it, plus the
per-box head outputs the scores need:

=================  ===============  ===========================================================
key                shape            meaning
=================  ===============  ===========================================================
``boxes``          (k, 4)           ``(x1, y1, x2, y2)`` in pixels
``labels``         (k,)             predicted class index
``scores``         (k,)             detector confidence of each box (e.g. ``max sigmoid``)
``logits``         (k, C)           class logits of each box (sigmoid or softmax head)
``box_logits``     (k, 4, B)        optional: per side, logits over B distance bins (a GFL /
                                    DFL box head); their log-sum-exp is EBJR eq. 13
``box_log_sigma``  (k, 4)           optional: per coordinate log standard deviation (a
                                    Gaussian box head)
=================  ===============  ===========================================================

The detection energy (EBJR eqs. 12-14)
--------------------------------------
For the ``B`` selected boxes of an image, with class logits ``z_b`` and box-bin logits ``r_bj``
of side ``j``::

    class term  -F^c = (1/B) sum_b T * logsumexp(z_b / T)                        (eq. 12)
    box term    -F^r = (1/4B) sum_b sum_j T * logsumexp(r_bj / T)                 (eq. 13)
    score       -F^o = -F^c + w * (-F^r)                                          (eq. 14)

The integral of eq. 13 over one coordinate is computed as a sum over the head's distance bins
(exact for a discretised head, up to the constant ``log(bin width)``, which does not change the
ranking). For a Gaussian head, whose free energy is increasing in uncertainty and so useless for
routing (see :mod:`cascadekit.regression`), the box term is the confidence ``-mean log sigma``.

Choices the paper leaves open, each an explicit option (defaults in brackets):

* which boxes count: ``score_threshold`` [0.3], ``top_k`` [None: all], ``nms_iou`` [None: the
  output is already after NMS; set a value to run class-wise NMS first];
* no box left: ``empty`` ["teacher" = score ``-inf``; "student" = ``+inf``; "fallback" = use the
  single highest-scoring box whatever its score; or a number];
* head: ``head`` ["sigmoid" (focal, EfficientDet-style) or "softmax"], ``background_class`` for
  softmax heads with a background column (excluded from the energy, as EBJR eq. 17 excludes the
  "other" class); ``class_term`` ["energy" = logsumexp, or "joint_energy" = sum of softplus, the
  sigmoid-head variant];
* ``box_term`` ["auto": "energy" if ``box_logits`` are present, "neg_log_sigma" if
  ``box_log_sigma`` are, else none], ``box_weight`` w [1.0], ``temperature`` T [1.0].

Alternatives for the benchmark, by name in :data:`DETECTION_SCORES`: ``class_energy`` (eq. 12
alone), ``box_energy`` (eq. 13 alone), ``joint_energy``, ``mean_score`` and ``max_score`` (the
detector's own box scores), ``mean_max_softmax``, ``mean_neg_entropy`` and ``mean_margin`` (the
classification scores of :mod:`cascadekit.scores`, averaged over the selected boxes).

This module needs numpy and scipy only.

Examples
--------
>>> import numpy as np
>>> from cascadekit.detection import detection_score
>>> img = {
...     "boxes": np.array([[0.0, 0.0, 10.0, 10.0]]),
...     "labels": np.array([0]),
...     "scores": np.array([0.9]),
...     "logits": np.array([[2.0, 0.0]]),
... }
>>> empty = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int),
...          "scores": np.zeros(0), "logits": np.zeros((0, 2))}
>>> detection_score([img, empty], "energy").round(4)   # log(e^2 + e^0); no box -> teacher
array([2.1269,   -inf])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.special import logsumexp

from .. import scores as as_box_scores
from ..errors import (
    ClassCountError,
    EmptyInputError,
    InputShapeError,
    NonFiniteError,
    ParameterError,
    SampleCountError,
    UnknownNameError,
)
from .nms import as_boxes, nms_unchecked

__all__ = [
    "DETECTION_SCORES",
    "DetectionScorer",
    "Detections",
    "as_detections",
    "detection_energy",
    "detection_score",
]

FloatArray = NDArray[np.float64]

REQUIRED_KEYS: tuple[str, ...] = ("boxes", "labels", "scores", "logits")
OPTIONAL_KEYS: tuple[str, ...] = ("box_logits", "box_log_sigma")

#: Names accepted by :func:`detection_score` (all: higher = keep on the student).
DETECTION_SCORES: tuple[str, ...] = (
    "energy",
    "class_energy",
    "box_energy",
    "joint_energy",
    "mean_score",
    "max_score",
    "mean_max_softmax",
    "mean_neg_entropy",
    "mean_margin",
)


@dataclass(frozen=True, eq=False)
class Detections:
    """The validated detections of one image (see the module docstring for the format).

    Examples
    --------
    >>> import numpy as np
    >>> d = Detections(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3)))
    >>> len(d), d.n_classes
    (0, 3)
    """

    boxes: FloatArray
    labels: NDArray[np.int64]
    scores: FloatArray
    logits: FloatArray
    box_logits: FloatArray | None = None
    box_log_sigma: FloatArray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of class-logit columns."""
        return int(self.logits.shape[1])

    def take(self, index: Any) -> Detections:
        """The boxes ``index`` (an index array or a boolean mask), in that order."""
        ix = np.asarray(index)
        if ix.dtype == np.bool_:
            ix = np.flatnonzero(ix)
        ix = ix.astype(np.intp)
        return Detections(
            boxes=self.boxes[ix],
            labels=self.labels[ix],
            scores=self.scores[ix],
            logits=self.logits[ix],
            box_logits=None if self.box_logits is None else self.box_logits[ix],
            box_log_sigma=None if self.box_log_sigma is None else self.box_log_sigma[ix],
        )

    def to_dict(self) -> dict[str, FloatArray | NDArray[np.int64]]:
        """The plain-dict form (optional keys only when present)."""
        out: dict[str, Any] = {
            "boxes": self.boxes,
            "labels": self.labels,
            "scores": self.scores,
            "logits": self.logits,
        }
        if self.box_logits is not None:
            out["box_logits"] = self.box_logits
        if self.box_log_sigma is not None:
            out["box_log_sigma"] = self.box_log_sigma
        return out


def _numeric(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.integer)
        or arr.dtype == np.bool_
    ):
        raise InputShapeError(f"{what}: expected a numeric array; got dtype {arr.dtype}.")
    return arr


def _finite(arr: np.ndarray, what: str) -> FloatArray:
    out = arr.astype(np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        row = int(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0])
        raise NonFiniteError(
            f"{what}: {int(bad.sum())} non-finite values (NaN or inf), first in box {row}. "
            "Fix the model's outputs (or drop those boxes) before routing."
        )
    return out


def as_detections(
    output: Mapping[str, Any] | Detections,
    *,
    image: int | None = None,
    n_classes: int | None = None,
) -> Detections:
    """Validate one image's detector output and return it as :class:`Detections`.

    Parameters
    ----------
    output : mapping or Detections
        ``boxes`` (k, 4), ``labels`` (k,), ``scores`` (k,), ``logits`` (k, C); optionally
        ``box_logits`` (k, 4, B) and ``box_log_sigma`` (k, 4). ``k`` may be 0.
    image : int, optional
        Index of the image, used in error messages.
    n_classes : int, optional
        Expected number of logit columns.

    Raises
    ------
    InputShapeError
        A key is missing, or an array has the wrong shape or dtype.
    SampleCountError
        The per-box arrays disagree on the number of boxes.
    ClassCountError
        ``logits`` has not ``n_classes`` columns.
    NonFiniteError
        An array holds NaN or inf.

    Examples
    --------
    >>> import numpy as np
    >>> d = as_detections({"boxes": [[0, 0, 1, 1]], "labels": [1], "scores": [0.5],
    ...                    "logits": [[0.1, 0.2]]})
    >>> d.boxes.dtype, d.labels.tolist()
    (dtype('float64'), [1])
    >>> as_detections({"boxes": [[0, 0, 1, 1]], "labels": [1], "scores": [0.5]}, image=3)
    Traceback (most recent call last):
    ...
    cascadekit.errors.InputShapeError: Detections of image 3: missing key(s) 'logits'; ...
    """
    where = "Detections" if image is None else f"Detections of image {image}"
    if isinstance(output, Detections):
        output = output.to_dict()
    if not isinstance(output, Mapping):
        raise InputShapeError(
            f"{where}: expected a dict with keys {', '.join(REQUIRED_KEYS)}; got "
            f"{type(output).__name__}. Pass one dict per image."
        )
    missing = [k for k in REQUIRED_KEYS if k not in output]
    if missing:
        raise InputShapeError(
            f"{where}: missing key(s) {', '.join(repr(k) for k in missing)}; expected "
            f"{', '.join(REQUIRED_KEYS)} (and optionally {', '.join(OPTIONAL_KEYS)}). Have the "
            "detector return its per-box class logits too."
        )
    try:
        boxes = as_boxes(_numeric(output["boxes"], f"{where}, 'boxes'"), "boxes")
    except (InputShapeError, NonFiniteError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    k = boxes.shape[0]
    labels = _numeric(output["labels"], f"{where}, 'labels'")
    scores = _numeric(output["scores"], f"{where}, 'scores'")
    logits = _numeric(output["logits"], f"{where}, 'logits'")
    if labels.ndim != 1 or scores.ndim != 1:
        raise InputShapeError(
            f"{where}: expected 'labels' and 'scores' of shape (k,); got {labels.shape} and "
            f"{scores.shape}."
        )
    if logits.ndim != 2:
        raise InputShapeError(
            f"{where}: expected 'logits' of shape (k, n_classes), one row of class logits per "
            f"box; got shape {logits.shape}."
        )
    lengths = {"boxes": k, "labels": labels.shape[0], "scores": scores.shape[0]}
    lengths["logits"] = logits.shape[0]
    extra: dict[str, np.ndarray] = {}
    for key in OPTIONAL_KEYS:
        if output.get(key) is not None:
            extra[key] = _numeric(output[key], f"{where}, {key!r}")
            lengths[key] = extra[key].shape[0] if extra[key].ndim else -1
    if len(set(lengths.values())) != 1:
        raise SampleCountError(
            f"{where}: the per-box arrays disagree on the number of boxes: "
            f"{', '.join(f'{n}={v}' for n, v in lengths.items())}. Give every key one row per box."
        )
    if n_classes is not None and logits.shape[1] != n_classes:
        raise ClassCountError(
            f"{where}: expected 'logits' with {n_classes} columns (as the other images); got "
            f"{logits.shape[1]}. All images must come from the same detector head."
        )
    if logits.shape[1] < 1:
        raise InputShapeError(f"{where}: expected at least one class column in 'logits'.")
    if labels.size and (not np.all(np.equal(np.mod(labels, 1), 0)) or labels.min() < 0):
        raise InputShapeError(
            f"{where}: expected 'labels' to be non-negative integers; got {labels[:5].tolist()}."
        )
    bl = extra.get("box_logits")
    if bl is not None and (bl.ndim != 3 or bl.shape[1] != 4 or bl.shape[2] < 2):
        raise InputShapeError(
            f"{where}: expected 'box_logits' of shape (k, 4, n_bins) with n_bins >= 2; got "
            f"{bl.shape}."
        )
    ls = extra.get("box_log_sigma")
    if ls is not None and (ls.ndim != 2 or ls.shape[1] != 4):
        raise InputShapeError(f"{where}: expected 'box_log_sigma' of shape (k, 4); got {ls.shape}.")
    return Detections(
        boxes=boxes,
        labels=labels.astype(np.int64),
        scores=_finite(scores, f"{where}, 'scores'"),
        logits=_finite(logits, f"{where}, 'logits'"),
        box_logits=None if bl is None else _finite(bl, f"{where}, 'box_logits'"),
        box_log_sigma=None if ls is None else _finite(ls, f"{where}, 'box_log_sigma'"),
    )


def as_detection_list(outputs: Sequence[Mapping[str, Any] | Detections]) -> list[Detections]:
    """Validate the outputs of a batch of images (same number of classes in all).

    Examples
    --------
    >>> as_detection_list([])
    Traceback (most recent call last):
    ...
    cascadekit.errors.EmptyInputError: Expected detector outputs for at least one image; ...
    """
    if isinstance(outputs, Mapping) or not isinstance(outputs, Sequence):
        raise InputShapeError(
            f"Expected a list with one detections dict per image; got {type(outputs).__name__}."
        )
    if len(outputs) == 0:
        raise EmptyInputError("Expected detector outputs for at least one image; got none.")
    first = as_detections(outputs[0], image=0)
    out = [first]
    for i in range(1, len(outputs)):
        out.append(as_detections(outputs[i], image=i, n_classes=first.n_classes))
    return out


# ----------------------------------------------------------------------------------------------
# the scorer


HeadKind = Literal["sigmoid", "softmax"]
ClassTerm = Literal["energy", "joint_energy"]
BoxTerm = Literal["auto", "energy", "neg_log_sigma", "none"]
EmptyPolicy = Literal["teacher", "student", "fallback"] | float


@dataclass(frozen=True)
class DetectionScorer:
    """A per-image routing score for detectors; higher = keep the image on the student.

    The constructor only stores the options (see the module docstring); calling the scorer on
    a list of per-image outputs returns one score per image.

    Parameters
    ----------
    name : str, default="energy"
        One of :data:`DETECTION_SCORES`.
    score_threshold : float, default=0.3
        Boxes with ``scores < score_threshold`` do not count.
    top_k : int, optional
        Only the ``top_k`` highest-scoring boxes (after the threshold) count.
    nms_iou : float, optional
        Run class-wise NMS at this IoU first (for raw, pre-NMS outputs).
    empty : {"teacher", "student", "fallback"} or float, default="teacher"
        Score of an image with no counted box: ``-inf``, ``+inf``, the score computed on its
        single best box (``-inf`` if it has none at all), or the given number.
    head : {"sigmoid", "softmax"}, default="sigmoid"
        How the class logits were trained.
    background_class : int, optional
        Softmax heads only: the background column, left out of every class term.
    class_term : {"energy", "joint_energy"}, default="energy"
        ``T * logsumexp(z / T)`` (EBJR eq. 12) or ``T * sum softplus(z / T)`` (JointEnergy).
    box_term : {"auto", "energy", "neg_log_sigma", "none"}, default="auto"
        The box term of ``"energy"`` and ``"box_energy"``.
    box_weight : float, default=1.0
        Weight ``w >= 0`` of the box term in ``"energy"``.
    temperature : float, default=1.0
        ``T > 0`` of every energy and softmax.

    Examples
    --------
    >>> import numpy as np
    >>> img = {"boxes": [[0, 0, 8, 8], [1, 1, 9, 9]], "labels": [0, 1], "scores": [0.9, 0.2],
    ...        "logits": [[3.0, 0.0], [0.0, 1.0]]}
    >>> DetectionScorer("mean_score", score_threshold=0.0)([img])
    array([0.55])
    >>> DetectionScorer("max_score")([img])
    array([0.9])
    """

    name: str = "energy"
    score_threshold: float = 0.3
    top_k: int | None = None
    nms_iou: float | None = None
    empty: EmptyPolicy = "teacher"
    head: HeadKind = "sigmoid"
    background_class: int | None = None
    class_term: ClassTerm = "energy"
    box_term: BoxTerm = "auto"
    box_weight: float = 1.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in DETECTION_SCORES:
            raise UnknownNameError(
                f"Unknown detection score {self.name!r}; expected one of "
                f"{', '.join(DETECTION_SCORES)}."
            )
        if not _is_real(self.score_threshold):
            raise ParameterError(
                f"Expected a finite score_threshold; got {self.score_threshold!r}. Use 0.0 to "
                "count every box."
            )
        if self.top_k is not None and (
            isinstance(self.top_k, bool)
            or not isinstance(self.top_k, (int, np.integer))
            or self.top_k < 1
        ):
            raise ParameterError(
                f"Expected top_k to be None or an integer >= 1; got {self.top_k!r}."
            )
        if self.nms_iou is not None and not (
            _is_real(self.nms_iou) and 0.0 <= float(self.nms_iou) <= 1.0
        ):
            raise ParameterError(f"Expected nms_iou to be None or in [0, 1]; got {self.nms_iou!r}.")
        if isinstance(self.empty, str):
            if self.empty not in ("teacher", "student", "fallback"):
                raise ParameterError(
                    f"Expected empty to be 'teacher', 'student', 'fallback' or a number; got "
                    f"{self.empty!r}."
                )
        elif isinstance(self.empty, bool) or not isinstance(self.empty, (int, float)):
            raise ParameterError(
                f"Expected empty to be 'teacher', 'student', 'fallback' or a number; got "
                f"{self.empty!r}."
            )
        if self.head not in ("sigmoid", "softmax"):
            raise ParameterError(f"Expected head 'sigmoid' or 'softmax'; got {self.head!r}.")
        if self.background_class is not None and self.head != "softmax":
            raise ParameterError(
                "background_class is for softmax heads (a background column); a sigmoid head "
                "has none. Pass head='softmax' or drop background_class."
            )
        if self.class_term not in ("energy", "joint_energy"):
            raise ParameterError(
                f"Expected class_term 'energy' or 'joint_energy'; got {self.class_term!r}."
            )
        if self.box_term not in ("auto", "energy", "neg_log_sigma", "none"):
            raise ParameterError(
                f"Expected box_term 'auto', 'energy', 'neg_log_sigma' or 'none'; got "
                f"{self.box_term!r}."
            )
        if not (_is_real(self.box_weight) and float(self.box_weight) >= 0.0):
            raise ParameterError(f"Expected box_weight >= 0; got {self.box_weight!r}.")
        if not (_is_real(self.temperature) and float(self.temperature) > 0.0):
            raise ParameterError(f"Expected temperature > 0; got {self.temperature!r}.")

    # -- selection ---------------------------------------------------------------------------

    def select(self, det: Detections) -> Detections:
        """The boxes that count: NMS (if ``nms_iou``), then the score threshold, then top-k."""
        keep = np.arange(len(det))
        if self.nms_iou is not None and len(det):
            groups = [np.flatnonzero(det.labels == c) for c in np.unique(det.labels)]
            keep = np.sort(
                np.concatenate(
                    [
                        g[nms_unchecked(det.boxes[g], det.scores[g], float(self.nms_iou))]
                        for g in groups
                    ]
                )
            )
        keep = keep[det.scores[keep] >= float(self.score_threshold)]
        keep = keep[np.argsort(-det.scores[keep], kind="stable")]
        if self.top_k is not None:
            keep = keep[: int(self.top_k)]
        return det.take(keep)

    # -- per-box terms -----------------------------------------------------------------------

    def _foreground(self, z: FloatArray) -> FloatArray:
        if self.background_class is None:
            return z
        c = z.shape[1]
        if not -c <= int(self.background_class) < c or c < 2:
            raise InputShapeError(
                f"Expected background_class in [{-c}, {c - 1}] for logits with {c} columns; got "
                f"{self.background_class}."
            )
        return np.delete(z, int(self.background_class) % c, axis=1)

    def class_energy(self, det: Detections) -> FloatArray:
        """Per box: ``T * logsumexp(z / T)`` or ``T * sum softplus(z / T)`` (foreground)."""
        t = float(self.temperature)
        z = self._foreground(det.logits)
        if self.class_term == "joint_energy" or self.name == "joint_energy":
            out: FloatArray = t * np.logaddexp(0.0, z / t).sum(axis=1)
        else:
            out = t * logsumexp(z / t, axis=1)
        return out

    def _resolved_box_term(self, det: Detections) -> str:
        if self.box_term != "auto":
            return self.box_term
        if det.box_logits is not None:
            return "energy"
        if det.box_log_sigma is not None:
            return "neg_log_sigma"
        return "none"

    def box_energy(self, det: Detections) -> FloatArray:
        """Per box: mean over the 4 sides of ``T * logsumexp(r / T)``, or ``-mean log sigma``."""
        term = self._resolved_box_term(det)
        if term == "energy":
            if det.box_logits is None:
                raise InputShapeError(
                    "box_term='energy' needs 'box_logits' of shape (k, 4, n_bins) in every "
                    "image's output; they are missing. Use box_term='neg_log_sigma' for a "
                    "Gaussian box head or box_term='none'."
                )
            k, _, nb = det.box_logits.shape
            e = as_box_scores.energy(det.box_logits.reshape(k * 4, nb), float(self.temperature))
            out: FloatArray = e.reshape(k, 4).mean(axis=1).astype(np.float64)
            return out
        if term == "neg_log_sigma":
            if det.box_log_sigma is None:
                raise InputShapeError(
                    "box_term='neg_log_sigma' needs 'box_log_sigma' of shape (k, 4) in every "
                    "image's output; they are missing."
                )
            out = -det.box_log_sigma.mean(axis=1)
            return out
        return np.zeros(len(det))

    def _class_probs_score(self, det: Detections) -> FloatArray:
        z = det.logits
        t = float(self.temperature)
        if z.shape[1] < 2:
            raise InputShapeError(
                f"Score {self.name!r} needs at least 2 class columns; got {z.shape[1]}."
            )
        if self.name == "mean_max_softmax":
            if self.background_class is not None:
                logp = z / t - logsumexp(z / t, axis=1, keepdims=True)
                out: FloatArray = np.exp(self._foreground(logp).max(axis=1))
                return out
            return as_box_scores.max_softmax(z, t).astype(np.float64)
        fg = self._foreground(z)
        if fg.shape[1] < 2:
            raise InputShapeError(
                f"Score {self.name!r} needs at least 2 foreground class columns; got {fg.shape[1]}."
            )
        fn = as_box_scores.entropy if self.name == "mean_neg_entropy" else as_box_scores.margin
        return fn(fg, t).astype(np.float64)

    def per_box(self, det: Detections) -> FloatArray:
        """The per-box values that :meth:`image_score` averages (``max_score``: the maximum)."""
        n = self.name
        if n in ("mean_score", "max_score"):
            return det.scores.copy()
        if n in ("mean_max_softmax", "mean_neg_entropy", "mean_margin"):
            return self._class_probs_score(det)
        if n == "box_energy":
            return self.box_energy(det)
        cls = self.class_energy(det)
        if n in ("class_energy", "joint_energy"):
            return cls
        out: FloatArray = cls + float(self.box_weight) * self.box_energy(det)
        return out

    def image_score(self, output: Mapping[str, Any] | Detections) -> float:
        """The score of one image (validated first)."""
        det = output if isinstance(output, Detections) else as_detections(output)
        return self._score_one(det)

    def _score_one(self, det: Detections) -> float:
        sel = self.select(det)
        if len(sel) == 0:
            if self.empty == "teacher":
                return -math.inf
            if self.empty == "student":
                return math.inf
            if self.empty == "fallback":
                if len(det) == 0:
                    return -math.inf
                sel = det.take(np.argsort(-det.scores, kind="stable")[:1])
            else:
                return float(self.empty)
        v = self.per_box(sel)
        return float(v.max() if self.name == "max_score" else v.mean())

    def __call__(self, outputs: Sequence[Mapping[str, Any] | Detections]) -> FloatArray:
        """Scores of a list of per-image outputs, shape ``(n_images,)``; higher = keep."""
        dets = as_detection_list(outputs)
        return np.array([self._score_one(d) for d in dets], dtype=np.float64)


def _is_real(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def detection_score(
    outputs: Sequence[Mapping[str, Any] | Detections], name: str = "energy", **options: Any
) -> FloatArray:
    """Per-image routing score ``name`` of detector outputs; higher = keep on the student.

    A shortcut for ``DetectionScorer(name, **options)(outputs)``; see :class:`DetectionScorer`
    for the options.

    Examples
    --------
    >>> import numpy as np
    >>> img = {"boxes": [[0, 0, 8, 8]], "labels": [0], "scores": [0.8],
    ...        "logits": [[0.0, 0.0]], "box_logits": np.zeros((1, 4, 3))}
    >>> detection_score([img], "class_energy").round(4)        # log 2
    array([0.6931])
    >>> detection_score([img], "energy", box_weight=0.5).round(4)  # log 2 + 0.5 log 3
    array([1.2425])
    """
    return DetectionScorer(name, **options)(outputs)


def detection_energy(
    outputs: Sequence[Mapping[str, Any] | Detections], **options: Any
) -> FloatArray:
    """EBJR's detection energy ``-F^o = -F^c + w * (-F^r)`` per image (eqs. 12-14).

    Higher = keep the image on the student. Images with no counted box get ``-inf`` (go to the
    teacher) unless ``empty=`` says otherwise. See :class:`DetectionScorer` for the options.

    Examples
    --------
    >>> img = {"boxes": [[0, 0, 8, 8]], "labels": [1], "scores": [0.2], "logits": [[0.0, 1.0]]}
    >>> detection_energy([img])            # the only box scores below 0.3: no box counts
    array([-inf])
    >>> detection_energy([img], empty="fallback").round(4)
    array([1.3133])
    """
    return DetectionScorer("energy", **options)(outputs)
