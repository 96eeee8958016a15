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

from . import adapters, calibration, curves, scores, stats
from ._validation import binary_logits
from .cascade import Cascade, Stage, assign_stages
from .errors import CascadeError
from .routing import PredictResult, RouteResult

__version__ = "0.1.0"

__all__ = [
    "Cascade",
    "CascadeError",
    "PredictResult",
    "RouteResult",
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
