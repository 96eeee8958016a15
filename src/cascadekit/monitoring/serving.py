"""Monitoring inside the cascade server: one :class:`CascadeMonitor` per served model, shadow
audits off the response path, Prometheus metrics, the JSON status and the rotating log.

The server calls :meth:`ServingMonitor.observe` once per request, after routing, with what the
request already computed (scores, stages, the first stage's and the final answers); everything
else happens here. Shadow audits: of the audit sample (each input with probability
``audit_rate``), inputs the teacher answered cost nothing more; the others are sent to the
teacher in a background task, **after** the response is computed, only while the teacher's
queue holds at most ``audit_max_queue`` inputs and fewer than ``audit_max_inflight`` audits
are running; otherwise they are dropped (and counted). So audits take the teacher only when it
is idle and are the first thing dropped under load.

Metrics (all prefixed ``cascadekit_monitor_``, label ``model``):

==================================  =========  ==========================================
name                                type       meaning
==================================  =========  ==========================================
``alarms_total``                    counter    alarms, label ``kind`` (teacher_share,
                                               score_drift)
``windows_total``                   counter    windows tested
``window_teacher_share``            gauge      teacher share of the last window
``expected_teacher_share``          gauge      share expected at calibration
``score_ks``                        gauge      KS distance of the last window's scores
``window_level``                    gauge      per-test level of a window
``audits_total``                    counter    audit-sample inputs, label ``outcome``
                                               (free, shadow, dropped, failed)
``audit_cost``                      gauge      shadow calls / all teacher calls
``disagreement``                    gauge      audited disagreement (bounds the drop)
``disagreement_upper``              gauge      its upper confidence bound (1 - delta)
``epsilon``                         gauge      the drop the threshold was calibrated for
==================================  =========  ==========================================

Examples
--------
>>> s = MonitorSettings.from_dict({"window": 500, "audit_rate": 0.05}, base=".", model="m")
>>> s.window, s.audit_rate, s.log
(500, 0.05, None)
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._optional import require
from .._validation import decode_threshold
from ..errors import CascadeError, DataNotFoundError, ParameterError
from .log import MonitorLog
from .monitor import CascadeMonitor
from .recalibrate import AdaptiveThreshold

__all__ = ["MonitorSettings", "ServingMonitor"]

log = logging.getLogger("cascadekit.monitoring")

_KEYS = (
    "window",
    "false_alarms_per_100k",
    "audit_rate",
    "audit_max_queue",
    "audit_max_inflight",
    "epsilon",
    "delta",
    "reference",
    "log",
    "log_max_mb",
    "log_backups",
    "log_inputs",
    "bound_interval_s",
    "adaptive",
    "random_state",
)


def load_reference(path: str | Path) -> NDArray[np.float64]:
    """Reference scores from a ``.npy`` file (1-D: the student's scores on calibration data)."""
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(
            f"Expected reference scores (.npy) at {str(p)!r}; nothing is there. Save the "
            "student's scores on the calibration data with numpy.save."
        )
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ParameterError(
            f"Cannot read reference scores from {str(p)!r}: {exc}. Expected a .npy array."
        ) from exc
    if not isinstance(arr, np.ndarray) or arr.ndim != 1:
        raise ParameterError(
            f"Expected a 1-D array of scores in {str(p)!r}; got "
            f"{getattr(arr, 'shape', type(arr).__name__)}."
        )
    out: NDArray[np.float64] = arr.astype(np.float64)
    return out


def _number(key: str, v: Any, *, integer: bool = False, lo: float = 0.0) -> Any:
    ok = not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v) and v >= lo
    if integer:
        ok = ok and float(v).is_integer()
    if not ok:
        what = "an integer" if integer else "a number"
        raise ParameterError(f"Expected monitoring.{key} to be {what} >= {lo:g}; got {v!r}.")
    return int(v) if integer else float(v)


def _adaptive(doc: Any) -> dict[str, float]:
    """The ``monitoring.adaptive`` mapping as MonitorSettings keyword arguments."""
    keys = ("budget", "gamma", "min_threshold", "max_threshold")
    if not isinstance(doc, dict) or "budget" not in doc or not set(doc) <= set(keys):
        raise ParameterError(
            "Expected monitoring.adaptive to be a mapping with budget (and optionally gamma, "
            f"min_threshold, max_threshold); got {doc!r}."
        )
    out: dict[str, float] = {}
    for key in ("budget", "gamma"):
        if key in doc:
            v = doc[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1:
                raise ParameterError(
                    f"Expected monitoring.adaptive.{key} strictly between 0 and 1; got {v!r}."
                )
            out[f"adaptive_{key}"] = float(v)
    for key in ("min_threshold", "max_threshold"):
        if key in doc:
            try:
                out[f"adaptive_{key}"] = decode_threshold(doc[key])
            except (CascadeError, TypeError, ValueError) as exc:
                raise ParameterError(
                    f'Expected monitoring.adaptive.{key} to be a number, "inf" or "-inf"; '
                    f"got {doc[key]!r}."
                ) from exc
    return out


@dataclass
class MonitorSettings:
    """Monitoring settings of a server (YAML: a top-level ``monitoring:`` mapping).

    Parameters
    ----------
    window, false_alarms_per_100k, audit_rate, epsilon, delta
        As in :class:`~cascadekit.monitoring.CascadeMonitor`.
    audit_max_queue : int, default=0
        Shadow audits go to the teacher only while its queue holds at most this many inputs.
    audit_max_inflight : int, default=4
        Most shadow audit calls running at once.
    references : mapping of model name to array, optional
        Reference (calibration) scores per model; models without one use their first 5000
        inputs.
    log : path, optional
        The rotating JSONL log (:class:`~cascadekit.monitoring.MonitorLog`); none by default.
    log_max_mb, log_backups, log_inputs
        Its rotation size, rotated files kept, and whether raw inputs are written.
    bound_interval_s : float, default=10.0
        Recompute the drop's confidence bound (for the gauges) at most this often.
    random_state : int, optional
        Seeds the audit sampling.
    adaptive_budget : float in (0, 1), optional
        The automatic mode, **off unless set** (YAML: ``adaptive: {budget: 0.25, gamma: 0.005,
        min_threshold: ..., max_threshold: ...}``): after every request that used the default
        threshold, :class:`~cascadekit.monitoring.AdaptiveThreshold` moves the student's
        default threshold to hold the long-run teacher share at this budget (starting at the
        budget's quantile of the reference scores), within ``[adaptive_min_threshold,
        adaptive_max_threshold]``. It holds cost, not accuracy: keep the minimum at a
        guaranteed threshold if the drop must stay certified.
    adaptive_gamma, adaptive_min_threshold, adaptive_max_threshold : float
        Its step size and bounds.
    """

    window: int = 1000
    false_alarms_per_100k: float = 0.5
    audit_rate: float = 0.01
    audit_max_queue: int = 0
    audit_max_inflight: int = 4
    epsilon: float | None = None
    delta: float = 0.05
    references: Mapping[str, ArrayLike] = field(default_factory=dict)
    log: Path | None = None
    log_max_mb: float = 50.0
    log_backups: int = 5
    log_inputs: bool = False
    bound_interval_s: float = 10.0
    random_state: int | None = None
    adaptive_budget: float | None = None
    adaptive_gamma: float = 0.005
    adaptive_min_threshold: float = -math.inf
    adaptive_max_threshold: float = math.inf

    @classmethod
    def from_dict(cls, doc: Any, base: str | Path, model: str) -> MonitorSettings:
        """Read the ``monitoring:`` mapping of a YAML config (paths relative to ``base``).

        Raises
        ------
        ParameterError
            On an unknown key or an invalid value (the message names ``monitoring.<key>``).
        DataNotFoundError
            If the reference file does not exist.
        """
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise ParameterError(
                f"Expected monitoring to be a mapping of settings; got {type(doc).__name__}."
            )
        unknown = sorted(set(doc) - set(_KEYS))
        if unknown:
            raise ParameterError(
                f"Unknown key(s) {', '.join(map(repr, unknown))} in monitoring; expected some "
                f"of {', '.join(_KEYS)}."
            )
        kw: dict[str, Any] = {}
        for key in ("window", "log_backups", "audit_max_inflight"):
            if key in doc:
                kw[key] = _number(key, doc[key], integer=True, lo=1)
        if "audit_max_queue" in doc:
            kw["audit_max_queue"] = _number("audit_max_queue", doc["audit_max_queue"], integer=True)
        for key in ("false_alarms_per_100k", "audit_rate", "epsilon", "delta", "log_max_mb"):
            if key in doc:
                kw[key] = _number(key, doc[key])
        if "bound_interval_s" in doc:
            kw["bound_interval_s"] = _number("bound_interval_s", doc["bound_interval_s"])
        if "random_state" in doc:
            kw["random_state"] = _number("random_state", doc["random_state"], integer=True)
        if "log_inputs" in doc:
            if not isinstance(doc["log_inputs"], bool):
                raise ParameterError(
                    "Expected monitoring.log_inputs to be true or false; got "
                    f"{doc['log_inputs']!r}."
                )
            kw["log_inputs"] = doc["log_inputs"]
        for key in ("reference", "log"):
            if key in doc and (not isinstance(doc[key], str) or not doc[key]):
                raise ParameterError(
                    f"Expected monitoring.{key} to be a file path; got {doc[key]!r}."
                )
        if "reference" in doc:
            kw["references"] = {model: load_reference(Path(base) / doc["reference"])}
        if "log" in doc:
            kw["log"] = Path(base) / doc["log"]
        if "adaptive" in doc:
            kw.update(_adaptive(doc["adaptive"]))
        return cls(**kw)


class ServingMonitor:
    """The monitors, log, audits and metrics of one server.

    Parameters
    ----------
    settings : MonitorSettings
    registry : prometheus_client.CollectorRegistry
        The server's registry (the metrics join its ``/metrics``).
    models : sequence of (name, threshold, n_stages)
        The served models.
    """

    def __init__(
        self,
        settings: MonitorSettings,
        registry: Any,
        models: Sequence[tuple[str, float, int]],
    ) -> None:
        pc = require("prometheus_client", "serve", "Monitoring in the cascadekit server")
        self.settings = settings
        unknown = sorted(set(settings.references) - {m[0] for m in models})
        if unknown:
            raise ParameterError(
                f"Reference scores given for unknown model(s) {unknown}; served models are "
                f"{[m[0] for m in models]}."
            )
        self.monitors: dict[str, CascadeMonitor] = {}
        for k, (name, threshold, n_stages) in enumerate(models):
            self.monitors[name] = CascadeMonitor(
                threshold,
                reference_scores=settings.references.get(name),
                window=settings.window,
                false_alarms_per_100k=settings.false_alarms_per_100k,
                audit_rate=settings.audit_rate,
                epsilon=settings.epsilon,
                delta=settings.delta,
                n_stages=n_stages,
                random_state=None if settings.random_state is None else settings.random_state + k,
            )
        self.log: MonitorLog | None = None
        if settings.log is not None:
            self.log = MonitorLog(
                settings.log,
                max_bytes=int(settings.log_max_mb * 1024 * 1024),
                backups=settings.log_backups,
                log_inputs=settings.log_inputs,
            )
        self.overridden: dict[str, int] = dict.fromkeys(self.monitors, 0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._bound_at: dict[str, float] = {}
        self._windows: dict[str, int] = {}
        self.adaptive: dict[str, AdaptiveThreshold] = {}
        self.errors = 0
        p, r = "cascadekit_monitor_", registry
        self.m_alarms = pc.Counter(p + "alarms", "Drift alarms.", ["model", "kind"], registry=r)
        self.m_windows = pc.Counter(p + "windows", "Windows tested.", ["model"], registry=r)
        g = {
            "window_teacher_share": "Teacher share of the last window.",
            "expected_teacher_share": "Teacher share expected at calibration.",
            "score_ks": "KS distance of the last window's scores to the reference.",
            "window_level": "Per-test level of a window.",
            "audit_cost": "Shadow audit calls as a share of every teacher call.",
            "disagreement": "Audited student/teacher disagreement on kept inputs.",
            "disagreement_upper": "Upper confidence bound of the disagreement (1 - delta).",
            "epsilon": "The accuracy drop the threshold was calibrated for.",
        }
        self.gauges = {k: pc.Gauge(p + k, h, ["model"], registry=r) for k, h in g.items()}
        self.m_audits = pc.Counter(
            p + "audits", "Audit-sample inputs by outcome.", ["model", "outcome"], registry=r
        )
        for name, mon in self.monitors.items():
            self.gauges["window_level"].labels(model=name).set(mon.level)
            if mon.epsilon is not None:
                self.gauges["epsilon"].labels(model=name).set(mon.epsilon)
            self.m_alarms.labels(model=name, kind="teacher_share")
            self.m_alarms.labels(model=name, kind="score_drift")
            for outcome in ("free", "shadow", "dropped", "failed"):
                self.m_audits.labels(model=name, outcome=outcome)

    # ------------------------------------------------------------------ the request hook

    def observe(
        self,
        name: str,
        *,
        score: ArrayLike,
        stage: ArrayLike,
        student: ArrayLike,
        label: ArrayLike,
        thresholds: Sequence[float],
        default_thresholds: Sequence[float],
        teacher_queue: int,
        shadow: Callable[[NDArray[np.int64]], Awaitable[ArrayLike]],
        inputs: Any = None,
    ) -> float | None:
        """Take one routed request: log it, test windows, sample audits, start shadow calls.

        Parameters
        ----------
        score, stage, student, label : array-like of shape (n,)
            First-stage scores, answering stage, first-stage predictions, final answers.
        thresholds, default_thresholds
            The thresholds this request used and the model's current defaults. Requests with
            other thresholds (a per-request override) are logged and audited but stay out of
            the window tests, whose expected share is that of the defaults.
        teacher_queue : int
            Inputs queued at the teacher now.
        shadow : callable
            ``await shadow(rows)`` returns the teacher's answers on these rows of the request.
        inputs : optional
            The request's inputs, written to the log only with ``log_inputs``.

        Returns
        -------
        float or None
            With ``adaptive_budget`` set: a new default threshold for the student, when it
            moved (the caller applies it). None otherwise.

        A failure in here (a full disk under the log, say) is logged and counted in
        :attr:`errors`, never raised: monitoring must not fail a request.
        """
        try:
            return self._observe(
                name,
                score,
                stage,
                student,
                label,
                thresholds,
                default_thresholds,
                teacher_queue,
                shadow,
                inputs,
            )
        except Exception as exc:
            self.errors += 1
            if self.errors <= 5 or self.errors % 1000 == 0:
                log.error(
                    "model %s: monitoring failed (%d so far): %s: %s",
                    name,
                    self.errors,
                    type(exc).__name__,
                    exc,
                )
            return None

    def _observe(
        self,
        name: str,
        score: ArrayLike,
        stage: ArrayLike,
        student: ArrayLike,
        label: ArrayLike,
        thresholds: Sequence[float],
        default_thresholds: Sequence[float],
        teacher_queue: int,
        shadow: Callable[[NDArray[np.int64]], Awaitable[ArrayLike]],
        inputs: Any,
    ) -> float | None:
        mon = self.monitors[name]
        new: float | None = None
        s = np.asarray(score, dtype=np.float64)
        st = np.asarray(stage, dtype=np.int64)
        ps = np.asarray(student, dtype=np.int64)
        lab = np.asarray(label, dtype=np.int64)
        last = mon.n_stages - 1
        if self.log is not None:
            self.log.route(name, list(thresholds), s, st, inputs)
        if tuple(thresholds) == tuple(default_thresholds):
            if thresholds[0] != mon.threshold:
                mon.set_threshold(thresholds[0])
            for a in mon.update(s, st):
                self.m_alarms.labels(model=name, kind=a.kind).inc()
                log.warning(
                    "model %s: %s alarm after %d inputs (statistic %.4g, p=%.3g <= %.3g)",
                    name,
                    a.kind,
                    a.requests,
                    a.statistic,
                    a.p_value,
                    a.level,
                )
            self._window_gauges(name, mon)
            if self.settings.adaptive_budget is not None and mon.reference_scores is not None:
                new = self._adapt(name, mon, st == last, thresholds[0])
        else:
            self.overridden[name] += int(s.shape[0])
        sample = mon.audit_mask(s.shape[0])
        free = np.flatnonzero(sample & (st == last))
        if free.size:
            self._add(name, s[free], ps[free], lab[free], thresholds, shadow=False)
            self.m_audits.labels(model=name, outcome="free").inc(free.size)
        need = np.flatnonzero(sample & (st != last))
        if need.size:
            room = len(self._tasks) < self.settings.audit_max_inflight
            if room and teacher_queue <= self.settings.audit_max_queue:
                task = asyncio.get_running_loop().create_task(
                    self._shadow(name, need, s[need], ps[need], list(thresholds), shadow)
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                mon.audit_dropped(need.size)
                self.m_audits.labels(model=name, outcome="dropped").inc(need.size)
        self._refresh(name, mon)
        return new

    def _adapt(
        self, name: str, mon: CascadeMonitor, deferred: NDArray[np.bool_], current: float
    ) -> float | None:
        """The automatic mode: step the adaptive threshold; the new one if it moved."""
        a = self.adaptive.get(name)
        if a is None:
            assert mon.reference_scores is not None and self.settings.adaptive_budget is not None
            a = AdaptiveThreshold(
                mon.reference_scores,
                self.settings.adaptive_budget,
                gamma=self.settings.adaptive_gamma,
                min_threshold=self.settings.adaptive_min_threshold,
                max_threshold=self.settings.adaptive_max_threshold,
            )
            self.adaptive[name] = a
        t = a.update(deferred)
        return None if t == current else t

    async def _shadow(
        self,
        name: str,
        rows: NDArray[np.int64],
        s: NDArray[np.float64],
        ps: NDArray[np.int64],
        thresholds: list[float],
        shadow: Callable[[NDArray[np.int64]], Awaitable[ArrayLike]],
    ) -> None:
        mon = self.monitors[name]
        try:
            teacher = np.asarray(await shadow(rows), dtype=np.int64)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # overloaded, timed out or failing: the audit is dropped
            mon.audit_dropped(rows.size)
            self.m_audits.labels(model=name, outcome="failed").inc(rows.size)
            log.info("model %s: shadow audit dropped: %s: %s", name, type(exc).__name__, exc)
            return
        self._add(name, s, ps, teacher, thresholds, shadow=True)
        self.m_audits.labels(model=name, outcome="shadow").inc(rows.size)

    def _add(
        self,
        name: str,
        s: NDArray[np.float64],
        ps: NDArray[np.int64],
        pt: NDArray[np.int64],
        thresholds: Sequence[float],
        *,
        shadow: bool,
    ) -> None:
        mon = self.monitors[name]
        mon.add_audits(s, ps, pt, shadow=s.shape[0] if shadow else 0)
        if self.log is not None:
            for v, a, b in zip(s.tolist(), ps.tolist(), pt.tolist(), strict=True):
                self.log.audit(name, list(thresholds), v, student=a, teacher=b, shadow=shadow)
        self.gauges["audit_cost"].labels(model=name).set(mon.audit_cost)

    def _window_gauges(self, name: str, mon: CascadeMonitor) -> None:
        w = mon.last_window_
        exp = mon.expected_teacher_share
        if exp is not None:
            self.gauges["expected_teacher_share"].labels(model=name).set(exp)
        if w is None:
            return
        self.gauges["window_teacher_share"].labels(model=name).set(w["teacher_share"])
        self.gauges["score_ks"].labels(model=name).set(w["score_ks"])
        behind = mon.n_windows_ - self._windows.get(name, 0)
        if behind > 0:
            self.m_windows.labels(model=name).inc(behind)
            self._windows[name] = mon.n_windows_

    def _refresh(self, name: str, mon: CascadeMonitor) -> None:
        """Recompute the drop bound (a bisection: tens of milliseconds) at most every
        ``bound_interval_s``."""
        now = time.monotonic()
        if now - self._bound_at.get(name, -math.inf) < self.settings.bound_interval_s:
            return
        b = mon.drop_estimate()
        if b is None:
            return
        self._bound_at[name] = now
        self.gauges["disagreement"].labels(model=name).set(b.disagreement)
        self.gauges["disagreement_upper"].labels(model=name).set(b.upper)

    # ------------------------------------------------------------------ status and lifecycle

    def status(self, name: str) -> dict[str, Any]:
        """The JSON document of ``GET /v2/models/{name}/monitor``."""
        mon = self.monitors[name]
        doc = mon.status()
        doc["model"] = name
        doc["overridden_requests"] = self.overridden[name]
        doc["audits"]["in_flight"] = len(self._tasks)
        doc["log"] = None if self.log is None else str(self.log.path)
        a = doc["audits"]
        if a["disagreement"] is not None:  # the bound just computed also feeds the gauges
            self._bound_at[name] = time.monotonic()
            self.gauges["disagreement"].labels(model=name).set(a["disagreement"])
            self.gauges["disagreement_upper"].labels(model=name).set(a["disagreement_upper"])
        return doc

    async def stop(self) -> None:
        """Cancel running shadow audits and close the log."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.log is not None:
            self.log.close()
