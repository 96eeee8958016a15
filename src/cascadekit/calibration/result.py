"""The result of every calibration: :class:`CalibrationResult`."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .._validation import (
    encode_threshold,
)

# --------------------------------------------------------------------------------------------
# result


@dataclass
class CalibrationResult:
    """A chosen threshold and the cascade it gives on the calibration data.

    Attributes
    ----------
    thresholds : tuple of float, length N-1
        Threshold of every non-final stage (one for 2 stages). An input stays at stage ``k``
        when its score is ``>= thresholds[k]``; ``inf`` sends everything on. A bare float is
        accepted when constructing and stored as a 1-tuple.
    teacher_share : float
        Share of calibration inputs answered by the last stage.
    relative_cost : float
        Mean cost per calibration input divided by the cost of the last stage.
    accuracy : float
        Cascade accuracy on the calibration data; when ``label_free``, the *agreement* with the
        last stage (the share of inputs answered as the last stage answers them), also given
        as :attr:`agreement`. :meth:`to_dict` then names it ``agreement``.
    method : str
        How the threshold was chosen (``"teacher_share"``, ``"accuracy"``, ``"agreement"``
        (label-free), ``"cost"``,
        ``"trinomial"``, ``"betting"``, ``"binomial"``, ``"hb"``).
    epsilon, delta : float, optional
        Guarantee: the population accuracy drop against the last stage is ``<= epsilon`` with
        probability ``>= 1 - delta``.
    n_calibration : int, optional
        Number of calibration samples.
    grid : tuple of float, optional
        Guarantee: the thresholds tested, in testing order (safest first, ``inf`` excluded). For
        N stages, the score-quantile levels of the path.
    p_values : tuple of float, optional
        Guarantee: the p-value of every grid point, in testing order.
    n_tested : int, optional
        Guarantee: how many grid points fixed-sequence testing looked at (it stops at the first
        p-value above ``delta``).
    n_certified : int, optional
        Guarantee: how many grid points were certified (0 means ``threshold = inf``).
    label_free : bool
        True when correctness is agreement with the last stage rather than with labels.
    teacher_accuracy : float, optional
        Accuracy of the last stage alone on the calibration data (1.0 by definition when
        label-free, so :meth:`to_dict` leaves it out then).
    numerical_margin : float, optional
        Distance from the finite thresholds to the nearest calibration score (the smallest over
        stages): thresholds are placed midway between blocks of distinct scores, so rounding
        noise below this margin cannot change a routing decision on the calibration data.
        None when every threshold is infinite.
    """

    thresholds: tuple[float, ...]
    teacher_share: float
    relative_cost: float
    accuracy: float
    method: str
    epsilon: float | None = None
    delta: float | None = None
    n_calibration: int | None = None
    grid: tuple[float, ...] | None = None
    p_values: tuple[float, ...] | None = None
    n_tested: int | None = None
    n_certified: int | None = None
    label_free: bool = False
    teacher_accuracy: float | None = None
    numerical_margin: float | None = None

    def __post_init__(self) -> None:
        raw = self.thresholds
        seq = raw if isinstance(raw, (tuple, list, np.ndarray)) else (raw,)
        self.thresholds = tuple(float(t) for t in np.ravel(np.asarray(seq, dtype=np.float64)))

    @property
    def accuracy_drop(self) -> float | None:
        """Calibration accuracy of the last stage minus that of the cascade.

        None when unknown, and when ``label_free`` (see :attr:`disagreement`).
        """
        if self.teacher_accuracy is None or self.label_free:
            return None
        return self.teacher_accuracy - self.accuracy

    @property
    def agreement(self) -> float | None:
        """Label-free: share of calibration inputs answered as the last stage answers them."""
        return self.accuracy if self.label_free else None

    @property
    def disagreement(self) -> float | None:
        """Label-free: ``1 - agreement``, which bounds the accuracy drop from above."""
        return 1.0 - self.accuracy if self.label_free else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: infinite thresholds become ``None``, tuples become lists.

        ``measured_against`` says what correctness means: ``"labels"``, or ``"agreement with
        the last stage"`` when label-free; then ``accuracy``, ``teacher_accuracy`` and
        ``accuracy_drop`` are replaced by ``agreement`` and ``disagreement``.

        Examples
        --------
        >>> r = CalibrationResult(float("inf"), 1.0, 1.25, 0.9, "binomial")
        >>> r.to_dict()["thresholds"]
        [None]
        >>> d = CalibrationResult(0.5, 0.2, 0.4, 0.97, "teacher_share", label_free=True,
        ...                       teacher_accuracy=1.0).to_dict()
        >>> d["measured_against"], d["agreement"], "accuracy" in d, "teacher_accuracy" in d
        ('agreement with the last stage', 0.97, False, False)
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            out[f.name] = _jsonable(getattr(self, f.name))
        out["accuracy_drop"] = _jsonable(self.accuracy_drop)
        if self.label_free:
            for key in ("accuracy", "teacher_accuracy", "accuracy_drop"):
                del out[key]
            out["agreement"] = _jsonable(self.agreement)
            out["disagreement"] = _jsonable(self.disagreement)
        out["measured_against"] = "agreement with the last stage" if self.label_free else "labels"
        return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, bool | str) or v is None:
        return v
    if isinstance(v, int | np.integer):
        return int(v)
    f = float(v)
    if math.isnan(f):
        return None
    return encode_threshold(f)  # +inf -> None, -inf -> "-inf", as in router files
