"""Serve a cascade over HTTP: the Open Inference Protocol (KServe v2), dynamic batching per stage,
a live threshold knob, graceful fallback to the student, and Prometheus metrics.

Install with ``pip install "cascadekit[serve]"``. Layers, each usable on its own:

- :mod:`cascadekit.oip` (outside this package): the v2 codec (JSON and binary tensor data),
  numpy only, shared with :class:`~cascadekit.adapters.RemoteModel`;
- :mod:`~cascadekit.serve.model`: :class:`ServedModel`, a cascade served under a name;
- :mod:`~cascadekit.serve.batching`: :class:`StageBatcher`, one dynamic batcher per stage;
- :mod:`~cascadekit.serve.service`: :class:`InferenceService`, the framework-free core
  (routing, fallbacks, readiness, draining), from raw bytes to a :class:`Reply`; beside it
  :mod:`~cascadekit.serve.replies` (:class:`Reply`, :class:`InferResult`),
  :mod:`~cascadekit.serve.model_state` (one served model's runtime state) and
  :mod:`~cascadekit.serve.admin` (the admin API's threshold changes);
- :mod:`~cascadekit.serve.app`: :func:`create_app`, the FastAPI front end, and :func:`run`;
- :mod:`~cascadekit.serve.workers`: several worker processes on one port
  (``cascadekit serve --workers N``) with shared metrics, thresholds, readiness and drain;
- :mod:`~cascadekit.serve.config`: :class:`ServeConfig` and :func:`load_config` (YAML);
- :mod:`~cascadekit.serve.demo`: the Fashion-MNIST demo cascade (``cascadekit serve --demo``);
- :mod:`~cascadekit.serve.launch`: start a server process and wait until it is ready (tests,
  benchmarks).

Examples
--------
>>> from cascadekit.serve import ServeConfig
>>> ServeConfig().host, ServeConfig().port
('127.0.0.1', 8000)
"""

from __future__ import annotations

from ..oip import (
    BadRequestError,
    DeadlineExceededError,
    ModelNotFoundError,
    ModelNotReadyError,
    OverloadedError,
    ProtocolError,
    TensorSpec,
)
from .app import create_app, run
from .batching import BatchPolicy, StageBatcher
from .config import ADMIN_TOKEN_ENV, ConfigError, ServeConfig, load_config
from .demo import fashion_mnist_model, tweet_sentiment_model
from .metrics import ServeMetrics
from .model import ServedModel
from .service import InferenceService, InferResult, Reply

__all__ = [
    "ADMIN_TOKEN_ENV",
    "BadRequestError",
    "BatchPolicy",
    "ConfigError",
    "DeadlineExceededError",
    "InferResult",
    "InferenceService",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "OverloadedError",
    "ProtocolError",
    "Reply",
    "ServeConfig",
    "ServeMetrics",
    "ServedModel",
    "StageBatcher",
    "TensorSpec",
    "create_app",
    "fashion_mnist_model",
    "load_config",
    "run",
    "tweet_sentiment_model",
]
