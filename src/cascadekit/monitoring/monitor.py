"""The cascade monitor over arrays: rolling-window drift tests and the audit-based drop estimate.

Stream per-input routing results (the student's score and the stage that answered) through
:meth:`CascadeMonitor.update`; every ``window`` inputs the monitor tests the window's teacher
share against the share expected at calibration and the window's scores against the calibration
scores, and returns the alarms. Shadow audits (a random ``audit_rate`` of inputs whose teacher
answer is known, see :meth:`CascadeMonitor.audit_mask`) go through
:meth:`CascadeMonitor.add_audits` and give a label-free bound on the accuracy drop
(:meth:`CascadeMonitor.drop_estimate`).

Examples
--------
>>> import numpy as np
>>> from cascadekit.monitoring import CascadeMonitor
>>> rng = np.random.default_rng(0)
>>> reference = rng.normal(size=10_000)               # calibration scores
>>> mon = CascadeMonitor(threshold=-1.0, reference_scores=reference, window=1000)
>>> s = rng.normal(size=5000)                         # unshifted traffic
>>> mon.update(s, (s < -1.0).astype(int))
[]
>>> s = rng.normal(-0.5, 1, size=2000)                # the scores drift down
>>> sorted({a.kind for a in mon.update(s, (s < -1.0).astype(int))})
['score_drift', 'teacher_share']
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import as_scores, check_open_unit, check_unit, encode_threshold
from ..errors import InputShapeError, ParameterError, SampleCountError
from ..routing import RouteResult
from .statistics import DropBound, disagreement_bound, score_drift_test, share_test, window_level

__all__ = ["Alarm", "CascadeMonitor"]

#: Alarm kinds.
ALARM_KINDS = ("teacher_share", "score_drift")


@dataclass(frozen=True)
class Alarm:
    """A window whose test rejected "no change against calibration".

    Attributes
    ----------
    kind : {"teacher_share", "score_drift"}
    window : int
        Index of the window (0 = the first tested window).
    requests : int
        Inputs seen (since the monitor started) at the end of the window.
    statistic : float
        The window's teacher share, or its KS distance to the reference scores.
    expected : float or None
        The teacher share expected at calibration (share alarms).
    p_value, level : float
        The test's p-value and the per-window level it was compared with.
    """

    kind: str
    window: int
    requests: int
    statistic: float
    expected: float | None
    p_value: float
    level: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return asdict(self)


def _threshold(value: float) -> float:
    t = float(value)
    if math.isnan(t):
        raise ParameterError(
            "Expected threshold to be a number, +inf (all to the teacher) or -inf (all on the "
            "student); got NaN."
        )
    return t


class CascadeMonitor:
    """Watch a cascade's operating point on rolling windows, without labels.

    Parameters
    ----------
    threshold : float
        The student's threshold (an input stays on the student when ``score >= threshold``).
    reference_scores : array-like of shape (n_reference,), optional
        Student scores of the calibration data. The expected teacher share is their share below
        ``threshold``; both tests account for the reference's own sampling noise (see
        ``reference_level``). Without it, ``expected_teacher_share`` is used if given (binomial
        test, share taken as exact) and the first ``reference_size`` inputs become the score
        reference (so drift is then measured against the start of the stream).
    expected_teacher_share : float, optional
        The teacher share measured at calibration, when no reference scores are at hand.
    window : int, default=1000
        Inputs per tumbling window. A shift that starts at any time fills a whole window within
        ``2 * window - 1`` inputs.
    false_alarms_per_100k : float, default=0.5
        Expected false alarms per 100,000 inputs of unshifted traffic, split over the windows
        and the two tests (see :func:`~cascadekit.monitoring.statistics.window_level`).
    audit_rate : float in [0, 1], default=0.01
        Share of inputs in the audit sample (:meth:`audit_mask`).
    audit_window : int, default=50000
        Most recent audits kept for the drop estimate.
    epsilon : float in (0, 1), optional
        The accuracy drop the threshold was calibrated for; :meth:`status` then says whether
        the audits still certify it.
    delta : float in (0, 1), default=0.05
        Level of the drop's upper confidence bound.
    n_stages : int, default=2
        Stages of the cascade; the last one is the teacher.
    reference_size : int, default=5000
        Inputs taken as the reference when ``reference_scores`` is not given.
    reference_level : float in (0, 1), default=0.01
        The reference sample is drawn once; with probability at least ``1 - reference_level``
        it is close enough to its population that the stated false-alarm rate holds for the
        whole stream (split over the two tests, see
        :func:`~cascadekit.monitoring.statistics.share_test` and
        :func:`~cascadekit.monitoring.statistics.score_drift_test`). Larger references lose
        less sensitivity to this margin.
    random_state : int or numpy Generator, optional
        Seeds :meth:`audit_mask`.

    Attributes
    ----------
    n_seen_ : int
        Inputs seen.
    n_windows_ : int
        Windows tested.
    alarms_ : list of Alarm
        Every alarm raised (most recent last; the last 1000 are kept).
    """

    def __init__(
        self,
        threshold: float,
        *,
        reference_scores: ArrayLike | None = None,
        expected_teacher_share: float | None = None,
        window: int = 1000,
        false_alarms_per_100k: float = 0.5,
        audit_rate: float = 0.01,
        audit_window: int = 50_000,
        epsilon: float | None = None,
        delta: float = 0.05,
        n_stages: int = 2,
        reference_size: int = 5000,
        reference_level: float = 0.01,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        self.window = int(window)
        self.level = window_level(false_alarms_per_100k, window, n_tests=2)
        self.false_alarms_per_100k = float(false_alarms_per_100k)
        self.audit_rate = check_unit("audit_rate", audit_rate)
        if int(audit_window) != audit_window or audit_window < 1:
            raise ParameterError(
                f"Expected audit_window to be a positive integer; got {audit_window!r}."
            )
        self.epsilon = None if epsilon is None else check_open_unit("epsilon", epsilon)
        self.delta = check_open_unit("delta", delta)
        if int(n_stages) != n_stages or n_stages < 2:
            raise ParameterError(f"Expected n_stages >= 2; got {n_stages!r}.")
        self.n_stages = int(n_stages)
        if int(reference_size) != reference_size or reference_size < 1:
            raise ParameterError(
                f"Expected reference_size to be a positive integer; got {reference_size!r}."
            )
        self.reference_size = int(reference_size)
        self.reference_level = check_open_unit("reference_level", reference_level)
        self._reference: NDArray[np.float64] | None = None
        self._expected: float | None = None
        if expected_teacher_share is not None:
            self._expected = check_unit("expected_teacher_share", expected_teacher_share)
        if reference_scores is not None:
            self._reference = np.sort(as_scores(reference_scores, name="reference_scores"))
        self._warmup: list[NDArray[np.floating[Any]]] = []
        self._rng = np.random.default_rng(random_state)
        self.threshold = _threshold(threshold)
        self._buf_scores: list[NDArray[np.floating[Any]]] = []
        self._buf_stage: list[NDArray[np.int64]] = []
        self._buffered = 0
        self._audits: deque[tuple[float, int, int]] = deque(maxlen=int(audit_window))
        self.n_seen_ = 0
        self._consumed = 0  # inputs placed in the reference or a window so far
        self.n_windows_ = 0
        self.n_teacher_ = 0
        self.n_audits_ = 0
        self.n_shadow_ = 0
        self.n_audits_dropped_ = 0
        self.alarm_counts_ = dict.fromkeys(ALARM_KINDS, 0)
        self.alarms_: deque[Alarm] = deque(maxlen=1000)
        self.last_window_: dict[str, Any] | None = None

    # ------------------------------------------------------------------ configuration

    @property
    def expected_teacher_share(self) -> float | None:
        """The teacher share expected at the current threshold (None before a reference)."""
        if self._reference is not None:
            n_below = np.searchsorted(self._reference, self.threshold, side="left")
            return float(n_below / self._reference.shape[0])
        return self._expected

    @property
    def reference_scores(self) -> NDArray[np.float64] | None:
        """The sorted reference scores (None until there is a reference)."""
        return self._reference

    @property
    def reference_ready(self) -> bool:
        """True once there is a score reference to test against."""
        return self._reference is not None

    def set_threshold(self, threshold: float) -> None:
        """Use a new threshold from now on (the expected share follows when there are reference
        scores; a share given as a number stays, so give reference scores to change
        thresholds)."""
        self.threshold = _threshold(threshold)

    # ------------------------------------------------------------------ streaming

    def update(self, scores: ArrayLike, stage: ArrayLike) -> list[Alarm]:
        """Add routed inputs; test every window completed; return the alarms raised.

        Parameters
        ----------
        scores : array-like of shape (n,)
            The student's routing score of each input (higher = keep).
        stage : array-like of shape (n,)
            The stage that answered each input (``n_stages - 1`` = the teacher).

        Returns
        -------
        list of Alarm
            Alarms of the windows completed by these inputs (often empty).

        Raises
        ------
        InputShapeError, NonFiniteError
            If ``scores`` is not a 1-D array of finite numbers or ``stage`` holds stages
            outside ``[0, n_stages)``.
        SampleCountError
            If ``scores`` and ``stage`` differ in length.
        """
        s = as_scores(scores)
        st = np.asarray(stage)
        if st.ndim != 1 or not np.issubdtype(st.dtype, np.integer):
            raise InputShapeError(
                f"Expected stage as a 1-D array of integer stage indices; got shape {st.shape} "
                f"and dtype {st.dtype}. Pass RouteResult.stage."
            )
        if st.shape[0] != s.shape[0]:
            raise SampleCountError(
                f"Expected one stage per score; got {s.shape[0]} scores and {st.shape[0]} stages."
            )
        if st.shape[0] and (st.min() < 0 or st.max() >= self.n_stages):
            raise InputShapeError(
                f"Expected stages in [0, {self.n_stages - 1}] for a {self.n_stages}-stage "
                f"cascade; got values from {st.min()} to {st.max()}. Set n_stages= to match."
            )
        st = st.astype(np.int64, copy=False)
        self.n_seen_ += int(s.shape[0])
        self.n_teacher_ += int(np.count_nonzero(st == self.n_stages - 1))
        if self._reference is None:
            s, st = self._fill_reference(s, st)
        alarms: list[Alarm] = []
        while s.shape[0]:
            take = min(self.window - self._buffered, s.shape[0])
            self._buf_scores.append(s[:take])
            self._buf_stage.append(st[:take])
            self._buffered += take
            self._consumed += take
            s, st = s[take:], st[take:]
            if self._buffered == self.window:
                alarms.extend(self._test_window())
        return alarms

    def observe(self, result: RouteResult) -> list[Alarm]:
        """:meth:`update` with the first-stage scores and stages of a routing result.

        Examples
        --------
        >>> import numpy as np, cascadekit as ck
        >>> c = ck.Cascade.from_outputs([np.array([[3.0, 0.0], [0.1, 0.0]]), np.eye(2)],
        ...                             thresholds=[1.0], score="margin")
        >>> mon = CascadeMonitor(1.0, reference_scores=[3.0, 0.1], window=2)
        >>> mon.observe(c.route()), mon.n_teacher_
        ([], 1)
        """
        if result.n_stages != self.n_stages:
            raise ParameterError(
                f"Expected a {self.n_stages}-stage result; got {result.n_stages} stages. "
                "Create the monitor with n_stages= matching the cascade."
            )
        return self.update(result.score, result.stage)

    def _fill_reference(
        self, s: NDArray[np.floating[Any]], st: NDArray[np.int64]
    ) -> tuple[NDArray[np.floating[Any]], NDArray[np.int64]]:
        """Without reference scores, the first ``reference_size`` inputs become the reference."""
        have = sum(a.shape[0] for a in self._warmup)
        take = min(self.reference_size - have, s.shape[0])
        self._warmup.append(s[:take])
        self._consumed += take
        if have + take == self.reference_size:
            self._reference = np.sort(np.concatenate(self._warmup))
            self._warmup = []
        return s[take:], st[take:]

    def _test_window(self) -> list[Alarm]:
        s = np.concatenate(self._buf_scores)
        st = np.concatenate(self._buf_stage)
        self._buf_scores, self._buf_stage, self._buffered = [], [], 0
        assert self._reference is not None
        n_teacher = int(np.count_nonzero(st == self.n_stages - 1))
        expected = self.expected_teacher_share
        assert expected is not None
        n_ref = None if self._expected is not None else int(self._reference.shape[0])
        half = self.reference_level / 2
        share = share_test(n_teacher, s.shape[0], expected, n_ref, reference_level=half)
        drift = score_drift_test(s, self._reference, reference_level=half)
        idx = self.n_windows_
        self.n_windows_ += 1
        out: list[Alarm] = []
        for kind, res in (("teacher_share", share), ("score_drift", drift)):
            if res.p_value <= self.level:
                a = Alarm(
                    kind, idx, self._consumed, res.statistic, res.expected, res.p_value, self.level
                )
                out.append(a)
                self.alarms_.append(a)
                self.alarm_counts_[kind] += 1
        self.last_window_ = {
            "window": idx,
            "requests": self._consumed,
            "teacher_share": share.statistic,
            "expected_teacher_share": expected,
            "share_p_value": share.p_value,
            "score_ks": drift.statistic,
            "score_p_value": drift.p_value,
            "score_mean": float(np.mean(s)),
            "reference_score_mean": float(np.mean(self._reference)),
        }
        return out

    # ------------------------------------------------------------------ audits

    def audit_mask(self, n: int) -> NDArray[np.bool_]:
        """Which of ``n`` inputs join the audit sample (each independently with ``audit_rate``).

        Inputs of the sample that the student kept need a shadow teacher call; those the
        teacher answered cost nothing more. Pass both kinds to :meth:`add_audits`.

        Examples
        --------
        >>> mask = CascadeMonitor(0.0, audit_rate=0.25, random_state=0).audit_mask(10_000)
        >>> round(float(mask.mean()), 2)
        0.25
        """
        if int(n) != n or n < 0:
            raise ParameterError(f"Expected n to be a non-negative integer; got {n!r}.")
        out: NDArray[np.bool_] = self._rng.random(int(n)) < self.audit_rate
        return out

    def add_audits(
        self,
        scores: ArrayLike,
        student_predictions: ArrayLike,
        teacher_predictions: ArrayLike,
        *,
        shadow: int | None = None,
    ) -> None:
        """Add audit-sample inputs whose student and teacher answers are both known.

        Parameters
        ----------
        scores : array-like of shape (n,)
            Student scores.
        student_predictions, teacher_predictions : array-like of shape (n,)
            Class indices.
        shadow : int, optional
            How many of these needed a shadow teacher call (for the audit cost); defaults to
            the inputs with ``score >= threshold``.

        Raises
        ------
        InputShapeError, SampleCountError, LabelError
            On arrays of the wrong shape, length or type.
        """
        s = as_scores(scores) if np.asarray(scores).shape != (0,) else np.zeros(0)
        ps = np.asarray(student_predictions)
        pt = np.asarray(teacher_predictions)
        for name, a in (("student_predictions", ps), ("teacher_predictions", pt)):
            if a.shape != s.shape:
                raise SampleCountError(
                    f"Expected {name} of shape {s.shape} (one per score); got {a.shape}."
                )
            if a.size and not np.issubdtype(a.dtype, np.integer):
                raise InputShapeError(
                    f"Expected {name} to be integer class indices; got dtype {a.dtype}."
                )
        kept = int(np.count_nonzero(s >= self.threshold)) if shadow is None else int(shadow)
        self.n_shadow_ += kept
        self.n_audits_ += int(s.shape[0])
        for v, a, b in zip(s.tolist(), ps.tolist(), pt.tolist(), strict=True):
            self._audits.append((v, int(a), int(b)))

    def audit_dropped(self, n: int = 1) -> None:
        """Count audits dropped (under load) before the teacher answered them."""
        self.n_audits_dropped_ += int(n)

    @property
    def audit_cost(self) -> float:
        """Shadow teacher calls as a share of every teacher call (routing plus shadow)."""
        total = self.n_teacher_ + self.n_shadow_
        return self.n_shadow_ / total if total else 0.0

    def audit_arrays(self) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
        """The kept audits as arrays: scores, student predictions, teacher predictions."""
        if not self._audits:
            return np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        a = np.asarray(self._audits, dtype=np.float64)
        return a[:, 0], a[:, 1].astype(np.int64), a[:, 2].astype(np.int64)

    def drop_estimate(self) -> DropBound | None:
        """Label-free estimate and upper bound of the accuracy drop at the current threshold.

        The audit sample is a uniform random sample of traffic (each input joined it with
        probability ``audit_rate``, whatever its score), so the share of sample inputs kept by
        the student and answered differently from the teacher estimates the population share
        (the inverse-probability-weighted count of audited disagreements divided by the
        traffic). The bound is :func:`~cascadekit.monitoring.statistics.disagreement_bound`.
        None before any audit.
        """
        s, ps, pt = self.audit_arrays()
        if s.shape[0] == 0:
            return None
        return disagreement_bound(s, ps, pt, self.threshold, self.delta)

    # ------------------------------------------------------------------ reporting

    def status(self, *, with_bound: bool = True) -> dict[str, Any]:
        """Everything the monitor knows, as a JSON-friendly dict.

        ``with_bound=False`` skips the drop's confidence bound (a bisection over the audits).

        Examples
        --------
        >>> mon = CascadeMonitor(0.5, expected_teacher_share=0.3, epsilon=0.02)
        >>> doc = mon.status()
        >>> doc["threshold"], doc["expected_teacher_share"], doc["audits"]["guarantee"]
        (0.5, 0.3, None)
        """
        drop = self.drop_estimate() if with_bound else None
        guarantee: str | None = None
        if drop is not None and self.epsilon is not None:
            guarantee = "certified" if drop.upper <= self.epsilon else "not certified"
        t = self.threshold
        return {
            "threshold": encode_threshold(t),
            "requests": self.n_seen_,
            "teacher_share": self.n_teacher_ / self.n_seen_ if self.n_seen_ else None,
            "expected_teacher_share": self.expected_teacher_share,
            "reference_ready": self.reference_ready,
            "window": self.window,
            "windows_tested": self.n_windows_,
            "false_alarms_per_100k": self.false_alarms_per_100k,
            "window_level": self.level,
            "alarms": dict(self.alarm_counts_),
            "recent_alarms": [a.to_dict() for a in list(self.alarms_)[-10:]],
            "last_window": self.last_window_,
            "audits": {
                "rate": self.audit_rate,
                "sample": self.n_audits_,
                "kept": len(self._audits),
                "shadow_calls": self.n_shadow_,
                "dropped": self.n_audits_dropped_,
                "cost": self.audit_cost,
                "disagreement": None if drop is None else drop.disagreement,
                "disagreement_upper": None if drop is None else drop.upper,
                "delta": self.delta,
                "epsilon": self.epsilon,
                "guarantee": guarantee,
            },
        }
