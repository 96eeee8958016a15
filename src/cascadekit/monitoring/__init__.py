"""Monitoring a cascade in production: drift alarms, shadow audits, reviewable recalibration.

* :class:`CascadeMonitor` watches routed inputs on rolling windows: the teacher share against
  the share expected at calibration, the student's scores against the calibration scores (with a
  stated false-alarm rate per 100k inputs), and, from shadow audits, a label-free upper bound on
  the accuracy drop against the teacher.
* :class:`MonitorLog` writes what recalibration needs (scores, stages, audit outcomes; never raw
  inputs unless asked) to a rotating JSONL file; :func:`read_log` reads it back.
* :func:`propose_thresholds` proposes a new threshold with the same label-free guarantee from the
  logged audit sample (``cascadekit recalibrate``).
* :class:`AdaptiveThreshold` holds a teacher-share budget with a bounded online update (off
  unless used).

The server wires these in per served model (``monitoring:`` in its configuration).

Examples
--------
>>> import numpy as np
>>> from cascadekit.monitoring import CascadeMonitor
>>> mon = CascadeMonitor(0.0, reference_scores=np.linspace(-3, 3, 1000), window=100)
>>> mon.expected_teacher_share
0.5
"""

from __future__ import annotations

from .log import MonitorLog, audit_sample, read_log
from .monitor import Alarm, CascadeMonitor
from .recalibrate import AdaptiveThreshold, Proposal, propose_thresholds
from .statistics import (
    DropBound,
    WindowTest,
    disagreement_bound,
    score_drift_test,
    share_test,
    window_level,
)

__all__ = [
    "AdaptiveThreshold",
    "Alarm",
    "CascadeMonitor",
    "DropBound",
    "MonitorLog",
    "Proposal",
    "WindowTest",
    "audit_sample",
    "disagreement_bound",
    "propose_thresholds",
    "read_log",
    "score_drift_test",
    "share_test",
    "window_level",
]
