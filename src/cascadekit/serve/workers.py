"""Several worker processes behind one port: ``cascadekit serve --workers N``.

:func:`run_workers` binds the port once and starts N uvicorn worker processes on it (uvicorn's
own supervisor: it restarts a worker that dies). Each worker loads the models itself and runs its
own :class:`~cascadekit.serve.InferenceService`. What must stay one server is shared:

- **metrics**: prometheus_client's multiprocess mode. The server makes a temporary directory,
  points ``PROMETHEUS_MULTIPROC_DIR`` at it for the workers and removes it on exit (when
  ``PROMETHEUS_MULTIPROC_DIR`` is already set, that directory is used, emptied of an earlier
  run's ``*.db`` files at start and kept); ``/metrics``
  on any worker adds every worker's counters and histograms up. The gauges show the most recent
  value any worker set (``cascadekit_threshold``: the same in every worker;
  ``cascadekit_teacher_share``: the last answering worker's share, the exact one is
  ``cascadekit_inputs_total`` of the last stage over all stages).
- **state**: a small memory-mapped file, :class:`SharedState`, with a version counter that each
  worker reads on every request (about 200 ns) and re-reads the document only when
  it moved. An admin threshold change in one worker is written there before its answer leaves,
  so every request admitted after it, in any worker, uses the new thresholds. Readiness is the
  server's: ``/v2/health/ready`` is 200 only when every worker is warmed up and its first stage
  answers. A drain is the server's: on SIGINT/SIGTERM the supervisor marks the state draining
  before it stops the workers, so every worker refuses new requests (503 with ``Retry-After``)
  and reports not ready while in-flight ones finish.

Examples
--------
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "state")
>>> state = SharedState.create(path, n_workers=1)
>>> state.all_ready()
False
>>> state.set_ready(str(os.getpid()), True)
2
>>> state.all_ready()
True
>>> state.set_draining()
>>> state.read()[1]["draining"], state.all_ready()
(True, False)
>>> state.close()
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import mmap
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import ParameterError
from .config import ServeConfig, load_config, with_overrides
from .model import ServedModel

__all__ = [
    "SPEC_ENV",
    "STATE_ENV",
    "ServeSpec",
    "SharedState",
    "check_workers",
    "prepare_metrics_dir",
    "run_workers",
    "worker_app",
]

log = logging.getLogger("cascadekit.serve")

#: The environment variable that hands a worker its :class:`ServeSpec` (JSON).
SPEC_ENV = "CASCADEKIT_WORKER_SPEC"
#: The environment variable that holds the path of the workers' :class:`SharedState` file.
STATE_ENV = "CASCADEKIT_WORKER_STATE"
#: Where the supervisor points prometheus_client's multiprocess mode.
PROMETHEUS_ENV = "PROMETHEUS_MULTIPROC_DIR"

_HEADER = struct.Struct("<QI")  # version, length of the JSON document
_SIZE = 1 << 16


class SharedState:
    """The state the workers of one server share: a memory-mapped file holding a version counter
    and a JSON document (``n_workers``, ``draining``, ``thresholds`` by model, ``ready`` by
    worker: ``"<pid>/<service id>"``).

    Writers take an exclusive ``flock`` on the file, rewrite the document and bump the version;
    :meth:`version` reads the counter without a lock (the per-request check), :meth:`read` takes
    a shared lock.

    Parameters
    ----------
    path : str or Path
        The file, made by :meth:`create`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, _SIZE)

    @classmethod
    def create(cls, path: str | os.PathLike[str], n_workers: int) -> SharedState:
        """Make the file for a server of ``n_workers`` workers and open it."""
        with open(path, "wb") as f:
            f.truncate(_SIZE)
        state = cls(path)
        state.update(lambda doc: doc.update(n_workers=n_workers))
        return state

    def close(self) -> None:
        """Unmap and close the file."""
        self._map.close()
        os.close(self._fd)

    @contextlib.contextmanager
    def _locked(self, kind: int) -> Iterator[None]:
        fcntl.flock(self._fd, kind)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def version(self) -> int:
        """The version counter (moves on every change)."""
        version: int = _HEADER.unpack_from(self._map, 0)[0]
        return version

    def _doc(self) -> tuple[int, dict[str, Any]]:
        version, length = _HEADER.unpack_from(self._map, 0)
        raw = self._map[_HEADER.size : _HEADER.size + length]
        doc = json.loads(raw) if length else {}
        doc.setdefault("n_workers", 1)
        doc.setdefault("draining", False)
        doc.setdefault("thresholds", {})
        doc.setdefault("ready", {})
        return version, doc

    def read(self) -> tuple[int, dict[str, Any]]:
        """The version and the document."""
        with self._locked(fcntl.LOCK_SH):
            return self._doc()

    def update(self, change: Callable[[dict[str, Any]], Any]) -> int:
        """Apply ``change`` to the document in place, store it and return the new version."""
        with self._locked(fcntl.LOCK_EX):
            version, doc = self._doc()
            change(doc)
            raw = json.dumps(doc).encode()
            if _HEADER.size + len(raw) > _SIZE:
                raise ParameterError(
                    f"The workers' shared state needs {len(raw)} bytes; it holds at most "
                    f"{_SIZE - _HEADER.size}. Serve fewer models per server."
                )
            self._map[_HEADER.size : _HEADER.size + len(raw)] = raw
            _HEADER.pack_into(self._map, 0, version + 1, len(raw))
            return version + 1

    def set_thresholds(self, model: str, thresholds: list[Any]) -> int:
        """Share a model's new default thresholds (JSON form: numbers, "inf", "-inf")."""
        return self.update(lambda doc: doc["thresholds"].__setitem__(model, thresholds))

    def set_ready(self, worker: str, ready: bool) -> int:
        """Record whether ``worker`` (``"<pid>"`` or ``"<pid>/<anything>"``) is ready."""
        return self.update(lambda doc: doc["ready"].__setitem__(worker, ready))

    def set_draining(self) -> None:
        """Mark the whole server draining: every worker refuses new requests."""
        self.update(lambda doc: doc.__setitem__("draining", True))

    def all_ready(self) -> bool:
        """Whether the server is not draining and ``n_workers`` live workers are ready."""
        _, doc = self.read()
        if doc["draining"]:
            return False
        ready = [int(w.partition("/")[0]) for w, ok in doc["ready"].items() if ok]
        return sum(1 for pid in ready if _alive(pid)) >= doc["n_workers"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


@dataclass(frozen=True)
class ServeSpec:
    """What ``cascadekit serve`` serves, in a form a worker process can rebuild it from.

    Parameters
    ----------
    config_file : str, optional
        A YAML config file (:func:`~cascadekit.serve.load_config`); else the demo.
    demo : {"fashion-mnist", "text"}, default="fashion-mnist"
        Which demo (``cascadekit serve --demo [text]``) when there is no config file.
    reduced, teacher_only : bool
        The demo's options (``--reduced``, ``--teacher-only``).
    host, port, torch_threads :
        Overrides of the config's values (None: keep them).
    grpc_port : int, optional
        Also serve gRPC on this port, in every worker (``SO_REUSEPORT``; 0 is refused, since
        each worker would pick its own port).

    Examples
    --------
    >>> spec = ServeSpec.from_json(ServeSpec(reduced=True, port=9000).to_json())
    >>> spec.reduced, spec.port, spec.config_file
    (True, 9000, None)
    """

    config_file: str | None = None
    demo: str = "fashion-mnist"
    reduced: bool = False
    teacher_only: bool = False
    host: str | None = None
    port: int | None = None
    torch_threads: int | None = None
    grpc_port: int | None = None

    def to_json(self) -> str:
        """The spec as JSON (what :data:`SPEC_ENV` holds)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSpec:
        """The spec from :meth:`to_json`'s output."""
        return cls(**json.loads(text))

    def load(self) -> tuple[ServedModel, ServeConfig]:
        """Load the served model and the server's configuration."""
        if self.config_file is not None:
            served, config = load_config(self.config_file)
        else:
            from .demo import TEXT_STAGE_TIMEOUT, fashion_mnist_model, tweet_sentiment_model

            if self.demo == "text":
                served = tweet_sentiment_model(reduced=self.reduced, teacher_only=self.teacher_only)
                config = ServeConfig(stage_timeout=TEXT_STAGE_TIMEOUT)
            else:
                served = fashion_mnist_model(reduced=self.reduced, teacher_only=self.teacher_only)
                config = ServeConfig()
        config = with_overrides(
            config, host=self.host, port=self.port, torch_threads=self.torch_threads
        )
        return served, config


def worker_app() -> Any:
    """The app of one worker process (uvicorn's factory): the :class:`ServeSpec` from
    :data:`SPEC_ENV`, sharing the :class:`SharedState` at :data:`STATE_ENV`."""
    from .app import create_app
    from .metrics import ServeMetrics
    from .service import InferenceService

    spec_json, state_path = os.environ.get(SPEC_ENV), os.environ.get(STATE_ENV)
    if spec_json is None or state_path is None:
        raise ParameterError(
            f"worker_app runs in a worker started by `cascadekit serve --workers N`; "
            f"{SPEC_ENV} and {STATE_ENV} are not set."
        )
    spec = ServeSpec.from_json(spec_json)
    served, config = spec.load()
    service = InferenceService(served, config, ServeMetrics(), shared=SharedState(state_path))
    app = create_app(service, config)
    if spec.grpc_port is not None:
        from .grpc import add_grpc

        add_grpc(app, spec.grpc_port, reuse_port=True)
    return app


def check_workers(workers: Any) -> int:
    """``workers`` as a number of worker processes, or a :class:`ParameterError`.

    Examples
    --------
    >>> check_workers(2)
    2
    >>> try:
    ...     check_workers(0)
    ... except ParameterError as exc:
    ...     print(exc)
    Expected --workers to be a whole number >= 1 (worker processes, each loading the models); got 0.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(
            "Expected --workers to be a whole number >= 1 (worker processes, each loading the "
            f"models); got {workers!r}."
        )
    return workers


def prepare_metrics_dir(path: str | None) -> Path | None:
    """A ``PROMETHEUS_MULTIPROC_DIR`` the user set, emptied of an earlier run's ``*.db`` files
    (as prometheus_client requires); None when not set (the server then makes its own).

    Raises
    ------
    ParameterError
        The path is not an existing directory.
    """
    if not path:
        return None
    where = Path(path)
    if not where.is_dir():
        raise ParameterError(
            f"{PROMETHEUS_ENV}={path!r} is not a directory; create it (the server keeps each "
            "worker's metrics there) or unset it to let the server make a temporary one."
        )
    for old in where.glob("*.db"):
        old.unlink()
    return where


def run_workers(spec: ServeSpec, workers: int, *, log_level: str = "info") -> None:
    """Serve ``spec`` with ``workers`` uvicorn worker processes on one port (see the module
    docstring). Returns after SIGINT/SIGTERM, once every worker has drained and stopped.

    The models are loaded once here first, so a wrong config file is reported before any worker
    starts, then by every worker.
    """
    import uvicorn
    from uvicorn.supervisors.multiprocess import Multiprocess

    from .app import uvicorn_config

    workers = check_workers(workers)
    if spec.grpc_port is not None:
        if spec.grpc_port == 0 and workers > 1:
            raise ParameterError(
                "Expected a fixed --grpc-port with --workers: every worker serves gRPC on the one "
                "port; 0 (any free port) would give each worker its own. Pass e.g. --grpc-port "
                "8001."
            )
        require("grpc", "grpc", "The gRPC server")
    _, config = spec.load()  # fails here, once, on a bad config
    metrics_dir = prepare_metrics_dir(os.environ.get(PROMETHEUS_ENV))
    root = Path(tempfile.mkdtemp(prefix="cascadekit-serve-"))
    if metrics_dir is None:
        metrics_dir = root / "metrics"
        metrics_dir.mkdir()
    state = SharedState.create(root / "state", workers)
    saved = {k: os.environ.get(k) for k in (SPEC_ENV, STATE_ENV, PROMETHEUS_ENV)}
    os.environ.update(
        {SPEC_ENV: spec.to_json(), STATE_ENV: str(root / "state"), PROMETHEUS_ENV: str(metrics_dir)}
    )

    class Supervisor(Multiprocess):
        """uvicorn's supervisor that marks the shared state draining before it stops."""

        def handle_int(self) -> None:
            state.set_draining()
            super().handle_int()

        def handle_term(self) -> None:
            state.set_draining()
            super().handle_term()

    try:
        ucfg: uvicorn.Config = uvicorn_config(
            "cascadekit.serve.workers:worker_app", config, log_level=log_level, workers=workers
        )
        sock = ucfg.bind_socket()
        try:
            Supervisor(ucfg, sockets=[sock]).run()
        finally:
            sock.close()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        state.close()
        shutil.rmtree(root, ignore_errors=True)
