"""Server settings (:class:`ServeConfig`) and cascades described in YAML files.

A YAML file describes one served model::

    name: my-cascade               # model name in the URLs
    input: {name: image, datatypes: [UINT8, FP32], shape: [-1, 28, 28], range: [0, 255]}
    # ... or texts: {name: text, datatype: BYTES, shape: [-1], max_bytes: 4096} (UTF-8 strings;
    # the stages get an array of str)
    router: router.json            # score, temperature, thresholds, costs (cascadekit calibrate)
    # ... or, without a router file:
    score: max_softmax
    temperature: 1.0
    thresholds: [0.93]             # p_max >= 0.93 stays on the student
    score_form: probability        # default: max_softmax / entropy thresholds written as p_max
                                   # and -H; "log" for the routing form (log-odds, -log H)
    stages:
      - name: student
        onnx: student.onnx         # or torch: {factory: "pkg.mod:build", state_dict: s.pt,
        cost: 1                    #            kwargs: {...}}, torchscript: m.pt,
        timeout_ms: 1000           #    callable: "pkg.mod:fn", zoo: student (Fashion-MNIST zoo)
        batching: {max_batch_size: 128}
      - name: teacher
        onnx: teacher.onnx
    batching: {max_batch_size: 64, max_wait_ms: 2, max_queue: 2048}   # default of every stage
    server: {host: 127.0.0.1, port: 8000, max_body_mb: 16, request_timeout_ms: 30000,
             stage_timeout_ms: 1000, drain_timeout_s: 10, body_timeout_s: 30,
             limit_concurrency: 512, threshold_override: allow, trusted_hosts: [localhost],
             docs: true}
    monitoring: {window: 1000, false_alarms_per_100k: 0.5, audit_rate: 0.01, epsilon: 0.01,
                 reference: calibration_scores.npy, log: monitor.jsonl}   # optional

The routing rule is one :class:`~cascadekit.router.Router`: the router file's, with the YAML's
``score``, ``temperature``, ``thresholds`` and each stage's ``cost``, ``name``, ``class_map``
and ``other_class`` (a specialized student's "other" column) taking precedence, or the YAML's
alone. :meth:`Router.to_cascade(models=...) <cascadekit.router.Router.to_cascade>` turns it into
the served cascade, so a specialized router answers in the teacher's classes and keeps its
"other" gate, and a learned chain policy is served by its exit deciders.

Relative paths are resolved against the YAML file's folder. Every mistake raises
:class:`ConfigError` naming the field, what was expected and what was found.

**A YAML config is code.** ``callable:`` and ``torch: {factory: ...}`` import and run any
Python object they name, ``torchscript:`` and ``onnx:`` load model programs, and a ``router:``
file decides the routing. Load only configs (and the files they name) that you would run as a
script; never build one from a client's input.

Examples
--------
>>> ServeConfig().host
'127.0.0.1'
>>> ServeConfig(port=-1)
Traceback (most recent call last):
...
cascadekit.serve.config.ConfigError: Expected port to be an integer in [0, 65535]; got -1.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CascadeError, DataNotFoundError, ParameterError
from ..monitoring.serving import MonitorSettings
from ..oip import DATATYPES, TensorSpec
from .batching import BatchPolicy
from .model import ServedModel, text_input

__all__ = ["ADMIN_TOKEN_ENV", "OVERRIDE_POLICIES", "ConfigError", "ServeConfig", "load_config"]

#: What a request's ``parameters.threshold`` may do (``ServeConfig.threshold_override``).
OVERRIDE_POLICIES = ("allow", "clamp", "token")

#: Environment variable holding the admin bearer token (unset: the admin API answers 403).
ADMIN_TOKEN_ENV = "CASCADEKIT_ADMIN_TOKEN"


class ConfigError(CascadeError):
    """A server setting or a cascade description is invalid."""


def _positive(name: str, v: Any, allow_zero: bool = False) -> float:
    ok = (
        not isinstance(v, bool)
        and isinstance(v, (int, float))
        and math.isfinite(v)
        and (v >= 0 if allow_zero else v > 0)
    )
    if not ok:
        what = "a non-negative" if allow_zero else "a positive"
        raise ConfigError(f"Expected {name} to be {what} number; got {v!r}.")
    return float(v)


@dataclass
class ServeConfig:
    """Settings of a cascade server.

    Parameters
    ----------
    host : str, default="127.0.0.1"
        Interface to bind (loopback only by default).
    port : int, default=8000
        0 picks a free port.
    max_body_bytes : int, default=16 MiB
        Larger request bodies are refused with 413.
    max_request_inputs : int, default=4096
        Largest number of inputs (first dimension) in one request.
    request_timeout : float, default=30.0
        Deadline in seconds of a request that sets no ``parameters.timeout``.
    stage_timeout : float or sequence, default=1.0
        Longest wait in seconds for a later stage (teacher) before its inputs fall back to the
        earlier stage's answer; a sequence gives one value (or None) per stage.
    batching : BatchPolicy or sequence of BatchPolicy
        Dynamic batching of every stage, or one policy per stage.
    drain_timeout : float, default=10.0
        On shutdown, how long in-flight requests may take to finish.
    keep_alive_timeout : float, default=75.0
        Seconds an idle keep-alive connection stays open. Keep it longer than the idle timeout
        of your clients and load balancers (httpx: 5 s, AWS ALB: 60 s): when the server closes
        an idle connection at the moment a client reuses it, that request is lost in transit.
    retry_after : float, default=1.0
        Seconds suggested in the ``Retry-After`` header of a 503.
    admin_token : str, optional
        Bearer token of the admin API; defaults to ``$CASCADEKIT_ADMIN_TOKEN`` (read when the
        service is built). Without one the admin API answers 403.
    warmup : bool, default=True
        Run every stage once at start-up before reporting ready.
    torch_threads : int, optional
        ``torch.set_num_threads`` at start-up, when torch is in use.
    body_timeout : float, default=30.0
        Seconds a client may take to send its whole request body; past it, 408.
    limit_concurrency : int or None, default=512
        Most connections and requests served at once (uvicorn answers 503 beyond it).
    threshold_override : {"allow", "clamp", "token"}, default="allow"
        What ``parameters.threshold`` in an inference request may do: ``"allow"`` applies it
        as sent (any client can send every input to the teacher); ``"clamp"`` clips it into
        ``threshold_clamp``; ``"token"`` applies it only with the admin bearer token (403
        otherwise).
    threshold_clamp : (float, float), optional
        ``(low, high)`` for ``threshold_override="clamp"`` (required then).
    trusted_hosts : sequence of str, optional
        Host names (``Host`` header, without the port) the server answers; others get 400.
        Set it when a browser can reach the server (it defeats DNS rebinding). None: any.
    docs : bool, default=True
        Serve ``/docs`` (Swagger UI, loaded from a CDN), ``/redoc`` and ``/openapi.json``.
    monitoring : MonitorSettings, optional
        Drift monitoring, shadow audits and the recalibration log
        (:mod:`cascadekit.monitoring.serving`); off when None.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 16 * 1024 * 1024
    max_request_inputs: int = 4096
    request_timeout: float = 30.0
    stage_timeout: float | Sequence[float | None] = 1.0
    batching: BatchPolicy | Sequence[BatchPolicy] = field(default_factory=BatchPolicy)
    drain_timeout: float = 10.0
    keep_alive_timeout: float = 75.0
    retry_after: float = 1.0
    admin_token: str | None = None
    warmup: bool = True
    torch_threads: int | None = None
    body_timeout: float = 30.0
    limit_concurrency: int | None = 512
    threshold_override: str = "allow"
    threshold_clamp: tuple[float, float] | None = None
    trusted_hosts: Sequence[str] | None = None
    docs: bool = True
    monitoring: MonitorSettings | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"Expected host to be a non-empty string; got {self.host!r}.")
        if (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not (0 <= self.port <= 65535)
        ):
            raise ConfigError(f"Expected port to be an integer in [0, 65535]; got {self.port!r}.")
        for name in ("max_body_bytes", "max_request_inputs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"Expected {name} to be a positive integer; got {v!r}.")
        _positive("request_timeout", self.request_timeout)
        _positive("drain_timeout", self.drain_timeout, allow_zero=True)
        _positive("keep_alive_timeout", self.keep_alive_timeout)
        _positive("retry_after", self.retry_after, allow_zero=True)
        _positive("body_timeout", self.body_timeout)
        lc = self.limit_concurrency
        if lc is not None and (isinstance(lc, bool) or not isinstance(lc, int) or lc < 1):
            raise ConfigError(
                f"Expected limit_concurrency to be a positive integer or None; got {lc!r}."
            )
        if self.threshold_override not in OVERRIDE_POLICIES:
            raise ConfigError(
                f"Expected threshold_override to be one of {', '.join(OVERRIDE_POLICIES)}; got "
                f"{self.threshold_override!r}."
            )
        clamp = self.threshold_clamp
        if clamp is not None:
            ok = (
                isinstance(clamp, (tuple, list))
                and len(clamp) == 2
                and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
                    for v in clamp
                )
                and clamp[0] <= clamp[1]
            )
            if not ok:
                raise ConfigError(
                    f"Expected threshold_clamp to be [low, high] with low <= high; got {clamp!r}."
                )
            self.threshold_clamp = (float(clamp[0]), float(clamp[1]))
        if self.threshold_override == "clamp" and self.threshold_clamp is None:
            raise ConfigError(
                'threshold_override="clamp" needs threshold_clamp=(low, high): the range '
                "per-request thresholds are clipped into."
            )
        hosts = self.trusted_hosts
        if hosts is not None:
            if isinstance(hosts, str) or not all(isinstance(h, str) and h for h in hosts):
                raise ConfigError(
                    f"Expected trusted_hosts to be a list of host names; got {hosts!r}."
                )
            self.trusted_hosts = [h.lower() for h in hosts]
        if isinstance(self.stage_timeout, (int, float)):
            _positive("stage_timeout", self.stage_timeout)
        else:
            for v in self.stage_timeout:
                if v is not None:
                    _positive("each stage_timeout", v)
        if not isinstance(self.batching, BatchPolicy) and not all(
            isinstance(b, BatchPolicy) for b in self.batching
        ):
            raise ConfigError("Expected batching to be a BatchPolicy or a list of them.")
        if self.monitoring is not None and not isinstance(self.monitoring, MonitorSettings):
            raise ConfigError(
                "Expected monitoring to be a cascadekit.monitoring.serving.MonitorSettings or "
                f"None; got {type(self.monitoring).__name__}."
            )

    def policy(self, stage: int, n_stages: int) -> BatchPolicy:
        """Batching policy of ``stage``."""
        if isinstance(self.batching, BatchPolicy):
            return self.batching
        if len(self.batching) != n_stages:
            raise ConfigError(
                f"Expected one batching policy per stage ({n_stages}); got {len(self.batching)}."
            )
        return self.batching[stage]

    def timeout(self, stage: int, n_stages: int) -> float | None:
        """Longest wait in seconds for ``stage`` (None: only the request's deadline)."""
        if isinstance(self.stage_timeout, (int, float)):
            return None if stage == 0 else float(self.stage_timeout)
        if len(self.stage_timeout) != n_stages:
            raise ConfigError(
                f"Expected one stage_timeout per stage ({n_stages}); got {len(self.stage_timeout)}."
            )
        v = self.stage_timeout[stage]
        return None if v is None else float(v)

    def resolved_admin_token(self) -> str | None:
        """``admin_token`` or ``$CASCADEKIT_ADMIN_TOKEN``; None (admin disabled) if neither."""
        return self.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None


# ------------------------------------------------------------------------------------ YAML


def _load_yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from ..errors import MissingDependencyError

        raise MissingDependencyError(
            'Reading a server config needs pyyaml: pip install "cascadekit[serve]".'
        ) from exc
    if not path.is_file():
        raise DataNotFoundError(
            f"Expected a server config file at {str(path)!r}; nothing is there."
        )
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{str(path)!r} is not valid YAML: {exc}") from exc


def _mapping(doc: Any, where: str) -> dict[str, Any]:
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"Expected {where} to be a mapping; got {type(doc).__name__} {doc!r}.")
    return doc


def _check_keys(doc: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    extra = sorted(set(doc) - set(allowed))
    if extra:
        raise ConfigError(
            f"Unknown key(s) {', '.join(map(repr, extra))} in {where}; expected some of "
            f"{', '.join(allowed)}."
        )


def _batching(doc: Any, where: str, base: BatchPolicy) -> BatchPolicy:
    d = _mapping(doc, where)
    _check_keys(d, ("max_batch_size", "max_wait_ms", "max_queue"), where)
    try:
        return BatchPolicy(
            max_batch_size=d.get("max_batch_size", base.max_batch_size),
            max_wait=_positive(f"{where}.max_wait_ms", d["max_wait_ms"], allow_zero=True) / 1e3
            if "max_wait_ms" in d
            else base.max_wait,
            max_queue=d.get("max_queue", base.max_queue),
        )
    except CascadeError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"In {where}: {exc}") from exc


def _import_object(spec: Any, where: str) -> Any:
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f'Expected {where} to be "package.module:attribute"; got {spec!r}.')
    mod_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Could not import {spec!r} for {where}: {exc}.") from exc
    return obj


def _path(base: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str):
        raise ConfigError(f"Expected {where} to be a file path; got {value!r}.")
    p = Path(value)
    p = p if p.is_absolute() else base / p
    if not p.exists():
        raise DataNotFoundError(f"{where}: expected a file at {str(p)!r}; nothing is there.")
    return p


_MODEL_KINDS = ("onnx", "torch", "torchscript", "callable", "zoo")


def _stage_model(doc: Mapping[str, Any], base: Path, where: str, zoo_cache: dict[str, Any]) -> Any:
    kinds = [k for k in _MODEL_KINDS if k in doc]
    if len(kinds) != 1:
        raise ConfigError(
            f"Expected {where} to name its model with exactly one of {', '.join(_MODEL_KINDS)}; "
            f"got {kinds or 'none'}."
        )
    kind = kinds[0]
    batch = doc.get("model_batch_size", 256)
    if kind == "onnx":
        from ..adapters import OnnxModel

        return OnnxModel(str(_path(base, doc["onnx"], f"{where}.onnx")), batch_size=batch)
    if kind == "callable":
        fn = _import_object(doc["callable"], f"{where}.callable")
        if not callable(fn):
            raise ConfigError(f"{where}.callable {doc['callable']!r} is not callable.")
        return fn
    from ..adapters import TorchModel
    from ..costs import import_torch

    torch = import_torch()
    if kind == "torchscript":
        module = torch.jit.load(str(_path(base, doc["torchscript"], f"{where}.torchscript")))
        return TorchModel(module, batch_size=batch)
    if kind == "torch":
        spec = _mapping(doc["torch"], f"{where}.torch")
        _check_keys(spec, ("factory", "kwargs", "state_dict"), f"{where}.torch")
        factory = _import_object(spec.get("factory"), f"{where}.torch.factory")
        module = factory(**_mapping(spec.get("kwargs"), f"{where}.torch.kwargs"))
        if "state_dict" in spec:
            state = torch.load(
                _path(base, spec["state_dict"], f"{where}.torch.state_dict"),
                map_location="cpu",
                weights_only=True,
            )
            try:
                module.load_state_dict(state)
            except RuntimeError as exc:
                raise ConfigError(
                    f"{where}.torch.state_dict does not fit the module built by "
                    f"{spec['factory']!r}: {str(exc).splitlines()[0]}"
                ) from exc
        return TorchModel(module, batch_size=batch)
    # zoo
    if "zoo" not in zoo_cache:
        from ..data.zoo import load_fashion_mnist_zoo

        zoo_cache["zoo"] = load_fashion_mnist_zoo(reduced=bool(doc.get("zoo_reduced", False)))
    zoo = zoo_cache["zoo"]
    name = doc["zoo"]
    if name not in zoo.models:
        raise ConfigError(f"Expected {where}.zoo to be one of {list(zoo.names)}; got {name!r}.")
    return TorchModel(zoo.models[name], batch_size=batch, name=name)


def load_config(path: str | os.PathLike[str]) -> tuple[ServedModel, ServeConfig]:
    """Read a cascade and its server settings from a YAML file (format in the module docs).

    The file is code: its ``callable:``, ``torch:`` and ``torchscript:`` stages import and run
    what they name. Load only files you trust as you would a script.

    Returns
    -------
    (ServedModel, ServeConfig)

    Raises
    ------
    ConfigError
        A field is missing, unknown or invalid; the message names it.
    DataNotFoundError
        The YAML file or a model file it names does not exist.
    """
    from ..router import Router, decode_threshold
    from ..scores import from_probability_form

    p = Path(path)
    doc = _mapping(_load_yaml(p), str(p))
    base = p.parent
    _check_keys(
        doc,
        (
            "name",
            "version",
            "input",
            "router",
            "score",
            "temperature",
            "thresholds",
            "score_form",
            "stages",
            "batching",
            "server",
            "class_names",
            "monitoring",
        ),
        str(p),
    )
    name = doc.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"Expected 'name' to be a model name without '/'; got {name!r}.")
    inp = _mapping(doc.get("input"), "'input'")
    _check_keys(inp, ("name", "datatypes", "datatype", "shape", "range", "max_bytes"), "'input'")
    datatypes = inp.get("datatypes", [inp.get("datatype", "FP32")])
    if isinstance(datatypes, str):
        datatypes = [datatypes]
    texts = datatypes == ["BYTES"]
    if not datatypes or (not texts and any(d not in DATATYPES or d == "BYTES" for d in datatypes)):
        raise ConfigError(
            f"Expected input.datatypes to be numeric protocol datatypes; got {datatypes!r}. "
            "For texts, use [BYTES] alone."
        )
    shape = inp.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and (d == -1 or d > 0) for d in shape)
    ):
        raise ConfigError(
            f"Expected input.shape to be a list of positive integers or -1, batch first (e.g. "
            f"[-1, 28, 28]); got {shape!r}."
        )
    max_bytes = inp.get("max_bytes")
    if texts and shape not in ([-1], [-1, 1]):
        raise ConfigError(
            f"Expected input.shape of a BYTES (texts) input to be [-1] or [-1, 1] (a batch of "
            f"strings); got {shape!r}."
        )
    if max_bytes is not None and (
        not texts or isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1
    ):
        raise ConfigError(
            f"Expected input.max_bytes to be a positive integer (longest text in UTF-8 bytes), "
            f"with datatype BYTES; got {max_bytes!r} with {datatypes!r}."
        )
    rng = inp.get("range")
    if rng is not None and not (
        isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng)
    ):
        raise ConfigError(f"Expected input.range to be [low, high]; got {rng!r}.")
    spec = TensorSpec(
        str(inp.get("name", "input")),
        tuple(datatypes),
        (-1, *shape[1:]),
        None if rng is None else (float(rng[0]), float(rng[1])),
    )

    router = Router.load(_path(base, doc["router"], "router")) if "router" in doc else None
    score = doc.get("score", router.score if router else "energy")
    temperature = doc.get("temperature", router.temperature if router else 1.0)
    raw_ths = doc.get("thresholds", None)
    thresholds = (
        [decode_threshold(v) for v in raw_ths]
        if isinstance(raw_ths, list)
        else ([float(raw_ths)] if isinstance(raw_ths, (int, float)) else None)
    )
    if raw_ths is not None and thresholds is None:
        raise ConfigError(f"Expected thresholds to be a list of numbers; got {raw_ths!r}.")
    form = doc.get("score_form", "probability")
    if form not in ("probability", "log"):
        raise ConfigError(
            f"Expected score_form to be 'probability' (thresholds written as p_max for max_softmax "
            f"and as -H for entropy) or 'log' (log-odds and -log H, as router files store "
            f"them); got {form!r}."
        )
    if thresholds is not None and form == "probability":
        thresholds = [from_probability_form(str(score), t) for t in thresholds]
    if thresholds is None and router is not None:
        thresholds = list(router.thresholds)
    if thresholds is None:
        raise ConfigError(
            "The config sets no thresholds: add 'thresholds: [...]' or 'router: router.json' "
            "(written by `cascadekit calibrate ... --save-router`)."
        )

    stage_docs = doc.get("stages")
    if not isinstance(stage_docs, list) or len(stage_docs) < 2:
        raise ConfigError(
            f"Expected 'stages' to list at least 2 stages (student first, teacher last); got "
            f"{stage_docs!r}."
        )
    server = _mapping(doc.get("server"), "'server'")
    _check_keys(
        server,
        (
            "host",
            "port",
            "max_body_mb",
            "max_request_inputs",
            "request_timeout_ms",
            "stage_timeout_ms",
            "drain_timeout_s",
            "keep_alive_s",
            "retry_after_s",
            "warmup",
            "torch_threads",
            "body_timeout_s",
            "limit_concurrency",
            "threshold_override",
            "threshold_clamp",
            "trusted_hosts",
            "docs",
        ),
        "'server'",
    )
    default_policy = _batching(doc.get("batching"), "'batching'", BatchPolicy())
    default_stage_timeout = (
        _positive("server.stage_timeout_ms", server["stage_timeout_ms"]) / 1e3
        if "stage_timeout_ms" in server
        else 1.0
    )
    zoo_cache: dict[str, Any] = {}
    models, costs, names, class_maps, others, policies, timeouts = [], [], [], [], [], [], []
    for i, sd in enumerate(stage_docs):
        where = f"stages[{i}]"
        sd = _mapping(sd, where)
        _check_keys(
            sd,
            (
                *_MODEL_KINDS,
                "name",
                "cost",
                "batching",
                "timeout_ms",
                "model_batch_size",
                "class_map",
                "other_class",
                "zoo_reduced",
            ),
            where,
        )
        models.append(_stage_model(sd, base, where, zoo_cache))
        costs.append(
            sd.get(
                "cost",
                router.costs[i] if router and router.costs and i < len(router.costs) else 1.0,
            )
        )
        names.append(sd.get("name") or _entry(router.stage_names if router else None, i))
        class_maps.append(sd.get("class_map", _entry(router.class_maps if router else None, i)))
        others.append(sd.get("other_class", _entry(router.other_class if router else None, i)))
        policies.append(_batching(sd.get("batching"), f"{where}.batching", default_policy))
        timeouts.append(
            _positive(f"{where}.timeout_ms", sd["timeout_ms"]) / 1e3
            if "timeout_ms" in sd
            else (None if i == 0 else default_stage_timeout)
        )
    # the YAML's fields and the router file make one rule; the rule makes the cascade
    rule = Router(score=score, thresholds=thresholds) if router is None else router
    rule = replace(
        rule,
        score=score,
        score_params=rule.score_params if score == rule.score else None,
        temperature=float(temperature),
        thresholds=list(thresholds),
        costs=[float(c) for c in costs],
        stage_names=names,
        class_maps=class_maps,
        other_class=others,
    )
    if rule.policy is None and len(rule.thresholds) != len(models) - 1:
        raise ConfigError(
            f"The cascade in {str(p)!r} is invalid: Expected {len(models) - 1} threshold(s) for a "
            f"{len(models)}-stage cascade; got {list(rule.thresholds)}."
        )
    try:
        cascade = rule.to_cascade(models=models)
    except CascadeError as exc:
        raise ConfigError(f"The cascade in {str(p)!r} is invalid: {exc}") from exc
    dtype = np.float32
    preprocess: Callable[[Any], Any] = lambda a: np.asarray(a, dtype=dtype)  # noqa: E731
    warmup_input = None
    if texts:  # strings in: the stages get an array of str
        preprocess, warmup_input = text_input(spec, max_bytes)
    cfg_kwargs: dict[str, Any] = {
        "batching": policies,
        "stage_timeout": timeouts,
    }
    if "host" in server:
        cfg_kwargs["host"] = server["host"]
    if "port" in server:
        cfg_kwargs["port"] = server["port"]
    if "max_body_mb" in server:
        cfg_kwargs["max_body_bytes"] = int(
            _positive("server.max_body_mb", server["max_body_mb"]) * 1024 * 1024
        )
    if "max_request_inputs" in server:
        cfg_kwargs["max_request_inputs"] = server["max_request_inputs"]
    if "request_timeout_ms" in server:
        cfg_kwargs["request_timeout"] = (
            _positive("server.request_timeout_ms", server["request_timeout_ms"]) / 1e3
        )
    if "drain_timeout_s" in server:
        cfg_kwargs["drain_timeout"] = server["drain_timeout_s"]
    if "keep_alive_s" in server:
        cfg_kwargs["keep_alive_timeout"] = server["keep_alive_s"]
    if "retry_after_s" in server:
        cfg_kwargs["retry_after"] = server["retry_after_s"]
    if "warmup" in server:
        cfg_kwargs["warmup"] = bool(server["warmup"])
    if "torch_threads" in server:
        cfg_kwargs["torch_threads"] = server["torch_threads"]
    if "body_timeout_s" in server:
        cfg_kwargs["body_timeout"] = server["body_timeout_s"]
    for key in ("limit_concurrency", "threshold_override", "threshold_clamp", "trusted_hosts"):
        if key in server:
            cfg_kwargs[key] = server[key]
    if "docs" in server:
        cfg_kwargs["docs"] = bool(server["docs"])
    if "monitoring" in doc:
        try:
            cfg_kwargs["monitoring"] = MonitorSettings.from_dict(doc["monitoring"], base, name)
        except ParameterError as exc:
            raise ConfigError(str(exc)) from exc
    config = ServeConfig(**cfg_kwargs)
    class_names = doc.get("class_names")
    served = ServedModel(
        name=name,
        cascade=cascade,
        input=spec,
        preprocess=preprocess,
        version=str(doc.get("version", "1")),
        class_names=None if class_names is None else [str(c) for c in class_names],
        warmup_input=warmup_input,
    )
    return served, config


def _entry(values: Sequence[Any] | None, i: int) -> Any:
    """``values[i]``, or None when there are no values (or too few)."""
    return None if values is None or i >= len(values) else values[i]


def with_overrides(config: ServeConfig, **changes: Any) -> ServeConfig:
    """A copy of ``config`` with ``changes`` (None values are ignored), validated again.

    Examples
    --------
    >>> with_overrides(ServeConfig(), port=9000, host=None).port
    9000
    """
    return replace(config, **{k: v for k, v in changes.items() if v is not None})
