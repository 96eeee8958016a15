"""The FastAPI app in-process (httpx ASGI transport) with the real Fashion-MNIST cascade."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import numpy as np
import pytest
from conftest import app_client, make_served
from serve_helpers import FaultyModel, check_correct_or_flagged, reference

from cascadekit.oip import HEADER_LENGTH
from cascadekit.serve import BatchPolicy, ServeConfig, create_app

pytestmark = pytest.mark.anyio
URL = "/v2/models/fashion-mnist/infer"


def body(images: np.ndarray, datatype: str = "UINT8", **params: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "inputs": [
            {
                "name": "image",
                "shape": list(images.shape),
                "datatype": datatype,
                "data": images.reshape(-1).tolist(),
            }
        ]
    }
    if params:
        doc["parameters"] = params
    return doc


def outputs(resp: Any) -> dict[str, np.ndarray]:
    assert resp.status_code == 200, resp.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in resp.json()["outputs"]}


@pytest.fixture
def served(zoo: Any, choice: Any) -> Any:
    return make_served(zoo, choice)


async def test_health_and_metadata(served: Any) -> None:
    async with app_client(create_app(served)) as c:
        assert (await c.get("/v2/health/live")).json() == {"live": True}
        assert (await c.get("/v2/health/ready")).json() == {"ready": True}
        assert (await c.get("/v2/models/fashion-mnist/ready")).json()["ready"] is True
        server = (await c.get("/v2")).json()
        assert server["name"] == "cascadekit" and "binary_tensor_data" in server["extensions"]
        meta = (await c.get("/v2/models/fashion-mnist")).json()
        assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 28, 28]}]
        assert [o["name"] for o in meta["outputs"]][:4] == ["label", "score", "stage", "fallback"]
        assert meta["parameters"]["threshold"] == served.cascade.thresholds[0]
        v = await c.get("/v2/models/fashion-mnist/versions/1")
        assert v.json()["name"] == "fashion-mnist"


async def test_infer_matches_offline_cascade(served: Any, test_images: Any) -> None:
    images, labels = test_images[0][:200], test_images[1][:200]
    ref = reference(served, images)
    th = served.cascade.thresholds[0]
    async with app_client(create_app(served)) as c:
        r = await c.post(URL, json=body(images))
        out = outputs(r)
        assert r.json()["parameters"] == {"threshold": th}
        assert r.json()["model_name"] == "fashion-mnist"
        n_ok, n_flag = check_correct_or_flagged(
            out["label"], out["stage"], out["fallback"], out["score"], ref, np.arange(200), th
        )
        assert n_flag == 0 and n_ok == 200
        # the cascade is a good classifier on real images, and uses both stages
        assert np.mean(out["label"] == labels) > 0.85
        assert 0 < np.mean(out["stage"]) < 1
        # FP32 raw pixels give the same answers
        r32 = outputs(await c.post(URL, json=body(images.astype(np.float32), "FP32")))
        assert np.array_equal(r32["label"], out["label"])


async def test_threshold_override_and_probabilities(served: Any, test_images: Any) -> None:
    images = test_images[0][:50]
    ref_student = reference(served, images)["student"]
    teacher = np.argmax(served.cascade.live_models()[1](images.astype(np.float32)), axis=1)
    async with app_client(create_app(served)) as c:
        r = await c.post(URL, json=body(images, threshold="-inf", probabilities=True))
        out = outputs(r)
        assert np.all(out["stage"] == 0) and np.array_equal(out["label"], ref_student)
        assert r.json()["parameters"]["threshold"] == "-inf"
        np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
        assert np.array_equal(out["probabilities"].argmax(axis=1), out["label"])
        out = outputs(await c.post(URL, json=body(images, threshold=1e9)))
        assert np.all(out["stage"] == 1) and np.array_equal(out["label"], teacher)
        # requested outputs only, one of them as binary data
        doc = body(images[:3])
        doc["outputs"] = [{"name": "label"}, {"name": "score", "parameters": {"binary_data": True}}]
        r = await c.post(URL, json=doc)
        n = int(r.headers[HEADER_LENGTH])
        head = json.loads(r.content[:n])
        assert [o["name"] for o in head["outputs"]] == ["label", "score"]
        score = np.frombuffer(r.content[n:], dtype="<f4")
        assert score.shape == (3,) and head["outputs"][1]["parameters"]["binary_data_size"] == 12


async def test_binary_request_body(served: Any, test_images: Any) -> None:
    images = test_images[0][:5]
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [5, 28, 28],
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": images.size},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    async with app_client(create_app(served)) as c:
        r = await c.post(
            URL, content=header + images.tobytes(), headers={HEADER_LENGTH: str(len(header))}
        )
        assert r.status_code == 200, r.text
        n = int(r.headers[HEADER_LENGTH])
        head = json.loads(r.content[:n])
        sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
        assert sizes == [40, 20, 20, 5]  # INT64, FP32, INT32, BOOL x 5
        label = np.frombuffer(r.content[n : n + 40], dtype="<i8")
        ref = reference(served, images)
        assert np.array_equal(label, ref["label"])


# ------------------------------------------------------------------------- errors: 400 / 404


def _inp(**over: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"name": "image", "shape": [1, 28, 28], "datatype": "UINT8"}
    t["data"] = [0] * 784
    t.update(over)
    return {"inputs": [t]}


BAD_REQUESTS = [
    (b"{not json", None, r"Expected the request body to be JSON; it is malformed at line 1"),
    (b"[1, 2]", None, r"Expected the request body to be a JSON object .* got a list"),
    (b"{}", None, r"Expected 'inputs' to be a non-empty list .* got no inputs field"),
    (b'{"inputs": [{"name": "x"}]}', None, r"datatype' of input 'x' to be one of BOOL"),
    (_inp(name="pixels"), None, r"takes one input, 'image' .* got input\(s\) 'pixels'"),
    (_inp(datatype="INT32"), None, r"Input 'image' expects datatype UINT8 or FP32; got INT32"),
    (_inp(shape=[1, 784], data=[0] * 784), None, r"expects shape \[-1, 28, 28\] .* got \[1, 784\]"),
    (_inp(data=[0] * 783), None, r"so 784 element\(s\), but its data holds 783"),
    (_inp(data=[300] + [0] * 783), None, r"UINT8 input 'image' to lie in \[0, 255\]"),
    (_inp(data=[1.5] + [0] * 783), None, r"UINT8 input 'image' to be integers; got non-integer"),
    (_inp(data=["a"] * 784), None, r"to be integers; got non-numbers"),
    (
        _inp(datatype="FP32", data=[-1.0] + [0.0] * 783),
        None,
        r"expects values in \[0, 255\]; got values in \[-1, 0\]. Send raw values",
    ),
    (
        b'{"inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [NaN]}]}',
        None,
        r"contains NaN, which is not valid JSON",
    ),
    (
        {**_inp(), "parameters": {"threshold": "abc"}},
        None,
        r"Expected parameters.threshold to be a number .* got 'abc'",
    ),
    (
        {**_inp(), "parameters": {"threshold": "1,2"}},
        None,
        r"Expected 1 threshold\(s\) in parameters.threshold for a 2-stage cascade; got 2",
    ),
    (
        {**_inp(), "parameters": {"timeout": -5}},
        None,
        r"Expected parameters.timeout to be a positive number of microseconds",
    ),
    (
        {**_inp(), "parameters": {"timeout": [1]}},
        None,
        r"Expected parameter 'timeout' .* to be a string, number or boolean",
    ),
    ({**_inp(), "outputs": [{"name": "logits"}]}, None, r"Unknown output 'logits' requested"),
    (
        b'{"inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "UINT8", '
        b'"parameters": {"binary_data_size": 784}}]}',
        None,
        r"declares binary_data_size=784 but the request has no Inference-Header-Content-Length",
    ),
    (
        (
            b'{"inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "UINT8", '
            b'"parameters": {"binary_data_size": 784}}]}',
            b"\0" * 10,
        ),
        "auto",
        r"declares binary_data_size=784 at offset 0, but only 10 bytes",
    ),
    (b"{}", "99", r"Expected the Inference-Header-Content-Length header to be an integer in"),
    (
        (
            b'{"inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "UINT8", '
            b'"parameters": {"binary_data_size": 3}}]}',
            b"xyz",
        ),
        "auto",
        r"needs 784 bytes of binary data \(784 x 1\); got 3",
    ),
]


@pytest.mark.parametrize(("payload", "header_length", "match"), BAD_REQUESTS)
async def test_bad_requests_are_400_with_precise_messages(
    served: Any, payload: Any, header_length: str | None, match: str
) -> None:
    import re

    if isinstance(payload, tuple):  # (JSON header, binary tail)
        raw, header_length = payload[0] + payload[1], str(len(payload[0]))
    else:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {} if header_length is None else {HEADER_LENGTH: header_length}
    async with app_client(create_app(served)) as c:
        r = await c.post(URL, content=raw, headers=headers)
    assert r.status_code == 400, r.text
    assert re.search(match, r.json()["error"]), r.json()["error"]


async def test_not_found_and_body_limit(served: Any) -> None:
    app = create_app(served, ServeConfig(max_body_bytes=2000))
    async with app_client(app) as c:
        r = await c.post("/v2/models/nope/infer", json=_inp())
        assert r.status_code == 404
        assert r.json()["error"].startswith("Unknown model 'nope'; this server serves")
        r = await c.get("/v2/models/nope")
        assert r.status_code == 404 and "Unknown model 'nope'" in r.json()["error"]
        r = await c.get("/v2/models/fashion-mnist/versions/7")
        assert r.status_code == 404 and "has no version '7'" in r.json()["error"]
        r = await c.get("/v3/whatever")
        assert r.status_code == 404 and r.json()["error"].startswith("No endpoint GET /v3")
        r = await c.post(URL, json=body(np.zeros((3, 28, 28), np.uint8)))
        assert r.status_code == 413
        assert "exceeds the limit of 2000 bytes" in r.json()["error"]


# ----------------------------------------------------------------- 503 / 504 and fallbacks


async def test_overloaded_student_is_503_with_retry_after(served: Any) -> None:
    faulty = FaultyModel(served.cascade.stages[0].model, delay=0.3)
    served.cascade.stages[0].model = faulty
    cfg = ServeConfig(batching=BatchPolicy(max_batch_size=1, max_wait=0, max_queue=1))
    async with app_client(create_app(served, cfg)) as c:
        faulty.mode = "slow"
        doc = body(np.zeros((1, 28, 28), np.uint8))
        rs = await asyncio.gather(*(c.post(URL, json=doc) for _ in range(4)))
    codes = sorted(r.status_code for r in rs)
    assert codes.count(503) >= 1 and codes.count(200) >= 1
    r503 = next(r for r in rs if r.status_code == 503)
    assert r503.headers["retry-after"] == "1"
    assert "Stage 'student' is overloaded" in r503.json()["error"]


async def test_deadline_before_student_is_504(served: Any) -> None:
    faulty = FaultyModel(served.cascade.stages[0].model, delay=0.3)
    served.cascade.stages[0].model = faulty
    async with app_client(create_app(served)) as c:
        faulty.mode = "slow"
        r = await c.post(URL, json=body(np.zeros((1, 28, 28), np.uint8), timeout=50_000))
    assert r.status_code == 504
    assert "passed before the first stage 'student' answered" in r.json()["error"]


@pytest.mark.parametrize("mode", ["fail", "slow", "overload"])
async def test_teacher_faults_fall_back_to_student(
    served: Any, test_images: Any, mode: str
) -> None:
    images = test_images[0][:64]
    ref = reference(served, images)
    faulty = FaultyModel(served.cascade.stages[1].model, delay=1.0)
    served.cascade.stages[1].model = faulty
    policy = BatchPolicy(
        max_batch_size=64, max_wait=0.001, max_queue=1 if mode == "overload" else 64
    )
    cfg = ServeConfig(stage_timeout=0.2, batching=policy)
    async with app_client(create_app(served, cfg)) as c:
        faulty.mode = "slow" if mode == "overload" else mode
        blockers = []
        if mode == "overload":  # one slow teacher batch running, one waiting: queue full
            for _ in range(2):
                blockers.append(asyncio.create_task(c.post(URL, json=body(images, threshold=1e9))))
                await asyncio.sleep(0.03)
        r = await c.post(URL, json=body(images))
        out = outputs(r)
        deferred = ref["stage"] == 1
        assert np.array_equal(out["fallback"], deferred)
        check_correct_or_flagged(
            out["label"],
            out["stage"],
            out["fallback"],
            out["score"],
            ref,
            np.arange(64),
            served.cascade.thresholds[0],
        )
        for b in blockers:
            assert (await b).status_code == 200
        metrics = (await c.get("/metrics")).text
        reason = {"fail": "error", "slow": "timeout", "overload": "overload"}[mode]
        assert (
            f'cascadekit_fallbacks_total{{model="fashion-mnist",reason="{reason}",stage="1"}}'
            in metrics
        )
        assert (await c.get("/v2/health/ready")).status_code == 200  # teacher faults: still ready


async def test_failing_student_is_503_and_not_ready(served: Any) -> None:
    faulty = FaultyModel(served.cascade.stages[0].model)
    served.cascade.stages[0].model = faulty
    async with app_client(create_app(served)) as c:
        faulty.mode = "fail"
        r = await c.post(URL, json=body(np.zeros((1, 28, 28), np.uint8)))
        assert r.status_code == 503
        assert "The first stage 'student' of model 'fashion-mnist' failed" in r.json()["error"]
        assert (await c.get("/v2/health/ready")).status_code == 503
        assert (await c.get("/v2/models/fashion-mnist/ready")).json()["ready"] is False
        faulty.mode = "ok"  # recovers: the next successful student batch makes it ready again
        r = await c.post(URL, json=body(np.zeros((1, 28, 28), np.uint8)))
        assert r.status_code == 200
        assert (await c.get("/v2/health/ready")).status_code == 200


async def test_draining_refuses_new_requests_and_finishes_inflight(served: Any) -> None:
    faulty = FaultyModel(served.cascade.stages[0].model, delay=0.3)
    served.cascade.stages[0].model = faulty
    app = create_app(served)
    service = app.state.service
    async with app_client(app) as c:
        faulty.mode = "slow"
        inflight = asyncio.create_task(c.post(URL, json=body(np.zeros((2, 28, 28), np.uint8))))
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(service.stop())
        await asyncio.sleep(0.01)
        r = await c.post(URL, json=body(np.zeros((1, 28, 28), np.uint8)))
        assert r.status_code == 503 and "shutting down" in r.json()["error"]
        assert (await c.get("/v2/health/ready")).status_code == 503
        assert (await inflight).status_code == 200
        await stopping


# -------------------------------------------------------------------------- admin and metrics


async def test_admin_disabled_without_token(served: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("CASCADEKIT_ADMIN_TOKEN", raising=False)
    async with app_client(create_app(served)) as c:
        r = await c.put("/admin/models/fashion-mnist/thresholds", json={"thresholds": [0.5]})
    assert r.status_code == 403
    assert r.json()["error"].startswith("The admin API is disabled: set CASCADEKIT_ADMIN_TOKEN")


async def test_admin_auth_and_validation(served: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("CASCADEKIT_ADMIN_TOKEN", "s3cret")
    path = "/admin/models/fashion-mnist/thresholds"
    good = {"Authorization": "Bearer s3cret"}
    async with app_client(create_app(served)) as c:
        r = await c.put(path, json={"thresholds": [0.5]})
        assert r.status_code == 401 and "got no Authorization header" in r.json()["error"]
        r = await c.put(path, json={"thresholds": [0.5]}, headers={"Authorization": "Bearer x"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = await c.put(path, json={"threshold": 0.5}, headers=good)
        assert r.status_code == 400 and 'Expected a JSON body {"thresholds"' in r.json()["error"]
        r = await c.put(path, json={"thresholds": [0.5, 0.2]}, headers=good)
        assert r.status_code == 400
        assert "Expected 1 threshold(s) for a 2-stage cascade" in r.json()["error"]
        r = await c.put("/admin/models/nope/thresholds", json={"thresholds": [1]}, headers=good)
        assert r.status_code == 404
        r = await c.put(path, json={"thresholds": ["-inf"]}, headers=good)
        assert r.status_code == 200 and r.json()["thresholds"] == ["-inf"]
        meta = (await c.get("/v2/models/fashion-mnist")).json()
        assert meta["parameters"]["threshold"] == "-inf"
        out = outputs(await c.post(URL, json=body(np.zeros((2, 28, 28), np.uint8))))
        assert np.all(out["stage"] == 0)
        assert (
            'cascadekit_threshold{model="fashion-mnist",stage="0"} -Inf'
            in (await c.get("/metrics")).text
        )


async def test_threshold_changes_under_load_fail_nothing(
    served: Any, test_images: Any, monkeypatch: Any
) -> None:
    """Turn the knob 20 times while 60 requests run: every request succeeds, and each answer is
    the offline cascade's at one of the thresholds that were live."""
    monkeypatch.setenv("CASCADEKIT_ADMIN_TOKEN", "tok")
    images = test_images[0][:600]
    low, high = served.cascade.thresholds[0], -math.inf
    refs = {t: reference(served, images, [t]) for t in (low, high)}
    async with app_client(create_app(served)) as c:

        async def one(i: int) -> Any:
            idx = np.arange(i * 10, i * 10 + 10)
            return idx, await c.post(URL, json=body(images[idx]))

        async def knob() -> list[int]:
            codes = []
            for j in range(20):
                t = [low] if j % 2 else ["-inf"]
                r = await c.put(
                    "/admin/models/fashion-mnist/thresholds",
                    json={"thresholds": t},
                    headers={"Authorization": "Bearer tok"},
                )
                codes.append(r.status_code)
                await asyncio.sleep(0.002)
            return codes

        results = await asyncio.gather(knob(), *(one(i) for i in range(60)))
    assert results[0] == [200] * 20
    for idx, r in results[1:]:
        out = outputs(r)
        applied = r.json()["parameters"]["threshold"]
        t = high if applied == "-inf" else float(applied)
        check_correct_or_flagged(
            out["label"], out["stage"], out["fallback"], out["score"], refs[t], idx, t
        )


async def test_metrics_and_cross_request_batching(served: Any, test_images: Any) -> None:
    images = test_images[0][:256]
    cfg = ServeConfig(batching=BatchPolicy(max_batch_size=64, max_wait=0.02))
    app = create_app(served, cfg)
    async with app_client(app) as c:
        rs = await asyncio.gather(
            *(c.post(URL, json=body(images[i : i + 4])) for i in range(0, 256, 4))
        )
        assert all(r.status_code == 200 for r in rs)
        await c.post(URL, content=b"{")
        text = (await c.get("/metrics")).text
    student = app.state.service._models["fashion-mnist"].batchers[0].stats
    assert student.inputs == 256 and student.batches < 64  # 64 requests shared batches
    for series in (
        'cascadekit_requests_total{code="200",model="fashion-mnist"} 64.0',
        'cascadekit_request_failures_total{model="fashion-mnist",reason="bad_request"} 1.0',
        'cascadekit_batch_size_count{model="fashion-mnist",stage="0"}',
        'cascadekit_queue_seconds_bucket{le="0.001",model="fashion-mnist",stage="1"}',
        'cascadekit_score_count{model="fashion-mnist"} 256.0',
        'cascadekit_teacher_share{model="fashion-mnist"}',
    ):
        assert series in text, series
    # a second app has its own registry
    other = create_app(served)
    assert other.state.service.metrics.registry is not app.state.service.metrics.registry
