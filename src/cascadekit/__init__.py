"""cascadekit: adaptive inference with model cascades.

A cheap *student* answers the inputs it is confident about; the rest go on to a larger
*teacher* (or through N stages). Routing scores follow one direction: higher = more confident =
keep the input on this stage; an input stays at stage k when ``score >= threshold_k``.

Examples
--------
>>> import numpy as np, cascadekit as ck
>>> student = np.array([[5.0, 0.0], [0.0, 1.0]])
>>> c = ck.Cascade.from_outputs([student, np.eye(2)], costs=[1, 4], thresholds=[2.0])
>>> c.route().stage, c.route().predictions
(array([0, 1], dtype=int32), array([0, 1]))
"""

from __future__ import annotations

import typing as _typing

from . import adapters, calibration, curves, scores, stats
from ._validation import binary_logits
from .calibration import CalibrationResult
from .cascade import Cascade, Stage, assign_stages
from .curves import Curve
from .errors import CascadeError
from .router import Router
from .routing import PredictResult, RouteResult, RoutingState

if _typing.TYPE_CHECKING:  # imported on first use: it needs scikit-learn
    from .estimators import CascadeClassifier

__version__ = "0.1.0"

__all__ = [
    "CalibrationResult",
    "Cascade",
    "CascadeClassifier",
    "CascadeError",
    "Curve",
    "PredictResult",
    "RouteResult",
    "Router",
    "RoutingState",
    "Stage",
    "__version__",
    "adapters",
    "assign_stages",
    "binary_logits",
    "calibration",
    "curves",
    "scores",
    "stats",
]


def __getattr__(name: str) -> _typing.Any:
    """``cascadekit.CascadeClassifier`` is imported on first use (it needs scikit-learn)."""
    if name == "CascadeClassifier":
        from .estimators import CascadeClassifier

        return CascadeClassifier
    raise AttributeError(f"module 'cascadekit' has no attribute {name!r}")
