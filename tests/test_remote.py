"""RemoteModel against a real Open Inference Protocol server (cascadekit's, uvicorn on loopback).

The server serves the real Fashion-MNIST demo cascade and a deliberately slow model; an ASGI
wrapper in front of it injects faults (503s, non-JSON bodies, wrong shapes) on request.
"""

from __future__ import annotations

import json
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")
pytest.importorskip("torch")

from cascadekit import Cascade, Stage
from cascadekit.adapters import RemoteModel, TorchModel
from cascadekit.data import DEFAULT_FASHION_MNIST_DIR
from cascadekit.errors import ParameterError, StageError, StageUnavailableError

if not (DEFAULT_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
    pytest.skip("needs `apt-get install -y dataset-fashion-mnist`", allow_module_level=True)

TOL = 1e-5


class Faults:
    """ASGI wrapper: ``fail_next`` infer requests get 503; models ``garbage`` and ``short``
    answer with a non-JSON body and with too few rows; ``calls`` counts infer requests."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.fail_next = 0
        self.calls = 0

    @staticmethod
    async def _send(send: Any, status: int, body: bytes, ctype: bytes) -> None:
        headers = [(b"content-type", ctype), (b"retry-after", b"0")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.endswith("/infer"):
            self.calls += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                await self._send(send, 503, b'{"error": "injected overload"}', b"application/json")
                return
            if "/models/garbage/" in path:
                await self._send(send, 200, b"<html>hello</html>", b"text/html")
                return
            if "/models/short/" in path:
                doc = {"outputs": [{"name": "logits", "shape": [1, 2], "datatype": "FP32",
                                    "data": [0.0, 1.0]}]}  # fmt: skip
                await self._send(send, 200, json.dumps(doc).encode(), b"application/json")
                return
        await self.app(scope, receive, send)


def _slow_teacher(x: Any) -> Any:
    time.sleep(1.5)
    return np.zeros((len(x), 10), dtype=np.float32)


@pytest.fixture(scope="module")
def zoo() -> Any:
    from cascadekit.data.cache import cache_root
    from cascadekit.data.zoo import default_recipe, load_fashion_mnist_zoo

    full = cache_root() / "fashion_mnist_zoo" / default_recipe().key / "meta.json"
    return load_fashion_mnist_zoo(reduced=not full.is_file())


@pytest.fixture(scope="module")
def served(zoo: Any) -> Any:
    from cascadekit.serve import fashion_mnist_model

    return fashion_mnist_model(zoo)


@pytest.fixture(scope="module")
def server(served: Any) -> Iterator[tuple[str, Faults]]:
    import uvicorn

    from cascadekit.serve import ServeConfig, ServedModel, TensorSpec, create_app

    fast = lambda x: np.zeros((len(x), 10), dtype=np.float32)  # noqa: E731
    slow = Cascade(
        [Stage(model=fast, name="s"), Stage(model=_slow_teacher, name="t")], thresholds=[np.inf]
    )
    slow_model = ServedModel("slow", slow, TensorSpec("image", ("UINT8", "FP32"), (-1, 28, 28)))
    config = ServeConfig(stage_timeout=5.0, warmup=False)
    faults = Faults(create_app([served, slow_model], config))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    srv = uvicorn.Server(uvicorn.Config(faults, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", faults
    srv.should_exit = True
    thread.join(30)


def _student(served: Any) -> Stage:
    st = served.cascade.stages[0]
    return Stage(model=st.model, cost=st.cost, name="student", score=st.score,
                 temperature=st.temperature)  # fmt: skip


def test_edge_cloud_split_answers_like_the_local_cascade(
    server: tuple[str, Faults], served: Any, zoo: Any
) -> None:
    url, _ = server
    images = zoo.images["test"][:300]
    # the remote cascade answers every input with its teacher (threshold +inf)
    teacher = RemoteModel(url, "fashion-mnist", parameters={"threshold": "inf"}, batch_size=128)
    edge = Cascade(
        [_student(served), Stage(model=teacher, name="cloud")], thresholds=served.cascade.thresholds
    )
    got = edge.predict(images)
    assert teacher.input_name == "image" and teacher.datatype == "UINT8"  # from the metadata
    want = served.cascade.predict(images.astype(np.float32))
    np.testing.assert_array_equal(got.stage, want.stage)  # same local student, same routing
    ok = ~(np.abs(want.stage_scores[:, 0] - served.cascade.thresholds[0]) <= TOL)
    np.testing.assert_array_equal(got.predictions[ok], want.predictions[ok])
    assert 0 < got.teacher_share < 1 and not got.fallback.any()
    assert got.stage_inputs[1] == int((got.stage == 1).sum())
    np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-4)
    local = TorchModel(zoo.models["teacher"])
    np.testing.assert_array_equal(
        np.argmax(teacher(images[:64]), axis=1), np.argmax(local(images[:64]), axis=1)
    )


def test_timeout_falls_back_to_the_student(
    server: tuple[str, Faults], served: Any, zoo: Any
) -> None:
    url, _ = server
    images = zoo.images["test"][:40]
    slow = RemoteModel(url, "slow", input_name="image", timeout=0.3, retries=0)
    with pytest.raises(StageUnavailableError, match=r"did not answer within 0.3 s.*timed out"):
        slow(images)
    c = Cascade([_student(served), Stage(model=slow)], thresholds=served.cascade.thresholds)
    t0 = time.perf_counter()
    r = c.predict(images)
    assert time.perf_counter() - t0 < 1.2  # the deadline holds, no 1.5 s wait
    student = served.cascade.stages[0]
    logits = student.model(images)
    d = student.decide(logits, served.cascade.thresholds[0])
    np.testing.assert_array_equal(r.fallback, ~d.keep)
    np.testing.assert_array_equal(r.predictions, d.predictions)  # the student's answers
    assert (r.stage == 0).all() and r.fallback.any()


def test_retries_transient_503s(server: tuple[str, Faults], zoo: Any) -> None:
    url, faults = server
    images = zoo.images["test"][:5]
    kw = {"input_name": "image", "output": "probabilities", "backoff": 0.01}
    m = RemoteModel(url, "fashion-mnist", retries=2, **kw)
    faults.fail_next, before = 2, faults.calls
    assert m(images).shape == (5, 10)
    assert faults.calls - before == 3  # two 503s, then the answer
    m1 = RemoteModel(url, "fashion-mnist", retries=1, **kw)
    faults.fail_next = 2
    with pytest.raises(StageUnavailableError, match=r"2 attempt\(s\).*HTTP 503: injected overload"):
        m1(images)
    faults.fail_next = 0


def test_bad_responses_raise_clear_errors(server: tuple[str, Faults], zoo: Any) -> None:
    url, _ = server
    x = zoo.images["test"][:3]
    with pytest.raises(StageError, match="rejected the metadata request with HTTP 404.*'nope'"):
        RemoteModel(url, "nope")(x)
    with pytest.raises(StageError, match=r"HTTP 400: Model 'fashion-mnist' takes one input"):
        RemoteModel(url, "fashion-mnist", input_name="pixels")(x)
    with pytest.raises(StageError, match="HTTP 400: Input 'image' expects shape"):
        RemoteModel(url, "fashion-mnist", input_name="image")(x.reshape(3, 784))
    with pytest.raises(StageError, match="body that is not JSON.*'text/html'"):
        RemoteModel(url, "garbage", input_name="image")(x)
    with pytest.raises(StageError, match=r"expected 3 rows \(one per input sent\); got shape"):
        RemoteModel(url, "short", input_name="image")(x)
    with pytest.raises(StageError, match="HTTP 400: Unknown output 'logits' requested"):
        RemoteModel(url, "fashion-mnist", input_name="image", output="logits")(x)
    with pytest.raises(StageError, match=r"outputs \['logits'\]; expected one named 'proba"):
        RemoteModel(url, "short", input_name="image", output="probabilities")(x)
    with pytest.raises(StageError, match="2 non-finite input values"):
        RemoteModel(url, "fashion-mnist", input_name="image")(np.array([[np.nan, np.inf]]))
    # a bad response is a mistake to fix, not a reason to fall back: the cascade raises
    c = Cascade(
        [Stage(model=lambda z: np.zeros((len(z), 10))), Stage(model=RemoteModel(url, "nope"))],
        thresholds=[np.inf],
    )
    with pytest.raises(StageError, match="Stage 'stage1' .*HTTP 404"):
        c.predict(x)


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    m = RemoteModel(f"http://127.0.0.1:{port}", "m", input_name="x", timeout=1.0, retries=2,
                    backoff=0.01)  # fmt: skip
    with pytest.raises(StageUnavailableError, match=r"3 attempt\(s\).*ConnectError"):
        m(np.zeros((2, 3), dtype=np.float32))


def _raw_server(head: bytes, body_size: int, delay: float) -> tuple[str, threading.Event]:
    """A loopback HTTP server answering once with ``head`` then ``body_size`` spaces, one byte
    every ``delay`` seconds (0: at once); ``done`` is set when it stops sending."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    done = threading.Event()

    def serve() -> None:
        conn, _ = srv.accept()
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            top, _, rest = request.partition(b"\r\n\r\n")
            length = [ln for ln in top.lower().split(b"\r\n") if ln.startswith(b"content-length")]
            want = int(length[0].split(b":")[1]) if length else 0
            while len(rest) < want:
                rest += conn.recv(65536)
            conn.sendall(head)
            if delay:
                for _ in range(body_size):
                    conn.sendall(b" ")
                    time.sleep(delay)
            else:
                conn.sendall(b" " * body_size)
        except OSError:
            pass  # the client hung up
        finally:
            conn.close()
            srv.close()
            done.set()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}", done


def test_deadline_covers_a_dripping_response() -> None:
    """A server that sends its answer a byte every 50 ms (400 bytes: 20 s) is cut off at the
    deadline of 0.5 s, not once per read."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
    url, done = _raw_server(head, 400, 0.05)
    m = RemoteModel(url, "m", input_name="x", timeout=0.5, retries=0)
    with pytest.raises(StageUnavailableError, match=r"did not answer within 0.5 s .*timed out"):
        m(np.zeros((1, 3), dtype=np.float32))
    m.close()
    assert done.wait(30)


@pytest.mark.parametrize("declared", [True, False])
def test_response_size_is_bounded(declared: bool) -> None:
    n = 2_000_000
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    head += (b"Content-Length: %d\r\n" % n) if declared else b"Connection: close\r\n"
    url, done = _raw_server(head + b"\r\n", n, 0)
    m = RemoteModel(url, "m", input_name="x", timeout=10, retries=0, max_response_bytes=1_000_000)
    with pytest.raises(StageError, match=r"larger than max_response_bytes=1000000"):
        m(np.zeros((1, 3), dtype=np.float32))
    m.close()
    assert done.wait(30)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": "localhost:8000"}, "start with http:// or https://"),
        ({"model": "a/b"}, "model name without '/'"),
        ({"timeout": 0}, "timeout to be a positive number"),
        ({"retries": -1}, "retries to be a non-negative integer"),
        ({"backoff": -1.0}, "backoff to be >= 0"),
        ({"datatype": "FLOAT"}, "datatype to be one of"),
        ({"batch_size": 0}, "batch_size of RemoteModel"),
        ({"max_response_bytes": 0}, "max_response_bytes to be a positive integer"),
    ],
)
def test_constructor_checks(kwargs: dict[str, Any], match: str) -> None:
    args = {"url": "http://127.0.0.1:1", "model": "m"} | kwargs
    with pytest.raises(ParameterError, match=match):
        RemoteModel(**args)


def test_pickles_without_its_connection(server: tuple[str, Faults], zoo: Any) -> None:
    url, _ = server
    m = RemoteModel(url, "fashion-mnist")
    x = zoo.images["test"][:2]
    first = m(x)
    clone = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(clone(x), first)
    m.close()
    clone.close()


def test_predict_falls_back_from_the_failing_chunk_on() -> None:
    """A later stage that becomes unavailable mid-batch: chunks it answered keep its answer,
    the rest keep the previous stage's, flagged; an N=3 cascade falls back one stage."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    w = [rng.normal(size=(4, 3)) for _ in range(3)]
    calls = {"n": 0}

    def flaky(z: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 1:
            raise StageUnavailableError("down")
        return z @ w[2]

    flaky.batch_size = 16  # type: ignore[attr-defined]
    stages = [
        Stage(model=lambda z: z @ w[0], score="margin"),
        Stage(model=lambda z: z @ w[1], score="margin"),
        Stage(model=flaky),
    ]
    c = Cascade(stages, thresholds=[1.0, 1.0])
    r = c.predict(x)
    ref = Cascade(
        [Stage(outputs=x @ wi, score="margin") for wi in w], thresholds=[1.0, 1.0]
    ).route()
    at_last = np.flatnonzero(ref.stage == 2)
    answered, rest = at_last[:16], at_last[16:]
    assert rest.size > 0
    np.testing.assert_array_equal(r.fallback, np.isin(np.arange(200), rest))
    np.testing.assert_array_equal(r.stage[rest], 1)
    np.testing.assert_array_equal(r.predictions[rest], np.argmax(x[rest] @ w[1], axis=1))
    keep = ~r.fallback
    np.testing.assert_array_equal(r.predictions[keep], ref.predictions[keep])
    np.testing.assert_array_equal(r.stage[keep], ref.stage[keep])
    np.testing.assert_allclose(r.probabilities.sum(axis=1), 1.0)  # type: ignore[union-attr]
    assert r.stage_inputs[2] == answered.size
    first = Cascade([Stage(model=flaky), Stage(model=lambda z: z @ w[1])], thresholds=[0.0])
    with pytest.raises(StageUnavailableError, match="down"):  # the first stage cannot fall back
        first.predict(x)
