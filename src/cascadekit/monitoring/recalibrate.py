"""Reviewable recalibration from the audit log, and an optional bounded online update.

:func:`propose_thresholds` runs the label-free Learn-then-Test of
:func:`cascadekit.calibration.guaranteed_threshold_label_free` on the logged audit sample (a
uniform random sample of traffic with the student's and the teacher's answers) and reports the
change: old and new threshold, the teacher share each gives on the logged traffic, and the
audited disagreement (an upper bound on the accuracy drop) with its confidence bound. Nothing is
applied: ``cascadekit recalibrate ... --apply URL`` sends the new threshold through the
server's admin endpoint, which authenticates and audits the change.

:class:`AdaptiveThreshold` is the automatic alternative (off unless used): adaptive conformal
inference (Gibbs & Candes 2021) on the deferral indicator. It holds the long-run teacher share
at a budget on any sequence of inputs, but gives no accuracy guarantee; the threshold never
leaves ``[min_threshold, max_threshold]``.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> s = rng.uniform(size=6000)
>>> teacher = rng.integers(0, 10, size=6000)
>>> student = np.where(rng.uniform(size=6000) < 0.6 + 0.4 * s, teacher, (teacher + 1) % 10)
>>> p = propose_thresholds(s, student, teacher, old_threshold=0.5, epsilon=0.05, delta=0.1)
>>> p.new_threshold > p.old_threshold, p.new_drop.upper <= 0.05 + 1e-3
(True, True)
"""

from __future__ import annotations

import json
import math
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import as_scores, check_open_unit, encode_threshold
from ..calibration import (
    CalibrationResult,
    guaranteed_threshold_label_free,
    min_calibration_size,
)
from ..curves import threshold_grid
from ..errors import AdminRequestError, MonitorLogError, ParameterError
from .log import audit_sample, read_log
from .statistics import DropBound, disagreement_bound

__all__ = [
    "AdaptiveThreshold",
    "Proposal",
    "apply_thresholds",
    "propose_from_log",
    "propose_thresholds",
]


@dataclass
class Proposal:
    """A proposed threshold change, for review.

    Attributes
    ----------
    old_threshold, new_threshold : float
        The threshold in use and the proposed one (``inf``: all to the teacher).
    epsilon, delta : float
        The guarantee: with probability ``>= 1 - delta``, the population share of inputs kept
        by the student and answered differently from the teacher (hence the accuracy drop) is
        ``<= epsilon`` at ``new_threshold``.
    n_audits : int
        Audit-sample size the guarantee was computed on.
    needed : int
        Fewest audits that could certify anything at this ``epsilon``, ``delta``.
    old_teacher_share, new_teacher_share : float
        Teacher share each threshold gives on the logged traffic (on the audit sample when no
        routed scores were given).
    old_drop, new_drop : DropBound
        Audited disagreement and its upper bound at each threshold. The new threshold's bound
        is computed on the data that chose it (optimistic); its guarantee is ``epsilon``.
    calibration : CalibrationResult
        The full result of the label-free Learn-then-Test.
    """

    old_threshold: float
    new_threshold: float
    epsilon: float
    delta: float
    n_audits: int
    needed: int
    old_teacher_share: float
    new_teacher_share: float
    old_drop: DropBound
    new_drop: DropBound
    calibration: CalibrationResult

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (infinite thresholds as in router files)."""
        return {
            "old_threshold": encode_threshold(self.old_threshold),
            "new_threshold": encode_threshold(self.new_threshold),
            "epsilon": self.epsilon,
            "delta": self.delta,
            "n_audits": self.n_audits,
            "needed": self.needed,
            "old_teacher_share": self.old_teacher_share,
            "new_teacher_share": self.new_teacher_share,
            "old_disagreement": self.old_drop.disagreement,
            "old_disagreement_upper": self.old_drop.upper,
            "new_disagreement": self.new_drop.disagreement,
            "new_disagreement_upper": self.new_drop.upper,
        }


def propose_thresholds(
    scores: ArrayLike,
    student_predictions: ArrayLike,
    teacher_predictions: ArrayLike,
    old_threshold: float,
    epsilon: float,
    delta: float,
    *,
    route_scores: ArrayLike | None = None,
    n_thresholds: int = 100,
) -> Proposal:
    """Propose a threshold with the label-free guarantee from an audit sample.

    Parameters
    ----------
    scores, student_predictions, teacher_predictions : array-like of shape (n,)
        The audit sample: student scores and both stages' answers (class indices).
    old_threshold : float
        The threshold in use.
    epsilon, delta : float in (0, 1)
        Certify a drop of at most ``epsilon`` with probability ``1 - delta``.
    route_scores : array-like, optional
        Scores of all logged traffic: the shares are measured on them and the threshold grid
        is :func:`~cascadekit.curves.threshold_grid` of them (the grid then uses no audit
        outcome, as Learn-then-Test wants).
    n_thresholds : int, default=100

    Returns
    -------
    Proposal

    Raises
    ------
    InsufficientDataError
        When nothing is certified and the sample is smaller than
        :func:`~cascadekit.calibration.min_calibration_size` (``needed`` holds it).
    ParameterError
        If ``epsilon`` or ``delta`` is out of range or ``old_threshold`` is NaN.
    """
    eps = check_open_unit("epsilon", epsilon)
    dlt = check_open_unit("delta", delta)
    old = float(old_threshold)
    if math.isnan(old):
        raise ParameterError("Expected old_threshold to be a number or +-inf; got NaN.")
    s = as_scores(scores)
    traffic = s if route_scores is None else as_scores(route_scores, name="route_scores")
    grid = None if route_scores is None else threshold_grid(traffic, n_thresholds)
    res = guaranteed_threshold_label_free(
        s, student_predictions, teacher_predictions, eps, dlt, grid=grid, n_thresholds=n_thresholds
    )
    new = res.thresholds[0]
    return Proposal(
        old_threshold=old,
        new_threshold=new,
        epsilon=eps,
        delta=dlt,
        n_audits=int(s.shape[0]),
        needed=min_calibration_size(eps, dlt, "binomial"),
        old_teacher_share=float(np.mean(traffic < old)),
        new_teacher_share=float(np.mean(traffic < new)),
        old_drop=disagreement_bound(s, student_predictions, teacher_predictions, old, dlt),
        new_drop=disagreement_bound(s, student_predictions, teacher_predictions, new, dlt),
        calibration=res,
    )


def propose_from_log(
    path: str | os.PathLike[str],
    old_threshold: float,
    epsilon: float,
    delta: float,
    *,
    model: str | None = None,
    n_thresholds: int = 100,
) -> tuple[str, Proposal]:
    """:func:`propose_thresholds` on a monitoring log (and its rotated files).

    Parameters
    ----------
    path : path-like
        The log (:class:`~cascadekit.monitoring.MonitorLog`).
    old_threshold, epsilon, delta, n_thresholds
        As in :func:`propose_thresholds`.
    model : str, optional
        The model whose records to use; required when the log holds several.

    Returns
    -------
    (str, Proposal)
        The model name and the proposal.

    Raises
    ------
    MonitorLogError
        If the log is missing, malformed, holds no record of ``model``, several models and no
        ``model`` was named, or no audit at all.
    """
    records = list(read_log(path, model=model))
    models = sorted({str(r.get("model")) for r in records})
    if not records:
        which = f"model {model!r}" if model is not None else "any model"
        raise MonitorLogError(f"The log {str(path)!r} holds no record of {which}.")
    if len(models) > 1:
        raise MonitorLogError(
            f"The log {str(path)!r} holds several models ({', '.join(models)}); name one with "
            "model= (--model)."
        )
    s, ps, pt, route = audit_sample(records)
    if s.shape[0] == 0:
        raise MonitorLogError(
            f"The log {str(path)!r} holds no audit record for model {models[0]!r}: recalibration "
            "needs the shadow-audit sample. Set monitoring.audit_rate > 0 on the server."
        )
    proposal = propose_thresholds(
        s,
        ps,
        pt,
        old_threshold,
        epsilon,
        delta,
        route_scores=route if route.shape[0] else None,
        n_thresholds=n_thresholds,
    )
    return models[0], proposal


def apply_thresholds(
    url: str, model: str, thresholds: list[float], token: str | None, *, timeout: float = 10.0
) -> dict[str, Any]:
    """Set a served model's thresholds through the server's admin API (which audits the change).

    Sends ``PUT {url}/admin/models/{model}/thresholds`` with ``Authorization: Bearer token``.

    Returns
    -------
    dict
        The server's answer (``thresholds`` and ``previous``).

    Raises
    ------
    AdminRequestError
        Without a token, when the server is unreachable, or when it refuses the change (the
        server's message is included).
    """
    if not token:
        raise AdminRequestError(
            "Applying thresholds needs the server's admin token: set CASCADEKIT_ADMIN_TOKEN."
        )
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise AdminRequestError(f"Expected a server URL like http://host:8000; got {url!r}.")
    target = f"{base}/admin/models/{urllib.parse.quote(model, safe='')}/thresholds"
    body = json.dumps({"thresholds": [encode_threshold(t) for t in thresholds]}).encode()
    req = urllib.request.Request(
        target,
        data=body,
        method="PUT",
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc
    except urllib.error.HTTPError as exc:
        try:
            msg = json.loads(exc.read()).get("error", "")
        except (ValueError, AttributeError):
            msg = ""
        raise AdminRequestError(
            f"The server refused the new thresholds ({exc.code}): {msg or exc.reason}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise AdminRequestError(f"Cannot reach {target}: {exc}. Is the server running?") from exc


class AdaptiveThreshold:
    """Hold the teacher share at a budget with a bounded online update (Gibbs & Candes 2021).

    The threshold is the ``level_t`` quantile of the reference scores; after each input,
    ``level_{t+1} = level_t + gamma * (budget - deferred_t)`` (``deferred_t`` = 1 when the
    input went to the teacher), so the long-run deferral rate tends to ``budget`` on any
    sequence, as long as the threshold is not held at a bound. It watches cost, not accuracy:
    keep ``min_threshold`` at a guaranteed threshold if the drop must stay certified.

    Parameters
    ----------
    reference_scores : array-like
        Student scores of the calibration data.
    budget : float in (0, 1)
        Target teacher share.
    gamma : float, default=0.005
        Step size (larger reacts faster and jitters more).
    min_threshold, max_threshold : float, default=-inf, inf
        Bounds of the threshold.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = AdaptiveThreshold(rng.normal(size=5000), budget=0.2)
    >>> s = rng.normal(-1.0, 1, size=20_000)       # shifted: a fixed threshold sends ~50%
    >>> deferred = []
    >>> for v in s:
    ...     d = v < a.threshold
    ...     deferred.append(d)
    ...     _ = a.update([d])
    >>> round(float(np.mean(deferred[5000:])), 2)
    0.2
    """

    def __init__(
        self,
        reference_scores: ArrayLike,
        budget: float,
        *,
        gamma: float = 0.005,
        min_threshold: float = -math.inf,
        max_threshold: float = math.inf,
    ) -> None:
        self._ref: NDArray[np.float64] = np.sort(as_scores(reference_scores, "reference_scores"))
        self.budget = check_open_unit("budget", budget)
        g = float(gamma)
        if not (0 < g < 1):
            raise ParameterError(f"Expected gamma strictly between 0 and 1; got {gamma!r}.")
        self.gamma = g
        lo, hi = float(min_threshold), float(max_threshold)
        if math.isnan(lo) or math.isnan(hi) or lo > hi:
            raise ParameterError(
                f"Expected min_threshold <= max_threshold; got {min_threshold!r} and "
                f"{max_threshold!r}."
            )
        self.min_threshold, self.max_threshold = lo, hi
        self.level = self.budget

    @property
    def threshold(self) -> float:
        """The current threshold: the ``level`` quantile of the reference, within the bounds."""
        n = self._ref.shape[0]
        if self.level <= 0:
            t = -math.inf
        elif self.level >= 1:
            t = math.inf
        else:
            t = float(self._ref[min(int(self.level * n), n - 1)])
        return min(max(t, self.min_threshold), self.max_threshold)

    def update(self, deferred: ArrayLike) -> float:
        """Step once per input (in order); return the new threshold."""
        d = np.asarray(deferred, dtype=bool).ravel()
        for v in d.tolist():
            # clipped to [0, 1]: no wind-up while the threshold sits at a bound
            self.level = min(max(self.level + self.gamma * (self.budget - float(v)), 0.0), 1.0)
        return self.threshold
