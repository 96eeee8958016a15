"""A careless or hostile client cannot freeze, poison or crash the server (issue: hardening).

Small numpy cascades (no training) behind the real FastAPI app, in-process or on a real uvicorn
server on loopback; each test is one way a client tried to hurt the server or other clients.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import app_client, uvicorn_thread

from cascadekit import Cascade, Stage
from cascadekit.oip import HEADER_LENGTH
from cascadekit.serve import BatchPolicy, ServeConfig, TensorSpec, create_app
from cascadekit.serve.launch import free_port

pytestmark = pytest.mark.anyio
URL = "/v2/models/toy/infer"
W = np.random.default_rng(0).normal(size=(8, 3))
POISON = 13.0  # a finite value the student cannot process
SECRET = "secret-detail-of-the-model"


def student(x: Any) -> Any:
    x = np.asarray(x, dtype=np.float64)
    if np.any(x[:, 0] == POISON):
        raise ValueError(f"{SECRET}: cannot process {POISON}")
    return x @ W


def teacher(x: Any) -> Any:
    return np.asarray(x, dtype=np.float64) @ W[:, ::-1]


def toy_app(config: ServeConfig | None = None, model: Any = student, th: float = 0.5) -> Any:
    cascade = Cascade(
        [Stage(model=model, score="margin", name="student"), Stage(model=teacher, name="teacher")],
        thresholds=[th],
    )
    # no value range on the input: the default of create_app
    return create_app(cascade, config, name="toy", input_spec=TensorSpec("x", ("FP32",), (-1, 8)))


def doc(x: np.ndarray, **params: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    if params:
        d["parameters"] = params
    return d


def good(n: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


# ------------------------------------------------------------------- 2, 4: freezing and crashing


async def test_huge_rank_and_huge_integers_are_400() -> None:
    async with app_client(toy_app()) as c:
        r = await c.post(
            URL,
            content=b'{"inputs":[{"name":"x","datatype":"FP32","data":[],"shape":['
            + b",".join([b"1"] * 300_000)
            + b"]}]}",
        )
        assert r.status_code == 400
        assert "to have at most 32 dimensions; got 300000" in r.json()["error"]
        r = await c.post(URL, json=doc(np.zeros((2, 3, 4), np.float32)))
        assert r.status_code == 400 and "expects shape [-1, 8]" in r.json()["error"]
        huge = b"9" * 5000
        for body in (
            b'{"inputs":[{"name":"x","shape":[1,8],"datatype":"FP32","data":[' + huge + b"]}]}",
            b'{"id":' + huge + b',"inputs":[]}',
            b'{"inputs":[{"name":"x","datatype":"FP32","data":[1],"shape":[1'
            + b"0" * 2200
            + b",1"
            + b"0" * 2200
            + b"]}]}",
        ):
            r = await c.post(URL, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, r.text
            assert "holds a number too large to decode" in r.json()["error"]
        r = await c.post(URL, json=doc(np.zeros((1, 8), np.float32), threshold=10**400))
        assert r.status_code == 400
        # a declared shape larger than the request limit is refused before its data is decoded
    app = toy_app(ServeConfig(max_request_inputs=10))
    async with app_client(app) as c:
        r = await c.post(
            URL,
            json={
                "inputs": [{"name": "x", "shape": [100_000, 8], "datatype": "FP32", "data": [0.0]}]
            },
        )
        assert r.status_code == 400
        assert "Expected at most 10 inputs per request; got 100000" in r.json()["error"]


# ------------------------------------------------------------------------ 3: one bad tensor


async def test_nan_is_always_refused() -> None:
    x = good(2)
    x[1, 3] = np.nan
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ]
        }
    ).encode()
    async with app_client(toy_app()) as c:
        r = await c.post(
            URL,
            content=header + x.astype("<f4").tobytes(),
            headers={HEADER_LENGTH: str(len(header)), "content-type": "application/octet-stream"},
        )
        assert r.status_code == 400
        assert "Input 'x' holds 1 non-finite value(s) (NaN or inf)" in r.json()["error"]
        r = await c.post(URL, content=b'{"inputs":[{"name":"x","shape":[1,8],"datatype":"FP32",'
                         b'"data":[1e999,0,0,0,0,0,0,0]}]}')  # fmt: skip
        assert r.status_code == 400
        assert (await c.get("/v2/health/ready")).status_code == 200


async def test_a_failing_input_fails_only_its_request(caplog: Any) -> None:
    """12 innocent requests share the student's batch with one it raises on (a finite value)."""
    caplog.set_level(logging.ERROR, logger="cascadekit.serve")
    cfg = ServeConfig(batching=BatchPolicy(max_batch_size=64, max_wait=0.05))
    app = toy_app(cfg)
    bad = good(1, 99)
    bad[0, 0] = POISON
    async with app_client(app) as c:
        rs = await asyncio.gather(
            *(c.post(URL, json=doc(good(3, i))) for i in range(6)),
            c.post(URL, json=doc(bad)),
            *(c.post(URL, json=doc(good(3, i))) for i in range(6, 12)),
        )
        assert (await c.get("/v2/health/ready")).status_code == 200
        codes = [r.status_code for r in rs]
        assert codes == [200] * 6 + [422] + [200] * 6, codes
        student_stats = app.state.service._models["toy"].batchers[0].stats
        assert student_stats.failures >= 1  # they were in one batch, which failed, then split
        err = rs[6].json()["error"]
        assert "could not process this request's inputs (error id " in err
        assert SECRET not in err and "ValueError" not in err
        eid = err.split("error id ")[1][:12]
        assert any(eid in r.getMessage() and SECRET in r.getMessage() for r in caplog.records)
        # the innocent requests got the cascade's answers
        ref = app.state.service._models["toy"].served.cascade.predict(good(3, 0))
        out = {o["name"]: o["data"] for o in rs[0].json()["outputs"]}
        assert out["label"] == ref.predictions.tolist()


async def test_a_broken_model_is_503_without_its_exception_text(caplog: Any) -> None:
    state = {"broken": False}

    def fragile(x: Any) -> Any:
        if state["broken"]:
            raise RuntimeError(SECRET)
        return student(x)

    async with app_client(toy_app(model=fragile)) as c:
        state["broken"] = True
        r = await c.post(URL, json=doc(good()))
        assert r.status_code == 503 and SECRET not in r.text and "error id" in r.text
        assert (await c.get("/v2/health/ready")).status_code == 503  # the model itself fails
        state["broken"] = False
        assert (await c.post(URL, json=doc(good()))).status_code == 200
        assert (await c.get("/v2/health/ready")).status_code == 200


async def test_a_poisoning_client_cannot_flood_the_log(caplog: Any) -> None:
    caplog.set_level(logging.ERROR, logger="cascadekit.serve")
    bad = good(1)
    bad[0, 0] = POISON
    async with app_client(toy_app()) as c:
        for _ in range(30):
            assert (await c.post(URL, json=doc(bad))).status_code == 422
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert 1 <= len(errors) <= 5


# --------------------------------------------------------------------- 5, 8, 9: admin and knobs


async def test_audit_log_and_counter_of_admin_calls(caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="cascadekit.audit")
    path = "/admin/models/toy/thresholds"
    async with app_client(toy_app(ServeConfig(admin_token="tok"))) as c:
        r = await c.put(path, json={"thresholds": [0.7]}, headers={"Authorization": "Bearer no"})
        assert r.status_code == 401
        r = await c.put(path, json={"thresholds": [0.7]}, headers={"Authorization": "Bearer tok"})
        assert r.status_code == 200
        metrics = (await c.get("/metrics")).text
    audit = [r for r in caplog.records if r.name == "cascadekit.audit"]
    assert all(r.levelno == logging.WARNING for r in audit)  # shown without any logging setup
    msgs = [r.getMessage() for r in audit]
    assert any("refused admin call" in m and "wrong token" in m for m in msgs), msgs
    assert any("thresholds [0.5] -> [0.7]" in m for m in msgs), msgs
    assert 'cascadekit_admin_requests_total{outcome="unauthorized"} 1.0' in metrics
    assert 'cascadekit_admin_requests_total{outcome="changed"} 1.0' in metrics


async def test_admin_thresholds_are_checked_against_the_scores() -> None:
    path = "/admin/models/toy/thresholds"
    auth = {"Authorization": "Bearer tok"}
    async with app_client(toy_app(ServeConfig(admin_token="tok"))) as c:
        await c.post(URL, json=doc(good(50)))  # scores seen on traffic
        r = await c.put(path, json={"thresholds": [90]}, headers=auth)
        assert r.status_code == 400
        assert "Threshold 0 = 90 is far outside the scores of stage 0" in r.json()["error"]
        r = await c.put(path, json={"thresholds": [90], "force": True}, headers=auth)
        assert r.status_code == 200 and r.json()["thresholds"] == [90.0]
        for t in ("-inf", None, "inf"):
            assert (await c.put(path, json={"thresholds": [t]}, headers=auth)).status_code == 200
        for raw in (b'{"thresholds": [1e999]}', b'{"thresholds": [' + b"9" * 5000 + b"]}"):
            r = await c.put(path, content=raw, headers={**auth, "content-type": "application/json"})
            assert r.status_code == 400 and "too large" in r.json()["error"]


@pytest.mark.parametrize("policy", ["allow", "clamp", "token"])
async def test_per_request_threshold_policy(policy: str) -> None:
    cfg = ServeConfig(
        admin_token="tok",
        threshold_override=policy,
        threshold_clamp=(-1.0, 1.0) if policy == "clamp" else None,
    )
    async with app_client(toy_app(cfg)) as c:
        r = await c.post(URL, json=doc(good(4), threshold=1e9))
        if policy == "token":
            assert r.status_code == 403
            assert "only with the admin token" in r.json()["error"]
            r = await c.post(
                URL, json=doc(good(4), threshold=1e9), headers={"Authorization": "Bearer tok"}
            )
        assert r.status_code == 200
        applied = r.json()["parameters"]["threshold"]
        assert applied == (1.0 if policy == "clamp" else 1e9)


# ------------------------------------------------------------------- 11: browsers and hosts


async def test_content_types_hosts_origins_and_docs() -> None:
    async with app_client(toy_app()) as c:
        for ctype in ("text/plain", "application/x-www-form-urlencoded"):
            r = await c.post(URL, content=json.dumps(doc(good())), headers={"content-type": ctype})
            assert r.status_code == 415 and "Expected Content-Type application/json" in r.text
        assert (await c.post(URL, content=json.dumps(doc(good())))).status_code == 200  # untyped
        r = await c.post(URL, json=doc(good()), headers={"origin": "http://evil.example"})
        assert r.status_code == 403 and "Cross-origin requests are refused" in r.json()["error"]
        assert (await c.get("/docs")).status_code == 200
    cfg = ServeConfig(trusted_hosts=["localhost"], docs=False)
    async with app_client(toy_app(cfg)) as c:
        r = await c.get("/v2/health/live")
        assert r.status_code == 400 and "Host 'test' is not served here" in r.json()["error"]
        ok = {"host": "localhost:8000"}
        assert (await c.get("/v2/health/live", headers=ok)).status_code == 200
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert (await c.get(path, headers=ok)).status_code == 404


# ------------------------------------------------------------- 7, 10: slow and vanishing bodies


def _raw(url: str, head: bytes, body: bytes) -> socket.socket:
    host, port = url.split(":")
    s = socket.create_connection((host, int(port)))
    s.sendall(head + body)
    return s


def test_slow_body_times_out_and_vanishing_client_logs_no_traceback() -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    uv = logging.getLogger("uvicorn.error")
    uv.addHandler(handler)
    head = (
        b"POST /v2/models/toy/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    try:
        with uvicorn_thread(toy_app(ServeConfig(body_timeout=0.3))) as url:
            s = _raw(url, head, b'{"inputs":')  # declares 100 bytes, sends 10, then waits
            s.settimeout(20)
            answer = s.recv(65536)
            s.close()
            assert answer.split(b"\r\n")[0].endswith(b"408 Request Timeout"), answer[:100]
            assert b"did not arrive within 0.3 s" in answer
            s = _raw(url, head, b'{"inputs":')  # sends 10 bytes, then disconnects
            s.close()
            time.sleep(0.5)
            import httpx

            assert httpx.get(f"http://{url}/v2/health/live").status_code == 200
    finally:
        uv.removeHandler(handler)
    assert not [r for r in records if r.levelno >= logging.ERROR], [r.getMessage() for r in records]


def test_limit_concurrency_answers_503_beyond_it() -> None:
    import httpx
    import uvicorn

    from cascadekit.serve.app import uvicorn_config

    def slow(x: Any) -> Any:
        time.sleep(0.5)
        return student(x)

    cfg = ServeConfig(port=free_port(), limit_concurrency=1, warmup=False)
    server = uvicorn.Server(uvicorn_config(toy_app(cfg, model=slow), cfg, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{cfg.port}"
    try:
        busy = threading.Thread(target=httpx.post, args=(base + URL,), kwargs={"json": doc(good())})
        busy.start()
        time.sleep(0.2)
        assert httpx.get(base + "/v2/health/live").status_code == 503
        busy.join()
    finally:
        server.should_exit = True
        thread.join(30)


# --------------------------------------------------------------------------- 6: bounded stop


async def test_stop_is_bounded_when_a_stage_hangs() -> None:
    release = threading.Event()

    def hung(x: Any) -> Any:
        release.wait(120)
        return teacher(x)

    cascade = Cascade(
        [Stage(model=student, score="margin"), Stage(model=hung)], thresholds=[float("inf")]
    )
    cfg = ServeConfig(stage_timeout=0.1, warmup=False)
    app = create_app(cascade, cfg, name="toy", input_spec=TensorSpec("x", ("FP32",), (-1, 8)))
    service = app.state.service
    try:
        async with app_client(app) as c:
            r = await c.post(URL, json=doc(good(2)))
            assert r.status_code == 200  # the hung teacher's inputs fell back to the student
            assert [o["data"] for o in r.json()["outputs"] if o["name"] == "fallback"] == [
                [True, True]
            ]
            stopping = asyncio.ensure_future(service.stop(drain_timeout=0.2))
            done, _ = await asyncio.wait({stopping}, timeout=30)  # a hang guard, not a timing
            assert stopping in done, "stop() waits for the hung stage"
        teacher_batcher = service._models["toy"].batchers[1]
        assert not teacher_batcher.running
    finally:
        release.set()


SERVER_SCRIPT = """
import sys, time
import numpy as np
from cascadekit import Cascade, Stage
from cascadekit.serve import ServeConfig, TensorSpec, create_app, run
def student(x):
    x = np.asarray(x, dtype=np.float64)
    return np.stack([x[:, 0], -x[:, 0]], 1)
def teacher(x):
    time.sleep(600)
    return student(x)
cascade = Cascade([Stage(model=student, score="margin"), Stage(model=teacher)],
                  thresholds=[float("inf")])
cfg = ServeConfig(port=int(sys.argv[1]), drain_timeout=1.0, stage_timeout=0.3, warmup=False)
app = create_app(cascade, cfg, name="toy", input_spec=TensorSpec("x", ("FP32",), (-1, 1)))
run(app, cfg, log_level="warning")
"""


def test_sigterm_ends_the_process_while_a_stage_hangs(tmp_path: Path) -> None:
    import httpx

    port = free_port()
    import cascadekit

    src = Path(cascadekit.__file__).resolve().parents[1]  # the sources under test
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [0.5]}]}
        r = httpx.post(base + "/v2/models/toy/infer", json=body, timeout=30)
        assert r.status_code == 200  # answered by the student: the teacher hangs
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) is not None  # it exits, no SIGKILL needed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert "did not stop within" in err, err[-2000:]
