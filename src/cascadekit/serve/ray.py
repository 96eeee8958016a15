"""The cascade server on Ray Serve: one deployment per stage plus a router, each scaled on its own.

``cascadekit serve --backend ray`` (or ``serve run examples/ray_serve.yaml``) deploys:

- one **stage deployment** per cascade stage (``student``, ``teacher``, ...), holding that
  stage's model only. Calls from all router replicas are batched with ``@serve.batch``
  (``max_batch_size`` counts calls, i.e. blocks of inputs; ``batch_wait_timeout_s``), both
  changeable at run time through the deployment's ``user_config``;
- a **router** deployment, the HTTP ingress: the same FastAPI app, the same
  :class:`~cascadekit.serve.service.InferenceService` request handling and the same Open
  Inference Protocol interface as the single-process server (:func:`cascadekit.serve.create_app`),
  so clients cannot tell the difference. Only the stage calls differ: they go to the stage
  deployments through Ray Serve handles. The thresholds live in the router's ``user_config``
  (``{"thresholds": [...]}``): redeploying with a new value calls ``reconfigure()`` on every
  replica, without restarts.

Each deployment has its own ``num_replicas``, ``max_ongoing_requests``, ``max_queued_requests``
and CPUs (:class:`DeploymentOptions`). When a later stage is slow, overloaded (its queue is
full), failing or restarting (its replica died), its inputs keep the earlier stage's answer with
``fallback = true``; the request still succeeds.

Ray is imported when an application is built, never when cascadekit is imported; install it
with ``pip install "cascadekit[ray]"``.

Examples
--------
>>> opts = DeploymentOptions(num_replicas=2, num_cpus=0.5, max_batch_size=32)
>>> opts.deployment_options()["ray_actor_options"]
{'num_cpus': 0.5}
>>> opts.stage_user_config()
{'max_batch_size': 32, 'batch_wait_timeout_s': 0.002}
>>> import numpy as np
>>> from cascadekit import Cascade
>>> from cascadekit.serve import ServedModel, TensorSpec
>>> c = Cascade.from_models([lambda x: x, lambda x: 2 * x], score="margin", thresholds=[0.5],
...                         names=["student", "teacher"])
>>> app = build_app(ServedModel("toy", c, TensorSpec("x", ("FP32",), (-1, 2))))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._optional import require
from ..adapters import ModelAdapter
from ..cascade import Cascade
from ..errors import MissingDependencyError, ParameterError, StageError
from ..oip import DATATYPES, DeadlineExceededError, OverloadedError
from ..router import decode_threshold, encode_threshold
from .config import ServeConfig
from .model import ServedModel
from .service import InferenceService

__all__ = [
    "ROUTER_NAME",
    "DeploymentOptions",
    "RayInferenceService",
    "app_builder",
    "build_app",
    "deploy_config",
    "run",
]

#: Name of the router (HTTP ingress) deployment.
ROUTER_NAME = "router"


def _ray() -> tuple[Any, Any]:
    try:
        import ray
        from ray import serve
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            'The Ray Serve backend needs ray[serve]: pip install "cascadekit[ray]".'
        ) from exc
    return ray, serve


@dataclass(frozen=True)
class DeploymentOptions:
    """Scaling and batching of one deployment (a stage or the router).

    Parameters
    ----------
    num_replicas : int, default=1
    max_ongoing_requests : int, default=32
        Calls a replica works on at once (Ray Serve's own limit; keep it >= max_batch_size).
    max_queued_requests : int, default=256
        Calls waiting for a replica; beyond it the caller is refused at once (a later stage's
        inputs fall back, the router answers 503).
    num_cpus : float, default=0.5
        CPUs reserved per replica (fractions allowed). The default lets a router, a student and
        a teacher fit on a 2-core machine; give the model deployments more on a cluster.
    max_batch_size : int, default=16
        Stages only: calls (blocks of inputs from router requests) per model call.
    batch_wait_timeout_s : float, default=0.002
        Stages only: how long a batch waits for more calls after the first one.

    Examples
    --------
    >>> DeploymentOptions(num_replicas=0)
    Traceback (most recent call last):
    ...
    cascadekit.errors.ParameterError: Expected num_replicas to be a positive integer; got 0.
    """

    num_replicas: int = 1
    max_ongoing_requests: int = 32
    max_queued_requests: int = 256
    num_cpus: float = 0.5
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.002

    def __post_init__(self) -> None:
        for name in ("num_replicas", "max_ongoing_requests", "max_queued_requests"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(f"Expected {name} to be a positive integer; got {v!r}.")
        v = self.max_batch_size
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ParameterError(f"Expected max_batch_size to be a positive integer; got {v!r}.")
        for name in ("num_cpus", "batch_wait_timeout_s"):
            f = getattr(self, name)
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < math.inf:
                raise ParameterError(f"Expected {name} to be a number >= 0; got {f!r}.")

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options(...)``."""
        return {
            "num_replicas": self.num_replicas,
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": {"num_cpus": float(self.num_cpus)},
        }

    def stage_user_config(self) -> dict[str, Any]:
        """The ``user_config`` of a stage deployment (its ``@serve.batch`` settings)."""
        return {
            "max_batch_size": self.max_batch_size,
            "batch_wait_timeout_s": float(self.batch_wait_timeout_s),
        }


class _StageProxy(ModelAdapter):
    """Stands for a stage model that runs in its own deployment (never called in the router)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def forward(self, batch: Any) -> NDArray[np.floating[Any]]:
        raise StageError(
            f"Stage {self.name!r} runs in its own Ray Serve deployment; the router calls it "
            "through a deployment handle."
        )


class RayInferenceService(InferenceService):
    """:class:`InferenceService` whose stages run in Ray Serve deployments.

    Request decoding, routing, fallbacks, metrics, readiness and encoding are the parent's;
    only running a stage differs: the block of inputs goes to the stage's deployment handle,
    with the stage's timeout and the request's deadline. A full stage queue (Ray Serve's back
    pressure) counts as overload, a dead or failing replica as an error: for a later stage both
    fall back to the earlier stage's answer.

    Parameters
    ----------
    served : ServedModel
        The model's description; its stage models are replaced by proxies (they run elsewhere).
    config : ServeConfig
    handles : sequence of DeploymentHandle
        One per stage, in cascade order.
    """

    def __init__(self, served: ServedModel, config: ServeConfig, handles: Sequence[Any]) -> None:
        if len(handles) != served.cascade.n_stages:
            raise ParameterError(
                f"Expected one deployment handle per stage ({served.cascade.n_stages}); got "
                f"{len(handles)}."
            )
        super().__init__(served, replace(config, warmup=False))
        self.handles = list(handles)

    async def _run_stage(self, st: Any, k: int, batch: Any, deadline: float) -> np.ndarray:
        from ray.serve.exceptions import BackPressureError

        wait = deadline - time.monotonic()
        limit = st.timeouts[k]
        if limit is not None:
            wait = min(wait, limit)
        name = str(st.served.cascade.stages[k].name)
        if wait <= 0:
            raise DeadlineExceededError("The request's deadline passed before the stage ran.")
        x = np.ascontiguousarray(batch)
        response = self.handles[k].remote(x)

        async def result() -> Any:
            return await response

        try:
            out = await asyncio.wait_for(result(), wait)
        except asyncio.TimeoutError as exc:
            response.cancel()
            raise DeadlineExceededError(
                f"Stage {name!r} did not answer within {wait * 1e3:.0f} ms."
            ) from exc
        except BackPressureError as exc:
            raise OverloadedError(f"Stage {name!r} is overloaded: {exc}") from exc
        cascade = st.served.cascade
        return cascade.check_stage_output(k, out, x.shape[0])

    def set_thresholds(self, thresholds: Sequence[Any]) -> tuple[float, ...]:
        """Set the default thresholds of the served model (JSON form: None = +inf, "-inf")."""
        st = next(iter(self._models.values()))
        cascade = st.served.cascade
        cascade.thresholds = [decode_threshold(v) for v in thresholds]
        new = cascade.thresholds or ()
        for k, t in enumerate(new):
            self.metrics.threshold.labels(model=st.served.name, stage=str(k)).set(t)
        return new


def _to_float32(x: Any) -> Any:
    return np.asarray(x, dtype=np.float32)


class _StageReplica:
    """Body of a stage deployment: one stage model behind ``@serve.batch``."""

    def __init__(
        self, model: Any, name: str, warmup_shape: Sequence[int] | None, warmup_dtype: str
    ) -> None:
        self.model = model
        self.name = name
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"cascadekit-{name}")
        if warmup_shape is not None:
            self.model(np.zeros(tuple(warmup_shape), dtype=warmup_dtype))

    def _run(self, blocks: list[np.ndarray]) -> list[np.ndarray]:
        sizes = [int(b.shape[0]) for b in blocks]
        x = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)
        logits = np.asarray(self.model(x))
        return list(np.split(logits, np.cumsum(sizes)[:-1], axis=0))

    async def run_batch(self, blocks: list[np.ndarray]) -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        out: list[np.ndarray] = await loop.run_in_executor(self._pool, self._run, blocks)
        return out


_CLASSES: dict[str, Any] = {}


def _deployment_classes() -> tuple[Any, Any]:
    """The stage and router deployment classes (built once, when Ray is first needed)."""
    if _CLASSES:
        return _CLASSES["stage"], _CLASSES["router"]
    _, serve = _ray()

    class StageDeployment(_StageReplica):
        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
        async def infer(self, blocks: list[np.ndarray]) -> list[np.ndarray]:
            return await self.run_batch(blocks)

        def reconfigure(self, user_config: Mapping[str, Any]) -> None:
            if "max_batch_size" in user_config:
                self.infer.set_max_batch_size(int(user_config["max_batch_size"]))
            if "batch_wait_timeout_s" in user_config:
                self.infer.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))

        async def __call__(self, x: np.ndarray) -> np.ndarray:
            out: np.ndarray = await self.infer(x)
            return out

    @serve.ingress()
    class Router:
        def __init__(self, served: ServedModel, config: ServeConfig, *handles: Any) -> None:
            self.config = config
            self.service = RayInferenceService(served, config, handles)

        def reconfigure(self, user_config: Mapping[str, Any]) -> None:
            thresholds = user_config.get("thresholds")
            if thresholds is not None:
                self.service.set_thresholds(thresholds)

        def __serve_build_asgi_app__(self) -> Any:
            from .app import create_app

            return create_app(self.service, self.config)

    _CLASSES["stage"] = serve.deployment(StageDeployment)
    _CLASSES["router"] = serve.deployment(Router)
    return _CLASSES["stage"], _CLASSES["router"]


def _router_view(served: ServedModel) -> ServedModel:
    """The served model as the router sees it: same stages and thresholds, proxy models."""
    stages = [
        replace(st, model=_StageProxy(str(st.name)), outputs=None) for st in served.cascade.stages
    ]
    cascade = Cascade(stages, thresholds=served.cascade.thresholds)
    return replace(served, cascade=cascade, warmup_input=None)


def build_app(
    served: ServedModel,
    config: ServeConfig | None = None,
    *,
    router: DeploymentOptions | None = None,
    stages: Mapping[str, DeploymentOptions] | Sequence[DeploymentOptions] | None = None,
    thresholds: Sequence[float] | None = None,
) -> Any:
    """Build the Ray Serve application of a served cascade (not started yet).

    Parameters
    ----------
    served : ServedModel
        The cascade with live models (e.g. :func:`cascadekit.serve.fashion_mnist_model` or
        :func:`cascadekit.serve.load_config`). Each stage model is shipped to its own
        deployment, named after the stage.
    config : ServeConfig, optional
        Request handling of the router: timeouts per stage, body limit, request size limit.
        Its ``batching`` is not used (stages batch with ``@serve.batch``).
    router : DeploymentOptions, optional
        Scaling of the router (ingress) deployment.
    stages : mapping of stage name to DeploymentOptions, or one per stage, optional
        Scaling and batching of each stage deployment, e.g.
        ``{"student": DeploymentOptions(num_replicas=1), "teacher": DeploymentOptions(2)}``.
    thresholds : sequence of float, optional
        Initial thresholds (the router's ``user_config``); default: the cascade's.

    Returns
    -------
    ray.serve.Application
        Pass it to ``serve.run(app, route_prefix="/")``.
    """
    StageDeployment, Router = _deployment_classes()
    config = config or ServeConfig()
    cascade = served.cascade
    names = [str(st.name) for st in cascade.stages]
    if len(set(names)) != len(names) or ROUTER_NAME in names:
        raise ParameterError(
            f"Expected distinct stage names other than {ROUTER_NAME!r} (they name the "
            f"deployments); got {names}."
        )
    if stages is None:
        per_stage = [DeploymentOptions() for _ in names]
    elif isinstance(stages, Mapping):
        unknown = sorted(set(stages) - set(names))
        if unknown:
            raise ParameterError(f"Unknown stage(s) {unknown} in stages=; the stages are {names}.")
        per_stage = [stages.get(n, DeploymentOptions()) for n in names]
    else:
        per_stage = list(stages)
        if len(per_stage) != len(names):
            raise ParameterError(
                f"Expected one DeploymentOptions per stage ({len(names)}); got {len(per_stage)}."
            )
    models = cascade.live_models()
    spec = served.input
    warm_shape = [1] + [1 if d == -1 else int(d) for d in spec.shape[1:]]
    warm_dtype = DATATYPES[spec.datatypes[0]].name
    if served.preprocess is not None:  # warm up with what the models really receive
        warm_dtype = np.asarray(served.preprocess(np.zeros(1, dtype=warm_dtype))).dtype.name
    handles = []
    for name, model, opts in zip(names, models, per_stage, strict=True):
        dep = StageDeployment.options(
            name=name, user_config=opts.stage_user_config(), **opts.deployment_options()
        )
        handles.append(dep.bind(model, name, None if not config.warmup else warm_shape, warm_dtype))
    ths = cascade.thresholds if thresholds is None else tuple(thresholds)
    if ths is None:
        raise ParameterError("The cascade has no thresholds; calibrate it or pass thresholds=.")
    router_opts = router or DeploymentOptions()
    user_config = {"thresholds": [encode_threshold(float(t)) for t in ths]}
    return Router.options(
        name=ROUTER_NAME, user_config=user_config, **router_opts.deployment_options()
    ).bind(_router_view(served), config, *handles)


def app_builder(args: Mapping[str, Any]) -> Any:
    """Application builder for a Ray Serve config file (``import_path``).

    ``args`` (the config's ``args:``): either ``demo: true`` (the Fashion-MNIST demo cascade,
    with ``reduced: true`` for the small zoo) or ``config: path/to/cascade.yaml`` (the format of
    :func:`cascadekit.serve.load_config`). Scaling and batching come from the config file's
    ``deployments:`` section (by name: ``router`` and each stage's name), which overrides the
    defaults of :class:`DeploymentOptions`.

    Examples
    --------
    >>> app_builder({"demo": True, "config": "c.yaml"})
    Traceback (most recent call last):
    ...
    cascadekit.errors.ParameterError: Expected args with either demo: true or config: ...
    """
    unknown = sorted(set(args) - {"demo", "config", "reduced", "name", "stage_timeout"})
    demo, path = bool(args.get("demo", False)), args.get("config")
    if unknown or demo == (path is not None):
        raise ParameterError(
            "Expected args with either demo: true or config: <cascade YAML> (and optionally "
            f"reduced:, name:, stage_timeout: seconds for the demo); got {dict(args)}."
        )
    if demo:
        from .demo import fashion_mnist_model

        served = fashion_mnist_model(
            name=str(args.get("name", "fashion-mnist")), reduced=bool(args.get("reduced"))
        )
        config = ServeConfig(stage_timeout=float(args.get("stage_timeout", 1.0)))
    else:
        from .config import load_config

        served, config = load_config(os.fspath(path))  # type: ignore[arg-type]
    return build_app(served, config)


def run(
    served: ServedModel,
    config: ServeConfig | None = None,
    *,
    router: DeploymentOptions | None = None,
    stages: Mapping[str, DeploymentOptions] | Sequence[DeploymentOptions] | None = None,
    address: str | None = None,
    app_name: str = "cascadekit",
    blocking: bool = True,
) -> Any:
    """Deploy a served cascade on Ray Serve, HTTP on ``config.host:config.port``.

    Connects to the Ray cluster at ``address`` (``"auto"`` for a running one; by default a
    local Ray is started), starts Serve's HTTP proxy and runs the application at route ``/``.
    With ``blocking=True`` it serves until interrupted; otherwise it returns the router's
    deployment handle.
    """
    ray, serve = _ray()
    require("fastapi", "serve", "The Ray Serve backend")
    config = config or ServeConfig()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False)
    serve.start(http_options={"host": config.host, "port": config.port})
    app = build_app(served, config, router=router, stages=stages)
    return serve.run(app, name=app_name, route_prefix="/", blocking=blocking)


def deploy_config(
    config: str | os.PathLike[str] | Mapping[str, Any],
    *,
    address: str | None = None,
    blocking: bool = True,
    timeout: float = 300.0,
) -> Any:
    """Deploy a Ray Serve config file (what ``serve run config.yaml`` does), e.g. the example.

    Deploying the same file again with only ``user_config``, ``num_replicas`` or other
    lightweight fields changed updates the running replicas in place: a new router
    ``user_config: {thresholds: [...]}`` reaches every router replica through
    ``reconfigure()``, without a restart.

    Parameters
    ----------
    config : path or mapping
        A Ray Serve deploy config (``applications:`` with ``import_path:
        cascadekit.serve.ray:app_builder``; see ``examples/ray_serve.yaml``).
    address : str, optional
        Ray cluster address (``"auto"`` for a running one); by default a local Ray is started
        when none is connected.
    blocking : bool, default=True
        Wait until every application is running (or raise after ``timeout`` seconds).

    Returns
    -------
    ray.serve.schema.ServeDeploySchema
        The validated config.
    """
    ray, serve = _ray()
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    if isinstance(config, Mapping):
        doc: Any = dict(config)
    else:
        import yaml

        with open(os.fspath(config), encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    schema = ServeDeploySchema.model_validate(doc)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False)
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(), proxy_location=schema.proxy_location
    )
    client.deploy_apps(schema)
    if blocking:
        names = [a.name for a in schema.applications]
        end = time.monotonic() + timeout
        while True:
            apps = serve.status().applications
            states = {n: str(getattr(apps.get(n), "status", "")) for n in names}
            if all(s.endswith("RUNNING") for s in states.values()):
                break
            failed = {n: s for n, s in states.items() if "FAIL" in s}
            if failed:
                msg = {n: apps[n].message for n in failed}
                raise StageError(f"Ray Serve could not deploy {sorted(failed)}: {msg}")
            if time.monotonic() > end:
                raise StageError(
                    f"Ray Serve applications not running after {timeout:g} s: {states}."
                )
            time.sleep(0.5)
    return schema


def serve_from_cli(
    served: ServedModel | None,
    config: ServeConfig,
    *,
    ray_config: str | os.PathLike[str] | None = None,
    address: str | None = None,
) -> None:
    """``cascadekit serve --backend ray``: deploy, then serve until interrupted (Ctrl-C).

    With ``ray_config`` (a Ray Serve config file such as ``examples/ray_serve.yaml``) the file
    decides scaling and the cascade; otherwise ``served`` is deployed with one replica per
    deployment on ``config.host:config.port``.
    """
    ray, serve = _ray()
    if ray_config is not None:
        deploy_config(ray_config, address=address)
    else:
        if served is None:
            raise ParameterError("Expected a cascade (--demo or a config file) or --ray-config.")
        run(served, config, address=address, blocking=False)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
