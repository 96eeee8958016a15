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

Examples
--------
>>> import asyncio, numpy as np
>>> from cascadekit import Cascade, Stage
>>> from cascadekit.serve.protocol import TensorSpec
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
import hmac
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..adapters import n_inputs, take
from ..cascade import Cascade, _stage_probabilities
from ..errors import CascadeError
from ..router import decode_threshold, encode_threshold
from .batching import StageBatcher
from .config import ServeConfig
from .metrics import ServeMetrics
from .protocol import (
    DATATYPES,
    HEADER_LENGTH,
    BadRequestError,
    DeadlineExceededError,
    InferRequest,
    ModelNotFoundError,
    ModelNotReadyError,
    OutputTensor,
    OverloadedError,
    ProtocolError,
    TensorSpec,
    encode_error,
    encode_infer_response,
    model_metadata,
    parse_infer_request,
    parse_threshold_parameter,
    parse_timeout_parameter,
    server_metadata,
)

__all__ = ["OUTPUTS", "InferResult", "InferenceService", "Reply", "ServedModel"]

log = logging.getLogger("cascadekit.serve")

#: Outputs of every served cascade, in response order.
OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("label", ("INT64",), (-1,)),
    TensorSpec("score", ("FP32",), (-1,)),
    TensorSpec("stage", ("INT32",), (-1,)),
    TensorSpec("fallback", ("BOOL",), (-1,)),
    TensorSpec("probabilities", ("FP32",), (-1, -1)),
)
_DEFAULT_OUTPUTS = ("label", "score", "stage", "fallback")
_JSON = "application/json"


@dataclass
class ServedModel:
    """A cascade served under a name, with its single input tensor.

    Parameters
    ----------
    name : str
        Model name in the URLs (``/v2/models/{name}``).
    cascade : Cascade
        Its stages need live models (``Stage(model=...)``) and thresholds.
    input : TensorSpec
        The input tensor (shape with -1 for the batch dimension).
    preprocess : callable, optional
        Applied to the decoded input array before the first stage (e.g. a dtype cast).
    version : str, default="1"
    class_names : list of str, optional
        Shown in the metadata.
    warmup_input : callable, optional
        ``warmup_input(n)`` returns n valid inputs for the start-up warm-up; defaults to zeros.
    """

    name: str
    cascade: Cascade
    input: TensorSpec
    preprocess: Callable[[Any], Any] | None = None
    version: str = "1"
    class_names: list[str] | None = None
    warmup_input: Callable[[int], Any] | None = None


@dataclass
class InferResult:
    """Per-input outputs of one request, and the thresholds that were applied."""

    label: NDArray[np.int64]
    score: NDArray[np.float32]
    stage: NDArray[np.int32]
    fallback: NDArray[np.bool_]
    thresholds: tuple[float, ...]
    probabilities: NDArray[np.float32] | None = None

    def output(self, name: str) -> NDArray[Any]:
        """The output array called ``name``."""
        value = getattr(self, name)
        if value is None:  # pragma: no cover - guarded by the caller
            raise BadRequestError(f"Output {name!r} was not computed.")
        out: NDArray[Any] = value
        return out


@dataclass
class Reply:
    """An HTTP answer: status, body and headers (content type included)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, doc: Any, status: int = 200) -> Reply:
        """A JSON reply."""
        return cls(status, json.dumps(doc).encode(), {"content-type": _JSON})

    @classmethod
    def error(cls, exc: ProtocolError, retry_after: float | None = None) -> Reply:
        """``{"error": message}`` with the error's status (and ``Retry-After`` for 503)."""
        headers = {"content-type": _JSON}
        if isinstance(exc, OverloadedError):
            after = exc.retry_after if retry_after is None else retry_after
            headers["retry-after"] = str(max(1, math.ceil(after)))
        return cls(exc.status, encode_error(str(exc)), headers)


def format_thresholds(ths: Sequence[float]) -> float | str:
    """A scalar protocol parameter holding thresholds (a number, or a comma-separated string).

    Examples
    --------
    >>> format_thresholds([0.5]), format_thresholds([1.0, -math.inf])
    (0.5, '1.0,-inf')
    """
    if len(ths) == 1 and math.isfinite(ths[0]):
        return float(ths[0])
    return ",".join(repr(float(t)) for t in ths)


class _ModelState:
    """Runtime state of one served model."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self.batchers: list[StageBatcher] = []
        self.timeouts: list[float | None] = []
        self.warmed = False
        self.student_ok = True
        self.error: str | None = None
        self.failing: set[int] = set()


class InferenceService:
    """Serve cascades: batching, routing, fallbacks, readiness, draining and metrics.

    Parameters
    ----------
    models : ServedModel or sequence of ServedModel
    config : ServeConfig, optional
    metrics : ServeMetrics, optional
        Created (with its own registry) when not given.

    Notes
    -----
    :meth:`start` and every ``infer``/``handle_*`` call must run on the same event loop.
    """

    def __init__(
        self,
        models: ServedModel | Sequence[ServedModel],
        config: ServeConfig | None = None,
        metrics: ServeMetrics | None = None,
    ) -> None:
        served = [models] if isinstance(models, ServedModel) else list(models)
        if not served:
            raise BadRequestError("Expected at least one ServedModel to serve; got none.")
        self.config = config or ServeConfig()
        self.metrics = metrics or ServeMetrics()
        self.admin_token = self.config.resolved_admin_token()
        self._models: dict[str, _ModelState] = {}
        for m in served:
            if m.name in self._models:
                raise BadRequestError(f"Two served models are called {m.name!r}; rename one.")
            if m.cascade.thresholds is None:
                raise BadRequestError(
                    f"Model {m.name!r} has no thresholds; calibrate its cascade first."
                )
            self._models[m.name] = _ModelState(m)
        self._draining = False
        self._started = False
        self._inflight = 0
        self._idle: asyncio.Event | None = None

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
        """Every stage loaded and warmed and the first stage not failing; not draining."""
        if self._draining or not self._started:
            return False
        states = self._models.values() if name is None else [self._state(name)]
        return all(s.warmed and s.student_ok for s in states)

    async def start(self) -> None:
        """Create the batchers and warm every stage up (readiness turns true after it)."""
        if self.config.torch_threads is not None:
            import sys

            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(int(self.config.torch_threads))
        self._idle = asyncio.Event()
        self._idle.set()
        for st in self._models.values():
            await self._start_model(st)
        self._started = True

    async def _start_model(self, st: _ModelState) -> None:
        cascade = st.served.cascade
        n = cascade.n_stages
        models = cascade._live_models()
        st.timeouts = [self.config.timeout(k, n) for k in range(n)]
        st.batchers = []
        for k in range(n):
            stage_name = str(cascade.stages[k].name)
            batcher = StageBatcher(
                self._stage_fn(cascade, k, models[k]),
                self.config.policy(k, n),
                name=stage_name,
                observer=self._observer(st.served.name, k),
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
                x = self._prepare(st.served, self._warmup_input(st.served, size))
                for b in st.batchers:
                    await b.run_direct(x)
            st.warmed = True
        except Exception as exc:
            st.error = f"warm-up failed: {type(exc).__name__}: {exc}"
            log.error("model %s: %s", st.served.name, st.error)

    @staticmethod
    def _stage_fn(cascade: Cascade, k: int, model: Any) -> Callable[[Any], np.ndarray]:
        def run(batch: Any) -> np.ndarray:
            return cascade._call_stage(k, model, batch, n_inputs(batch))

        return run

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

    @staticmethod
    def _warmup_input(served: ServedModel, n: int) -> Any:
        if served.warmup_input is not None:
            return served.warmup_input(n)
        shape = [n] + [1 if d == -1 else d for d in served.input.shape[1:]]
        return np.zeros(shape, dtype=DATATYPES[served.input.datatypes[0]])

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Refuse new requests (503), wait for in-flight ones, then stop the batchers."""
        self._draining = True
        timeout = self.config.drain_timeout if drain_timeout is None else drain_timeout
        if self._idle is not None and self._inflight:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("drain timed out with %d request(s) in flight", self._inflight)
        for st in self._models.values():
            for b in st.batchers:
                await b.stop()

    # ------------------------------------------------------------------ lookups

    def _state(self, name: str, version: str | None = None) -> _ModelState:
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

    def model(self, name: str) -> ServedModel:
        """The served model called ``name`` (raises :class:`ModelNotFoundError`)."""
        return self._state(name).served

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

    def _check_admission(self, st: _ModelState) -> None:
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
        n = n_inputs(x)
        if n > self.config.max_request_inputs:
            raise BadRequestError(
                f"Expected at most {self.config.max_request_inputs} inputs per request; got {n}. "
                "Split the batch into several requests."
            )
        cascade = served.cascade
        n_stages = cascade.n_stages
        override = parse_threshold_parameter(params.get("threshold"), n_stages - 1)
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

    async def _run_stage(self, st: _ModelState, k: int, batch: Any, deadline: float) -> np.ndarray:
        wait = deadline - time.monotonic()
        limit = st.timeouts[k]
        if limit is not None:
            wait = min(wait, limit)
        if wait <= 0:
            raise DeadlineExceededError("The request's deadline passed before the stage ran.")
        try:
            out: np.ndarray = await asyncio.wait_for(st.batchers[k].submit(batch, deadline), wait)
        except asyncio.TimeoutError as exc:
            raise DeadlineExceededError(
                f"Stage {st.batchers[k].name!r} did not answer within {wait * 1e3:.0f} ms."
            ) from exc
        return out

    async def _route(
        self,
        st: _ModelState,
        x: Any,
        n: int,
        ths: Sequence[float],
        deadline: float,
        want_proba: bool,
    ) -> InferResult:
        served = st.served
        cascade = served.cascade
        n_stages = cascade.n_stages
        name = served.name
        label = np.full(n, -1, dtype=np.int64)
        stage = np.full(n, n_stages - 1, dtype=np.int32)
        fallback = np.zeros(n, dtype=bool)
        score = np.full(n, np.nan, dtype=np.float32)
        proba_parts: list[tuple[np.ndarray, np.ndarray]] = []
        undecided = np.arange(n, dtype=np.int64)
        prev_pred: np.ndarray | None = None
        prev_logits: np.ndarray | None = None
        for k in range(n_stages):
            if undecided.size == 0:
                break
            st_k = cascade.stages[k]
            batch = x if k == 0 else take(x, undecided)
            try:
                logits = await self._run_stage(st, k, batch, deadline)
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
                self._fall_back(
                    name,
                    k,
                    reason,
                    undecided,
                    prev_pred,
                    prev_logits,
                    st,
                    label,
                    stage,
                    fallback,
                    proba_parts,
                    want_proba,
                )
                break
            except Exception as exc:
                if k == 0:
                    st.student_ok = False
                    st.error = f"stage {st_k.name!r} failed: {type(exc).__name__}: {exc}"
                    log.error("model %s: %s", name, st.error)
                    raise ModelNotReadyError(
                        f"The first stage {st_k.name!r} of model {name!r} failed "
                        f"({type(exc).__name__}: {exc}); the model is not ready. Retry later.",
                        self.config.retry_after,
                    ) from exc
                if k not in st.failing:  # log once per failure episode, not per request
                    st.failing.add(k)
                    log.warning("model %s: stage %s fails, falling back: %s", name, st_k.name, exc)
                self._fall_back(
                    name,
                    k,
                    "error",
                    undecided,
                    prev_pred,
                    prev_logits,
                    st,
                    label,
                    stage,
                    fallback,
                    proba_parts,
                    want_proba,
                )
                break
            if k == 0 and not st.student_ok:
                st.student_ok = True
                st.error = None
            if k in st.failing:
                st.failing.discard(k)
                log.warning("model %s: stage %s answers again", name, st_k.name)
            if k < n_stages - 1:
                d = st_k.decide(logits, ths[k])
                if k == 0:
                    score[:] = d.scores
                keep = d.keep
                kept = undecided[keep]
                label[kept] = d.predictions[keep]
                stage[kept] = k
                if want_proba and kept.size:
                    proba_parts.append((kept, _stage_probabilities(st_k, logits[keep])))
                move = ~keep
                undecided = undecided[move]
                prev_pred = d.predictions[move]
                prev_logits = logits[move]
            else:
                label[undecided] = st_k.map_classes(np.argmax(logits, axis=1))
                if want_proba:
                    proba_parts.append((undecided, _stage_probabilities(st_k, logits)))
        self.metrics.observe_answers(name, stage.tolist(), n_stages)
        self.metrics.observe_scores(name, score)
        proba = None
        if want_proba:
            width = max([p.shape[1] for _, p in proba_parts] + [0])
            proba = np.zeros((n, width), dtype=np.float32)
            for idx, p in proba_parts:
                proba[idx, : p.shape[1]] = p
        return InferResult(label, score, stage, fallback, tuple(ths), proba)

    def _fall_back(
        self,
        name: str,
        k: int,
        reason: str,
        idx: np.ndarray,
        prev_pred: np.ndarray | None,
        prev_logits: np.ndarray | None,
        st: _ModelState,
        label: np.ndarray,
        stage: np.ndarray,
        fallback: np.ndarray,
        proba_parts: list[tuple[np.ndarray, np.ndarray]],
        want_proba: bool,
    ) -> None:
        """Inputs ``idx`` that stage k could not answer keep stage k-1's answer."""
        assert prev_pred is not None and prev_logits is not None
        label[idx] = prev_pred
        stage[idx] = k - 1
        fallback[idx] = True
        self.metrics.fallbacks.labels(model=name, stage=str(k), reason=reason).inc(idx.size)
        if want_proba:
            prev_stage = st.served.cascade.stages[k - 1]
            proba_parts.append((idx, _stage_probabilities(prev_stage, prev_logits)))

    # ------------------------------------------------------------------ byte-level handlers

    async def handle_infer(
        self,
        name: str,
        body: bytes,
        header_length: int | str | None = None,
        version: str | None = None,
    ) -> Reply:
        """Answer ``POST /v2/models/{name}[/versions/{v}]/infer`` from the raw body.

        Never raises for a request: protocol errors become their status with
        ``{"error": ...}``, anything unexpected a 500 (and a log line).
        """
        t0 = time.perf_counter()
        metric_name = name if name in self._models else "_unknown"
        try:
            self._state(name, version)
            req = parse_infer_request(body, header_length)
            reply = await self._infer_reply(name, req, version)
        except ProtocolError as exc:
            reason = {400: "bad_request", 404: "not_found", 504: "deadline"}.get(
                exc.status, "unavailable"
            )
            if isinstance(exc, OverloadedError) and not isinstance(exc, ModelNotReadyError):
                reason = "draining" if self._draining else "overloaded"
            self.metrics.failures.labels(model=metric_name, reason=reason).inc()
            reply = Reply.error(exc)
        except CascadeError as exc:  # a user's mistake caught by the library's checks
            self.metrics.failures.labels(model=metric_name, reason="bad_request").inc()
            reply = Reply.error(BadRequestError(str(exc)))
        except Exception as exc:
            log.exception("internal error while serving %s", name)
            self.metrics.failures.labels(model=metric_name, reason="internal").inc()
            reply = Reply(
                500,
                encode_error(f"Internal server error ({type(exc).__name__}); see the server log."),
                {"content-type": _JSON},
            )
        self.metrics.requests.labels(model=metric_name, code=str(reply.status)).inc()
        self.metrics.request_seconds.labels(model=metric_name).observe(time.perf_counter() - t0)
        return reply

    async def _infer_reply(self, name: str, req: InferRequest, version: str | None) -> Reply:
        st = self._state(name, version)
        known = {o.name for o in OUTPUTS}
        if req.outputs is not None:
            for o in req.outputs:
                if o.name not in known:
                    raise BadRequestError(
                        f"Unknown output {o.name!r} requested; model {name!r} has outputs "
                        f"{', '.join(sorted(known))}."
                    )
            names = [o.name for o in req.outputs] or list(_DEFAULT_OUTPUTS)
        else:
            names = list(_DEFAULT_OUTPUTS)
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
            name, tensors, req.parameters, probabilities=want_proba, version=version
        )
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
        headers = {"content-type": "application/octet-stream" if hl is not None else _JSON}
        if hl is not None:
            headers[HEADER_LENGTH.lower()] = str(hl)
        return Reply(200, body, headers)

    def handle_set_thresholds(self, name: str, body: bytes, authorization: str | None) -> Reply:
        """Answer ``PUT /admin/models/{name}/thresholds`` with body ``{"thresholds": [...]}``.

        Thresholds are numbers, ``null`` (+inf: every input moves on) or ``"-inf"``. Needs
        ``Authorization: Bearer <token>`` matching ``$CASCADEKIT_ADMIN_TOKEN``; without a
        configured token the admin API is disabled (403). In-flight requests keep the thresholds
        they started with; new requests use the new ones.
        """
        try:
            if self.admin_token is None:
                raise ProtocolError(
                    "The admin API is disabled: set CASCADEKIT_ADMIN_TOKEN (or "
                    "ServeConfig.admin_token) before starting the server to enable it.",
                    403,
                )
            scheme, _, token = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), self.admin_token.encode()
            ):
                exc = ProtocolError(
                    "Expected 'Authorization: Bearer <token>' with the admin token; got "
                    + ("no Authorization header." if not authorization else "a wrong token."),
                    401,
                )
                reply = Reply.error(exc)
                reply.headers["www-authenticate"] = "Bearer"
                return reply
            st = self._state(name)
            from .protocol import _loads

            doc = _loads(body, "request body")
            if (
                not isinstance(doc, dict)
                or set(doc) != {"thresholds"}
                or not isinstance(doc["thresholds"], list)
            ):
                raise BadRequestError(
                    'Expected a JSON body {"thresholds": [t1, ...]} with one number per '
                    f"non-final stage; got {json.dumps(doc)[:100]}."
                )
            try:
                values = [decode_threshold(v) for v in doc["thresholds"]]
                cascade = st.served.cascade
                old = cascade.thresholds or ()
                cascade.thresholds = values  # validated; one atomic assignment
            except CascadeError as exc:
                raise BadRequestError(f"{exc}") from exc
            new = cascade.thresholds or ()
            for k, t in enumerate(new):
                self.metrics.threshold.labels(model=name, stage=str(k)).set(t)
            log.info("model %s: thresholds %s -> %s", name, old, new)
            return Reply.json(
                {
                    "model": name,
                    "thresholds": [encode_threshold(t) for t in new],
                    "previous": [encode_threshold(t) for t in old],
                }
            )
        except ProtocolError as exc:
            return Reply.error(exc)
