"""Prometheus metrics of a cascade server, in a registry owned by one app (no global state).

Exported series (all prefixed ``cascadekit_``):

=====================================  =========  ===============================================
name                                   type       labels
=====================================  =========  ===============================================
``requests_total``                     counter    model, code (HTTP status)
``request_failures_total``             counter    model, reason (bad_request, overloaded, ...)
``request_seconds``                    histogram  model
``inputs_total``                       counter    model, stage (the stage that answered)
``teacher_share``                      gauge      model (share of inputs the last stage answered)
``fallbacks_total``                    counter    model, stage, reason (timeout, error, overload)
``queue_seconds``                      histogram  model, stage
``batch_size``                         histogram  model, stage
``stage_seconds``                      histogram  model, stage (model time per batch)
``score``                              histogram  model (first stage's routing score)
``threshold``                          gauge      model, stage (current default threshold)
``admin_requests_total``               counter    outcome (changed, unauthorized, rejected, ...)
=====================================  =========  ===============================================

Examples
--------
>>> m = ServeMetrics()
>>> m.threshold.labels(model="m", stage="0").set(1.5)
>>> b"cascadekit_threshold" in m.render()[0]
True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._optional import require

__all__ = ["ServeMetrics"]

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServeMetrics:
    """All metrics of one server, registered in their own ``CollectorRegistry``.

    Parameters
    ----------
    score_buckets : sequence of float, optional
        Histogram buckets of the routing score (defaults suit energies and log-probabilities).
    """

    def __init__(self, score_buckets: Sequence[float] | None = None) -> None:
        pc = require("prometheus_client", "serve", "The cascadekit server")
        self._pc = pc
        self.registry = pc.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = pc.Counter(
            "cascadekit_requests",
            "Inference requests by HTTP status.",
            ["model", "code"],
            registry=r,
        )
        self.failures = pc.Counter(
            "cascadekit_request_failures",
            "Failed inference requests by reason.",
            ["model", "reason"],
            registry=r,
        )
        self.request_seconds = pc.Histogram(
            "cascadekit_request_seconds",
            "Inference request latency (s).",
            ["model"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self.inputs = pc.Counter(
            "cascadekit_inputs",
            "Inputs answered, by the stage that answered.",
            ["model", "stage"],
            registry=r,
        )
        self.teacher_share = pc.Gauge(
            "cascadekit_teacher_share",
            "Share of inputs answered by the last stage since start.",
            ["model"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.fallbacks = pc.Counter(
            "cascadekit_fallbacks",
            "Inputs answered by an earlier stage because a later one "
            "could not (timeout, error, overload).",
            ["model", "stage", "reason"],
            registry=r,
        )
        self.queue_seconds = pc.Histogram(
            "cascadekit_queue_seconds",
            "Time inputs waited in a stage's queue (s).",
            ["model", "stage"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self.batch_size = pc.Histogram(
            "cascadekit_batch_size",
            "Inputs per model call.",
            ["model", "stage"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.stage_seconds = pc.Histogram(
            "cascadekit_stage_seconds",
            "Model time per batch (s).",
            ["model", "stage"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        buckets = score_buckets or (
            -10,
            -5,
            -2,
            -1,
            -0.5,
            -0.2,
            -0.1,
            -0.05,
            -0.01,
            0,
            0.5,
            1,
            2,
            3,
            5,
            8,
            12,
            20,
        )
        self.score = pc.Histogram(
            "cascadekit_score",
            "First stage's routing score (higher = keep).",
            ["model"],
            buckets=sorted(set(buckets)),
            registry=r,
        )
        self.threshold = pc.Gauge(
            "cascadekit_threshold",
            "Current default threshold of each non-final stage.",
            ["model", "stage"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.admin_requests = pc.Counter(
            "cascadekit_admin_requests",
            "Admin API calls by outcome (changed, unauthorized, disabled, rejected).",
            ["outcome"],
            registry=r,
        )
        self._answered: dict[str, list[int]] = {}
        # labelled children, looked up once (``labels()`` costs microseconds per call)
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)`` (label values in the metric's label order), cached: the
        per-request paths call this.

        Examples
        --------
        >>> m = ServeMetrics()
        >>> m.child(m.requests, "toy", "200") is m.child(m.requests, "toy", "200")
        True
        """
        key = (id(metric), *labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c

    def observe_request(self, model: str, code: int, seconds: float) -> None:
        """Count one inference request by status and add its latency."""
        self.child(self.requests, model, str(code)).inc()
        self.child(self.request_seconds, model).observe(seconds)

    def observe_answers(self, model: str, stages: Sequence[int] | Any, n_stages: int) -> None:
        """Count answered inputs per stage and update the teacher share."""
        counts = self._answered.setdefault(model, [0] * n_stages)
        values = stages.tolist() if isinstance(stages, np.ndarray) else list(stages)
        for s in set(values):
            if 0 <= s < n_stages:
                c = values.count(s)
                counts[s] += c
                self.child(self.inputs, model, str(s)).inc(c)
        total = sum(counts)
        if total:
            self.child(self.teacher_share, model).set(counts[-1] / total)

    def observe_scores(self, model: str, scores: Any) -> None:
        """Add first-stage scores to the score histogram."""
        h = self.child(self.score, model)
        for v in np.asarray(scores, dtype=np.float64).tolist():
            h.observe(v)

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric and its content type.

        Under prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set, as in
        ``cascadekit serve --workers N``) every process's values, added up (gauges: the most
        recent value; see :mod:`cascadekit.serve.workers`).
        """
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = self._pc.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return self._pc.generate_latest(registry), self._pc.CONTENT_TYPE_LATEST
        return self._pc.generate_latest(self.registry), self._pc.CONTENT_TYPE_LATEST
