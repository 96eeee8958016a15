"""``cascadekit serve --workers 2``: metrics that add up, one threshold, readiness and drain.

The process tests run the real command on the reduced demo zoo; the worker that answers a request
is told apart through prometheus_client's per-process files (``counter_<pid>.db``) in the
``PROMETHEUS_MULTIPROC_DIR`` the test sets. Readiness and drain across workers are checked on two
real services sharing one :class:`SharedState`, as two workers do.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_helpers import toy_inputs, toy_student, toy_teacher

from cascadekit import Cascade, Stage
from cascadekit.errors import ParameterError
from cascadekit.oip import OverloadedError, TensorSpec
from cascadekit.serve import InferenceService, ServeConfig, ServedModel
from cascadekit.serve.launch import ServerProcess, free_port, serve_process
from cascadekit.serve.workers import ServeSpec, SharedState, prepare_metrics_dir, run_workers

SERVE = [sys.executable, "-m", "cascadekit.cli", "serve", "--demo", "--reduced"]
SERVE += ["--workers", "2", "--torch-threads", "1", "--log-level", "warning"]
URL = "/v2/models/fashion-mnist/infer"
TOKEN = "test-admin-token"


@pytest.fixture(scope="module")
def grpc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: Any, grpc_port: int) -> Iterator[tuple[ServerProcess, Path]]:
    metrics = tmp_path_factory.mktemp("metrics")
    tmp = tmp_path_factory.mktemp("tmp")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
        CASCADEKIT_ADMIN_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(metrics),
        TMPDIR=str(tmp),
    )
    cmd = [*SERVE, "--grpc-port", str(grpc_port)]
    with tempfile.TemporaryFile() as log, serve_process(cmd, env=env, log=log) as server:
        yield server, metrics
    assert server.proc.returncode == 0
    assert not list(tmp.glob("cascadekit-serve-*"))  # the server removed its state directory


def per_worker(metrics: Path) -> dict[int, float]:
    """Requests answered 200 by each worker process, from its own metrics file."""
    from prometheus_client.multiprocess import MultiProcessCollector

    out: dict[int, float] = {}
    for f in metrics.glob("counter_*.db"):
        pid = int(re.findall(r"counter_(\d+)\.db", f.name)[0])
        for m in MultiProcessCollector.merge([str(f)], accumulate=True):
            for s in m.samples:
                if s.name == "cascadekit_requests_total" and s.labels.get("code") == "200":
                    out[pid] = out.get(pid, 0.0) + s.value
    return out


def metric(url: str, pattern: str) -> float:
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.findall(rf"^{pattern} (\S+)$", text, re.M)
    assert found, pattern
    return float(found[0])


def infer_many(url: str, images: np.ndarray) -> list[dict[str, Any]]:
    """One request per image, each on a new connection (so the kernel spreads them)."""
    import httpx

    def one(img: np.ndarray) -> dict[str, Any]:
        body = {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1, *img.shape],
                    "datatype": "UINT8",
                    "data": img.ravel().tolist(),
                }
            ]
        }
        r = httpx.post(f"{url}{URL}", json=body, headers={"connection": "close"}, timeout=60)
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, images))


def until_both_answer(
    url: str, metrics: Path, images: np.ndarray
) -> tuple[list[dict[str, Any]], dict[int, float]]:
    """Send rounds of requests until both workers answered some; the answers and the counts."""
    before = per_worker(metrics)
    answers: list[dict[str, Any]] = []
    for _ in range(20):
        answers += infer_many(url, images)
        after = per_worker(metrics)
        delta = {p: v - before.get(p, 0.0) for p, v in after.items()}
        if sum(1 for v in delta.values() if v > 0) >= 2:
            return answers, delta
    raise AssertionError(f"one worker answered every request: {delta}")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    from cascadekit.data.zoo import load_fashion_mnist_zoo

    imgs: np.ndarray = load_fashion_mnist_zoo(reduced=True).images["test"][:24]
    return imgs


def test_metrics_add_up_across_workers(workers: Any, images: np.ndarray) -> None:
    server, metrics = workers
    pattern = r'cascadekit_requests_total\{code="200",model="fashion-mnist"\}'
    answers, delta = until_both_answer(server.url, metrics, images)
    assert sum(delta.values()) == len(answers)
    # /metrics, answered by one worker, counts the requests of both
    assert metric(server.url, pattern) == sum(per_worker(metrics).values())
    answered = [
        metric(server.url, rf'cascadekit_inputs_total\{{model="fashion-mnist",stage="{k}"\}}')
        for k in (0, 1)
    ]
    assert sum(answered) == metric(server.url, pattern)  # one input per request


def test_an_admin_threshold_holds_in_every_worker(workers: Any, images: np.ndarray) -> None:
    import httpx

    server, metrics = workers
    meta = httpx.get(f"{server.url}/v2/models/fashion-mnist", timeout=10).json()
    new = round(float(meta["parameters"]["threshold"]) + 0.125, 3)
    r = httpx.put(
        f"{server.url}/admin/models/fashion-mnist/thresholds",
        json={"thresholds": [new]},
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    answers, delta = until_both_answer(server.url, metrics, images)
    assert {a["parameters"]["threshold"] for a in answers} == {new}
    assert sum(1 for v in delta.values() if v > 0) == 2
    assert metric(server.url, r'cascadekit_threshold\{model="fashion-mnist",stage="0"\}') == new
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200


def test_every_worker_serves_grpc_on_the_one_port(
    workers: Any, grpc_port: int, images: np.ndarray
) -> None:
    """Both workers bind the gRPC port (SO_REUSEPORT) and answer as REST does."""
    grpcclient = pytest.importorskip("tritonclient.grpc")
    import httpx

    server, metrics = workers
    before = per_worker(metrics)
    threshold = float(
        httpx.get(f"{server.url}/v2/models/fashion-mnist", timeout=10).json()["parameters"][
            "threshold"
        ]
    )
    rest = [
        next(int(o["data"][0]) for o in a["outputs"] if o["name"] == "label")
        for a in infer_many(server.url, images)
    ]
    labels: list[int] = []
    delta: dict[int, float] = {}
    for _ in range(20):
        for img in images:
            # a new channel per request, so that the kernel spreads the connections
            with grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
                inp = grpcclient.InferInput("image", [1, *img.shape], "UINT8")
                inp.set_data_from_numpy(img[None])
                result = client.infer("fashion-mnist", [inp])
            assert result.get_response().parameters["threshold"].double_param == threshold
            labels.append(int(result.as_numpy("label")[0]))
        after = per_worker(metrics)
        delta = {p: v - before.get(p, 0.0) for p, v in after.items()}
        if sum(1 for v in delta.values() if v > 0) >= 2:
            break
    assert sum(1 for v in delta.values() if v > 0) >= 2, f"one worker answered all: {delta}"
    assert labels[: len(images)] == rest  # the same answer per image as over REST


def test_grpc_port_zero_is_refused_with_workers() -> None:
    with pytest.raises(ParameterError, match="Expected a fixed --grpc-port with --workers"):
        run_workers(ServeSpec(reduced=True, grpc_port=0), 2)


def toy_served() -> ServedModel:
    cascade = Cascade(
        [Stage(model=toy_student, score="margin"), Stage(model=toy_teacher)], thresholds=[1.0]
    )
    return ServedModel("toy", cascade, TensorSpec("x", ("FP32",), (-1, 13)))


def test_readiness_and_drain_hold_for_every_worker(tmp_path: Path) -> None:
    """Two services on one shared state, as two workers: ready only when both are; a drain (what
    the supervisor sets on SIGTERM) and an admin change reach both."""
    x = toy_inputs(4)

    async def main() -> None:
        state = SharedState.create(tmp_path / "state", n_workers=2)
        cfg = ServeConfig(admin_token=TOKEN)
        a = InferenceService(toy_served(), cfg, shared=SharedState(state.path))
        b = InferenceService(toy_served(), cfg, shared=SharedState(state.path))
        await a.start()
        try:
            assert not a.is_ready()  # the other worker is still starting
            await b.start()
            assert a.is_ready() and b.is_ready()
            reply = a.handle_set_thresholds(
                "toy", b'{"thresholds": [0.25]}', f"Bearer {TOKEN}", "test"
            )
            assert reply.status == 200, reply.body
            assert (await b.infer("toy", {"x": x})).thresholds == (0.25,)
            state.set_draining()
            assert not a.is_ready() and not b.is_ready()
            for s in (a, b):
                with pytest.raises(OverloadedError, match="shutting down"):
                    await s.infer("toy", {"x": x})
        finally:
            await a.stop(0.5)
            await b.stop(0.5)
            state.close()

    asyncio.run(main())


def test_a_worker_that_fails_makes_the_server_not_ready(tmp_path: Path) -> None:
    def broken(x: Any) -> Any:
        raise RuntimeError("no model here")

    async def main() -> None:
        state = SharedState.create(tmp_path / "state", n_workers=2)
        good = InferenceService(toy_served(), shared=SharedState(state.path))
        cascade = Cascade([Stage(model=broken), Stage(model=toy_teacher)], thresholds=[1.0])
        bad_served = ServedModel("toy", cascade, TensorSpec("x", ("FP32",), (-1, 13)))
        bad = InferenceService(bad_served, shared=SharedState(state.path))
        await good.start()
        await bad.start()  # its warm-up fails: not ready
        try:
            assert not bad.is_ready() and not good.is_ready()
        finally:
            await good.stop(0.5)
            await bad.stop(0.5)
            state.close()

    asyncio.run(main())


def test_bad_worker_counts_are_refused(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cascadekit.cli import app

    for bad in (0, -2, 1.5, True):
        with pytest.raises(ParameterError, match=r"Expected --workers to be a whole number >= 1"):
            run_workers(ServeSpec(), bad)  # type: ignore[arg-type]
    res = CliRunner().invoke(app, ["serve", "--demo", "--workers", "0"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "Expected --workers to be a whole number >= 1" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["serve", "--demo", "--workers", "2", "--backend", "ray"])
    assert res.exit_code == 1
    assert "--workers goes with the local backend" in " ".join(res.output.split())
    with pytest.raises(ParameterError, match="is not a directory; create it"):
        prepare_metrics_dir(str(tmp_path / "missing"))
    (tmp_path / "counter_1.db").write_bytes(b"old run")
    assert prepare_metrics_dir(str(tmp_path)) == tmp_path
    assert not list(tmp_path.glob("*.db"))  # an earlier run's files are gone
