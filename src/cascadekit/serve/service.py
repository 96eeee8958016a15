"""The framework-free core of the cascade server: :class:`InferenceService`.

It holds the served models, one :class:`~cascadekit.serve.batching.StageBatcher` per stage,
readiness, draining and metrics, and answers decoded requests. Any HTTP front end is a thin
layer over it: :func:`cascadekit.serve.app.create_app` (FastAPI), or a Ray Serve ingress. The
``handle_*`` methods go from raw request bytes to a :class:`Reply` (status, body, headers), so a
front end only moves bytes.

Routing per request: the first stage runs on every input (batched with other requests' inputs);
an input stays there when ``score >= threshold`` (higher = more confident = keep); the others go
to the next stage's batcher, re-batched with other requests' deferred inputs. When a later stage
is slow (its timeout or the request's deadline passes), failing, or overloaded, its inputs keep
the earlier stage's answer with ``fallback = true``: the request still succeeds.

One client cannot hurt the others: a request's shape is checked against the model's input before
its data is decoded, large bodies are decoded in a worker thread, non-finite floats are refused,
and when a first-stage batch fails each request in it is run again alone, so only a request the
model cannot process gets an error (422). Whether the model itself is broken is decided by
running it on the warm-up input: only then is the model reported not ready (503). A model's
exception text never reaches a client: the answer carries an error id, the log the details.
Threshold changes through the admin API are :class:`~cascadekit.serve.admin.ThresholdAdmin`'s.

Where things are: :mod:`~cascadekit.serve.replies` (:class:`Reply`, :class:`InferResult`, the
outputs, error ids), :mod:`~cascadekit.serve.model_state` (one served model's runtime state),
:mod:`~cascadekit.serve.admin` (threshold changes); this module holds the lifecycle (start,
warm-up, drain), admission, the routing loop and the byte-level ``handle_*`` methods.

Examples
--------
>>> import asyncio, numpy as np
>>> from cascadekit import Cascade, Stage
>>> from cascadekit.oip import TensorSpec
>>> student = lambda x: np.stack([x[:, 0], -x[:, 0]], axis=1)
>>> teacher = lambda x: np.stack([x[:, 0] - 1, 1 - x[:, 0]], axis=1)
>>> cascade = Cascade([Stage(model=student, score="margin"), Stage(model=teacher)],
...                   thresholds=[1.0])
>>> served = ServedModel("toy", cascade, TensorSpec("x", ("FP32",), (-1, 1)))
>>> async def main():
...     service = InferenceService(served)
...     await service.start()
...     result = await service.infer("toy", {"x": np.array([[3.0], [0.2]], np.float32)})
...     await service.stop()
...     return result.label, result.stage, result.fallback
>>> asyncio.run(main())
(array([0, 1]), array([0, 1], dtype=int32), array([False, False]))
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..adapters import n_inputs, take
from ..cascade import StageDecision
from ..errors import CascadeError
from ..monitoring.serving import ServingMonitor
from ..oip import (
    HEADER_LENGTH,
    BadRequestError,
    DeadlineExceededError,
    InferRequest,
    InputRejectedError,
    ModelNotFoundError,
    ModelNotReadyError,
    OutputTensor,
    OverloadedError,
    ProtocolError,
    check_finite,
    encode_infer_response,
    model_metadata,
    parse_infer_request,
    parse_threshold_parameter,
    parse_timeout_parameter,
    server_metadata,
)
from ..router import decode_threshold, encode_threshold
from ..routing import RoutingState
from .admin import ThresholdAdmin
from .batching import DaemonExecutor, StageBatcher
from .config import ServeConfig
from .metrics import ServeMetrics
from .model import ServedModel
from .model_state import ModelState, stage_fn, warmup_input
from .replies import (
    DEFAULT_OUTPUTS,
    JSON_CONTENT_TYPE,
    OUTPUTS,
    InferResult,
    LogLimiter,
    Reply,
    format_thresholds,
    new_error_id,
)
from .workers import SharedState

__all__ = ["OUTPUTS", "InferResult", "InferenceService", "Reply"]

log = logging.getLogger("cascadekit.serve")
#: Bodies larger than this are decoded in a worker thread, off the event loop.
_PARSE_INLINE_BYTES = 64 * 1024


class InferenceService:
    """Serve cascades: batching, routing, fallbacks, readiness, draining and metrics.

    Parameters
    ----------
    models : ServedModel or sequence of ServedModel
    config : ServeConfig, optional
    metrics : ServeMetrics, optional
        Created (with its own registry) when not given.
    shared : SharedState, optional
        The state this service shares with the other worker processes of one server
        (``cascadekit serve --workers N``): admin threshold changes, readiness and drain.

    Notes
    -----
    :meth:`start` and every ``infer``/``handle_*`` call must run on the same event loop.
    """

    def __init__(
        self,
        models: ServedModel | Sequence[ServedModel],
        config: ServeConfig | None = None,
        metrics: ServeMetrics | None = None,
        shared: SharedState | None = None,
    ) -> None:
        served = [models] if isinstance(models, ServedModel) else list(models)
        if not served:
            raise BadRequestError("Expected at least one ServedModel to serve; got none.")
        self.config = config or ServeConfig()
        self.metrics = metrics or ServeMetrics()
        self.admin_token = self.config.resolved_admin_token()
        self._models: dict[str, ModelState] = {}
        for m in served:
            if m.name in self._models:
                raise BadRequestError(f"Two served models are called {m.name!r}; rename one.")
            if m.cascade.thresholds is None:
                raise BadRequestError(
                    f"Model {m.name!r} has no thresholds; calibrate its cascade first."
                )
            self._models[m.name] = ModelState(m)
        # drift monitoring and shadow audits (cascadekit.monitoring.serving); None when off
        self.monitoring: ServingMonitor | None = None
        if self.config.monitoring is not None:
            self.monitoring = ServingMonitor(
                self.config.monitoring,
                self.metrics.registry,
                [
                    (m.name, (m.cascade.thresholds or [math.inf])[0], m.cascade.n_stages)
                    for m in served
                ],
            )
        self._draining = False
        self._started = False
        self._inflight = 0
        self._idle: asyncio.Event | None = None
        self._parser: DaemonExecutor | None = None
        self.log_limiter = LogLimiter()
        self.shared = shared
        self._shared_seen = -1  # the shared state's version last applied
        self._shared_ready: bool | None = None  # the readiness last published
        self.admin = ThresholdAdmin(
            self.admin_token,
            self.metrics,
            self.log_limiter,
            self._state,
            None if shared is None else self._share_thresholds,
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def names(self) -> list[str]:
        """Names of the served models."""
        return list(self._models)

    @property
    def live(self) -> bool:
        """True while the process serves (also while warming up)."""
        return not self._draining

    def is_ready(self, name: str | None = None) -> bool:
        """Every stage loaded and warmed and the first stage not failing; not draining (with
        worker processes: in every worker)."""
        if self.shared is not None:
            self.sync()
        if self._draining or not self._started:
            return False
        states = self._models.values() if name is None else [self._state(name)]
        ready = all(s.warmed and s.student_ok for s in states)
        return ready and (self.shared is None or self.shared.all_ready())

    def sync(self) -> None:
        """With worker processes: apply what changed in the shared state since the last call
        (thresholds, drain; one counter read when nothing did) and publish this worker's
        readiness when it changed."""
        shared = self.shared
        assert shared is not None
        if shared.version() != self._shared_seen:
            self._shared_seen, doc = shared.read()
            if doc["draining"]:
                self._draining = True
            for name, values in doc["thresholds"].items():
                st = self._models.get(name)
                if st is None:
                    continue
                ths = [decode_threshold(v) for v in values]
                if list(st.served.cascade.thresholds or ()) != ths:
                    st.served.cascade.thresholds = ths
                    for k, t in enumerate(ths):
                        self.metrics.threshold.labels(model=name, stage=str(k)).set(t)
        ready = (
            self._started
            and not self._draining
            and all(s.warmed and s.student_ok for s in self._models.values())
        )
        if ready != self._shared_ready:
            self._shared_ready = ready
            shared.set_ready(f"{os.getpid()}/{id(self):x}", ready)

    def _share_thresholds(self, name: str, thresholds: Sequence[float]) -> None:
        """Write an admin change to the shared state (the other workers apply it)."""
        assert self.shared is not None
        self.shared.set_thresholds(name, [encode_threshold(t) for t in thresholds])

    async def start(self) -> None:
        """Create the batchers and warm every stage up (readiness turns true after it)."""
        if self.config.torch_threads is not None:
            import sys

            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(int(self.config.torch_threads))
        self._idle = asyncio.Event()
        self._idle.set()
        self._parser = DaemonExecutor("cascadekit-parse")
        for st in self._models.values():
            await self._start_model(st)
        self._started = True
        if self.shared is not None:
            self.sync()

    async def _start_model(self, st: ModelState) -> None:
        cascade = st.served.cascade
        n = cascade.n_stages
        models = cascade.live_models()
        st.timeouts = [self.config.timeout(k, n) for k in range(n)]
        st.batchers = []
        for k in range(n):
            stage_name = str(cascade.stages[k].name)
            batcher = StageBatcher(
                stage_fn(cascade, k, models[k]),
                self.config.policy(k, n),
                name=stage_name,
                observer=self._observer(st.served.name, k),
                isolate_failures=k == 0,
            )
            await batcher.start()
            st.batchers.append(batcher)
        ths = cascade.thresholds or ()
        for k, t in enumerate(ths):
            self.metrics.threshold.labels(model=st.served.name, stage=str(k)).set(t)
        if not self.config.warmup:
            st.warmed = True
            return
        try:
            for size in sorted({1, min(8, st.batchers[0].policy.max_batch_size)}):
                x = self._prepare(st.served, warmup_input(st.served, size))
                bound = self.config.request_timeout  # a hung stage cannot hang the start-up
                for k, b in enumerate(st.batchers):
                    out = await asyncio.wait_for(b.run_direct(x), bound)
                    if k < n - 1:
                        logits = out[0] if isinstance(out, tuple) else out
                        st.see_scores(k, cascade.stages[k].decide(logits, 0.0).scores)
            st.warmed = True
        except Exception as exc:
            st.error = "warm-up failed; see the server log"
            log.error("model %s: warm-up failed: %s: %s", st.served.name, type(exc).__name__, exc)

    def _observer(self, model: str, k: int) -> Callable[[int, list[float], float], None]:
        m = self.metrics
        batch_h = m.batch_size.labels(model=model, stage=str(k))
        queue_h = m.queue_seconds.labels(model=model, stage=str(k))
        stage_h = m.stage_seconds.labels(model=model, stage=str(k))

        def observe(size: int, waits: list[float], seconds: float) -> None:
            batch_h.observe(size)
            stage_h.observe(seconds)
            for w in waits:
                queue_h.observe(w)

        return observe

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Refuse new requests (503), wait for in-flight ones, then stop the batchers.

        Bounded: after ``drain_timeout`` (default ``config.drain_timeout``) seconds for the
        in-flight requests, and as long again for the batchers, a stage still running (a hung
        model) is abandoned in its daemon thread, which cannot keep the process alive.
        """
        self._draining = True
        timeout = self.config.drain_timeout if drain_timeout is None else drain_timeout
        if self._idle is not None and self._inflight:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("drain timed out with %d request(s) in flight", self._inflight)
        if self.monitoring is not None:
            await self.monitoring.stop()  # cancels shadow audits, closes the log
        end = time.monotonic() + max(timeout, 0.05)
        for st in self._models.values():
            for b in st.batchers:
                if not await b.stop(max(0.0, end - time.monotonic())):
                    log.warning(
                        "model %s: stage %s did not stop within %.1f s; abandoning its call",
                        st.served.name,
                        b.name,
                        timeout,
                    )
        if self._parser is not None:
            self._parser.shutdown(wait=False)
            self._parser = None

    # ------------------------------------------------------------------ lookups

    def _state(self, name: str, version: str | None = None) -> ModelState:
        st = self._models.get(name)
        if st is None:
            raise ModelNotFoundError(
                f"Unknown model {name!r}; this server serves {', '.join(map(repr, self._models))}."
                " GET /v2/models/{name} lists a model's inputs."
            )
        if version is not None and version != st.served.version:
            raise ModelNotFoundError(
                f"Model {name!r} has no version {version!r}; the served version is "
                f"{st.served.version!r}."
            )
        return st

    def model(self, name: str, version: str | None = None) -> ServedModel:
        """The served model called ``name`` (raises :class:`ModelNotFoundError`)."""
        return self._state(name, version).served

    def server_metadata(self) -> dict[str, Any]:
        """``GET /v2``."""
        from .. import __version__

        return server_metadata(
            "cascadekit", __version__, ["binary_tensor_data", "cascade_thresholds"]
        )

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """``GET /v2/models/{name}``: inputs, outputs, stages and current thresholds."""
        st = self._state(name, version)
        served = st.served
        cascade = served.cascade
        params: dict[str, Any] = {
            "stages": ",".join(str(s.name) for s in cascade.stages),
            "score": str(cascade.stages[0].score),
            "threshold": format_thresholds(cascade.thresholds or ()),
        }
        if served.class_names:
            params["class_names"] = ",".join(served.class_names)
        return model_metadata(
            served.name,
            [served.input],
            OUTPUTS,
            versions=[served.version],
            platform="cascadekit",
            parameters=params,
        )

    # ------------------------------------------------------------------ inference

    def _prepare(self, served: ServedModel, data: Any) -> Any:
        return served.preprocess(data) if served.preprocess is not None else data

    def _check_admission(self, st: ModelState) -> None:
        if self.shared is not None:
            self.sync()
        if self._draining:
            raise OverloadedError(
                "The server is shutting down and takes no new requests; retry on another replica.",
                self.config.retry_after,
            )
        if not self._started or not st.warmed:
            raise ModelNotReadyError(
                f"Model {st.served.name!r} is not ready"
                + (f" ({st.error})" if st.error else " (still warming up)")
                + "; retry shortly.",
                self.config.retry_after,
            )

    async def infer(
        self,
        name: str,
        inputs: Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
        *,
        probabilities: bool = False,
        version: str | None = None,
        authorized: bool = False,
    ) -> InferResult:
        """Run one request through the cascade.

        Parameters
        ----------
        name : str
            Served model name.
        inputs : mapping of str to array
            The model's input by name (already decoded, e.g. from :func:`parse_infer_request`).
        parameters : mapping, optional
            ``threshold`` (number, or comma-separated string for N > 2 stages) overrides the
            thresholds for this request; ``timeout`` (microseconds) sets its deadline.
        probabilities : bool, default=False
            Also compute the answering stage's softmax probabilities.
        version : str, optional
        authorized : bool, default=False
            The caller showed the admin token (for ``threshold_override="token"``).

        Raises
        ------
        ModelNotFoundError
            Unknown model (404).
        BadRequestError
            Unknown, missing or mistyped input, bad parameters (400).
        OverloadedError, ModelNotReadyError
            The first stage's queue is full, the model is not ready, or the server drains (503).
        DeadlineExceededError
            The deadline passed before the first stage answered (504).
        """
        st = self._state(name, version)
        self._check_admission(st)
        served = st.served
        spec = served.input
        params = dict(parameters or {})
        unknown = [k for k in inputs if k != spec.name]
        if unknown or spec.name not in inputs:
            raise BadRequestError(
                f"Model {name!r} takes one input, {spec.name!r} ({spec.datatypes[0]}, shape "
                f"{list(spec.shape)}); got input(s) {', '.join(map(repr, inputs)) or 'none'}."
            )
        x = inputs[spec.name]
        check_finite(spec.name, x)
        n = n_inputs(x)
        if n > self.config.max_request_inputs:
            raise BadRequestError(
                f"Expected at most {self.config.max_request_inputs} inputs per request; got {n}. "
                "Split the batch into several requests."
            )
        cascade = served.cascade
        n_stages = cascade.n_stages
        override = self._override(
            parse_threshold_parameter(params.get("threshold"), n_stages - 1), authorized
        )
        ths = override if override is not None else cascade.thresholds
        assert ths is not None
        timeout = parse_timeout_parameter(params.get("timeout"))
        budget = self.config.request_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        self._inflight += 1
        if self._idle is not None:
            self._idle.clear()
        try:
            return await self._route(st, self._prepare(served, x), n, ths, deadline, probabilities)
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._idle is not None:
                self._idle.set()

    def _override(
        self, override: tuple[float, ...] | None, authorized: bool
    ) -> tuple[float, ...] | None:
        """Apply ``config.threshold_override`` to a request's ``parameters.threshold``."""
        policy = self.config.threshold_override
        if override is None or policy == "allow":
            return override
        if policy == "token":
            if not authorized:
                raise ProtocolError(
                    "This server applies parameters.threshold only with the admin token: send "
                    "'Authorization: Bearer <token>', or leave the threshold out to use the "
                    "server's.",
                    403,
                )
            return override
        assert self.config.threshold_clamp is not None
        lo, hi = self.config.threshold_clamp
        return tuple(min(max(t, lo), hi) for t in override)

    def authorized(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the admin token (constant-time compare)."""
        return self.admin.authorized(authorization)

    async def _probe(self, st: ModelState, deadline: float) -> bool:
        """Whether the first stage still answers its warm-up input (shared by concurrent calls)."""
        if st.probe is None or st.probe.done():

            async def probe() -> bool:
                x = self._prepare(st.served, warmup_input(st.served, 1))
                try:
                    await self._run_stage(st, 0, x, min(deadline, time.monotonic() + 10.0))
                except Exception:
                    return False
                return True

            st.probe = asyncio.create_task(probe())
        return await asyncio.shield(st.probe)

    def _log_error(self, key: str, msg: str, *args: Any, exc: BaseException | None = None) -> None:
        """An ERROR line, at most a few per minute per ``key`` (a client cannot flood the log)."""
        dropped = self.log_limiter.allow(key)
        if dropped is None:
            return
        if dropped:
            msg += " (%d similar message(s) suppressed)"
            args = (*args, dropped)
        log.error(msg, *args, exc_info=exc)

    async def _run_stage(self, st: ModelState, k: int, batch: Any, deadline: float) -> Any:
        """Stage k's logits for ``batch`` (with its scores and predictions for a non-final
        stage: a tuple), through its batcher."""
        wait = deadline - time.monotonic()
        limit = st.timeouts[k]
        if limit is not None:
            wait = min(wait, limit)
        if wait <= 0:
            raise DeadlineExceededError("The request's deadline passed before the stage ran.")
        try:
            out = await st.batchers[k].submit(batch, deadline, timeout=wait)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise DeadlineExceededError(
                f"Stage {st.batchers[k].name!r} did not answer within {wait * 1e3:.0f} ms."
            ) from exc
        return out

    async def _route(
        self,
        st: ModelState,
        x: Any,
        n: int,
        ths: Sequence[float],
        deadline: float,
        want_proba: bool,
    ) -> InferResult:
        """Drive the cascade's routing engine with the stages' batchers."""
        served = st.served
        cascade = served.cascade
        n_stages = cascade.n_stages
        name = served.name
        state = cascade.routing_state(n, ths, probabilities=want_proba)
        rows = np.arange(n, dtype=np.int64)
        for k in range(n_stages):
            if rows.size == 0:
                break
            st_k = cascade.stages[k]
            batch = x if k == 0 else take(x, rows)
            try:
                out = await self._run_stage(st, k, batch, deadline)
            except (OverloadedError, DeadlineExceededError) as exc:
                if k == 0:
                    if isinstance(exc, DeadlineExceededError):
                        raise DeadlineExceededError(
                            f"The request's deadline ({str(exc).rstrip('.')}) passed before "
                            f"the first stage {st_k.name!r} answered. Raise parameters.timeout "
                            "or retry later."
                        ) from exc
                    raise OverloadedError(str(exc), self.config.retry_after) from exc
                reason = "overload" if isinstance(exc, OverloadedError) else "timeout"
                self._fall_back(state, name, k, reason, rows)
                break
            except Exception as exc:
                if k == 0:
                    eid = new_error_id()
                    healthy = await self._probe(st, deadline)
                    self._log_error(
                        f"{name}/stage0/{healthy}",
                        "model %s: first stage %s failed on a request (error id %s; the model %s "
                        "its warm-up input): %s: %s",
                        name,
                        st_k.name,
                        eid,
                        "answers" if healthy else "also fails on",
                        type(exc).__name__,
                        exc,
                    )
                    if healthy:
                        raise InputRejectedError(
                            f"The first stage {st_k.name!r} of model {name!r} could not process "
                            f"this request's inputs (error id {eid}; the server log has the "
                            "details). Other inputs are served: check these against the model's "
                            f"input (GET /v2/models/{name})."
                        ) from exc
                    st.student_ok = False
                    st.error = f"its first stage {st_k.name!r} is failing"
                    raise ModelNotReadyError(
                        f"The first stage {st_k.name!r} of model {name!r} failed (error id "
                        f"{eid}; the server log has the details); the model is not ready. "
                        "Retry later.",
                        self.config.retry_after,
                    ) from exc
                if k not in st.failing:  # log once per failure episode, not per request
                    st.failing.add(k)
                    log.warning("model %s: stage %s fails, falling back: %s", name, st_k.name, exc)
                self._fall_back(state, name, k, "error", rows)
                break
            if k == 0 and not st.student_ok:
                st.student_ok = True
                st.error = None
            if k in st.failing:
                st.failing.discard(k)
                log.warning("model %s: stage %s answers again", name, st_k.name)
            seen = rows
            if isinstance(out, tuple):  # scored with its batch (see model_state.stage_fn)
                logits, scores, preds = out
                decision = StageDecision(predictions=preds, scores=scores, keep=scores >= ths[k])
                rows = state.update(k, rows, logits, decision=decision)
            else:
                rows = state.update(k, rows, out)
            if k < n_stages - 1:
                st.see_scores(k, state.stage_scores[seen, k])
        result = state.compute()
        score = result.stage_scores[:, 0].astype(np.float32)
        self.metrics.observe_answers(name, result.stage, n_stages)
        self.metrics.observe_scores(name, score)
        if self.monitoring is not None and state.stage_predictions.shape[1]:
            first_pred = state.stage_predictions[:, 0]
            if bool(np.all(first_pred >= 0)):  # the student answered every row
                # the routing decision: a row that fell back was still routed on (an overloaded
                # teacher is not a shift of the traffic)
                routed = result.stage + result.fallback.astype(result.stage.dtype)
                self._monitor(st, x, score, routed, first_pred, result.predictions, ths)
        proba = state.probabilities(dtype=np.float32)
        return InferResult(
            result.predictions,
            score,
            result.stage,
            result.fallback,
            tuple(ths),
            proba,
            result.stage_scores,
        )

    def _monitor(
        self,
        st: ModelState,
        x: Any,
        score: np.ndarray,
        stage: np.ndarray,
        first_pred: np.ndarray,
        label: np.ndarray,
        ths: Sequence[float],
    ) -> None:
        """The monitoring hook: one call per routed request (logic in
        :class:`~cascadekit.monitoring.serving.ServingMonitor`); shadow audits run on the
        teacher's batcher in the background."""
        assert self.monitoring is not None
        cascade = st.served.cascade
        teacher = st.batchers[-1]
        bound = self.config.request_timeout

        async def shadow(rows: np.ndarray) -> np.ndarray:
            logits = await asyncio.wait_for(teacher.submit(take(x, rows), None), bound)
            return cascade.stages[-1].map_classes(np.argmax(logits, axis=1))

        new = self.monitoring.observe(
            st.served.name,
            score=score,
            stage=stage,
            student=first_pred,
            label=label,
            thresholds=ths,
            default_thresholds=tuple(cascade.thresholds or ()),
            teacher_queue=teacher.queued,
            shadow=shadow,
            inputs=x,
        )
        if new is not None:  # the automatic mode (monitoring.adaptive), off unless configured
            cascade.thresholds = [new, *(cascade.thresholds or ())[1:]]
            self.metrics.threshold.labels(model=st.served.name, stage="0").set(new)

    def _fall_back(
        self, state: RoutingState, name: str, k: int, reason: str, rows: np.ndarray
    ) -> None:
        """Inputs ``rows`` that stage k could not answer keep stage k-1's answer."""
        state.fall_back(k, rows)
        self.metrics.fallbacks.labels(model=name, stage=str(k), reason=reason).inc(rows.size)

    # ------------------------------------------------------------------ byte-level handlers

    async def handle_infer(
        self,
        name: str,
        body: bytes,
        header_length: int | str | None = None,
        version: str | None = None,
        authorization: str | None = None,
    ) -> Reply:
        """Answer ``POST /v2/models/{name}[/versions/{v}]/infer`` from the raw body.

        Never raises for a request: protocol errors become their status with
        ``{"error": ...}``, anything unexpected a 500 with an error id (the log has the details).
        ``authorization`` is the request's ``Authorization`` header (for
        ``threshold_override="token"``).
        """
        t0 = time.perf_counter()
        metric_name = name if name in self._models else "_unknown"
        try:
            st = self._state(name, version)
            req = await self.parse(st, body, header_length)
            reply = await self._infer_reply(
                name, req, version, self.authorized(authorization) if authorization else False
            )
        except Exception as exc:
            reply = Reply.error(self.failure(name, exc))
        self.metrics.observe_request(metric_name, reply.status, time.perf_counter() - t0)
        return reply

    def failure(self, name: str, exc: Exception) -> ProtocolError:
        """The error to answer a failed inference request on model ``name`` with, counted in
        the failures metric by reason (any front end: HTTP, gRPC).

        A :class:`ProtocolError` is answered as it is; a library error (a user's mistake its
        checks caught) as a 400; anything else as a 500 whose message carries an error id (the
        log has the details, the client never sees the exception's text).
        """
        metric_name = name if name in self._models else "_unknown"
        if isinstance(exc, ProtocolError):
            reason = {
                400: "bad_request",
                403: "forbidden",
                404: "not_found",
                422: "model_rejected",
                504: "deadline",
            }.get(exc.status, "unavailable")
            if isinstance(exc, OverloadedError) and not isinstance(exc, ModelNotReadyError):
                reason = "draining" if self._draining else "overloaded"
            self.metrics.failures.labels(model=metric_name, reason=reason).inc()
            return exc
        if isinstance(exc, CascadeError):  # a user's mistake caught by the library's checks
            self.metrics.failures.labels(model=metric_name, reason="bad_request").inc()
            return BadRequestError(str(exc))
        eid = new_error_id()
        self._log_error("internal", "internal error %s while serving %s", eid, name, exc=exc)
        self.metrics.failures.labels(model=metric_name, reason="internal").inc()
        return ProtocolError(f"Internal server error (error id {eid}); see the server log.", 500)

    async def parse(
        self, st: ModelState, body: bytes, header_length: int | str | None
    ) -> InferRequest:
        """Decode a request body for model ``st``: its declared shape is checked against the
        model's input before the data is decoded; large bodies are decoded in a worker thread
        so the event loop (health probes, other requests) keeps running."""

        def run() -> InferRequest:
            return parse_infer_request(
                body,
                header_length,
                specs=[st.served.input],
                max_batch=self.config.max_request_inputs,
            )

        if len(body) <= _PARSE_INLINE_BYTES or self._parser is None:
            return run()
        return await asyncio.get_running_loop().run_in_executor(self._parser, run)

    async def infer_request(
        self, name: str, req: InferRequest, version: str | None = None, authorized: bool = False
    ) -> tuple[InferResult, list[str]]:
        """Run a decoded request (any front end): its requested outputs and inputs are checked
        against the model, then :meth:`infer` runs it. Returns the result and the names of the
        outputs to answer with, in order."""
        st = self._state(name, version)
        known = {o.name for o in OUTPUTS}
        if req.outputs is not None:
            for o in req.outputs:
                if o.name not in known:
                    raise BadRequestError(
                        f"Unknown output {o.name!r} requested; model {name!r} has outputs "
                        f"{', '.join(sorted(known))}."
                    )
            names = [o.name for o in req.outputs] or list(DEFAULT_OUTPUTS)
        else:
            names = list(DEFAULT_OUTPUTS)
        want_proba = "probabilities" in names or req.parameters.get("probabilities") is True
        if want_proba and "probabilities" not in names and req.outputs is None:
            names.append("probabilities")
        spec = st.served.input
        tensors: dict[str, Any] = {}
        for t in req.inputs:
            if t.name == spec.name:
                spec.check(t)
            tensors[t.name] = t.data
        result = await self.infer(
            name,
            tensors,
            req.parameters,
            probabilities=want_proba,
            version=version,
            authorized=authorized,
        )
        return result, names

    async def _infer_reply(
        self, name: str, req: InferRequest, version: str | None, authorized: bool = False
    ) -> Reply:
        st = self._state(name, version)
        result, names = await self.infer_request(name, req, version, authorized)
        binary: set[str] = set()
        for nm in names:
            flag = None
            if req.outputs is not None:
                flag = next((o.binary_data for o in req.outputs if o.name == nm), None)
            if flag is True or (flag is None and req.binary_data_output):
                binary.add(nm)
        outputs = [OutputTensor(nm, result.output(nm)) for nm in names]
        body, hl = encode_infer_response(
            name,
            outputs,
            model_version=st.served.version,
            request_id=req.id,
            parameters={"threshold": format_thresholds(result.thresholds)},
            binary=sorted(binary),
        )
        content_type = "application/octet-stream" if hl is not None else JSON_CONTENT_TYPE
        headers = {"content-type": content_type}
        if hl is not None:
            headers[HEADER_LENGTH.lower()] = str(hl)
        return Reply(200, body, headers)

    def handle_monitor(self, name: str) -> Reply:
        """Answer ``GET /v2/models/{name}/monitor``: the model's monitoring status (JSON)."""
        try:
            self._state(name)
            if self.monitoring is None:
                raise ProtocolError(
                    "Monitoring is off on this server: add a 'monitoring:' section to its "
                    "configuration (ServeConfig(monitoring=MonitorSettings()) in Python).",
                    404,
                )
        except ProtocolError as exc:
            return Reply.error(exc)
        return Reply.json(self.monitoring.status(name))

    def handle_set_thresholds(
        self, name: str, body: bytes, authorization: str | None, client: str | None = None
    ) -> Reply:
        """Answer ``PUT /admin/models/{name}/thresholds`` with body ``{"thresholds": [...]}``:
        see :meth:`ThresholdAdmin.handle_set_thresholds
        <cascadekit.serve.admin.ThresholdAdmin.handle_set_thresholds>`."""
        return self.admin.handle_set_thresholds(name, body, authorization, client)
