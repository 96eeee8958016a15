"""Routing decided by the inputs, never by rounding: the same images get the same stage and label
whatever batch they arrive in, in whatever order, and through whichever tensor encoding.

On the Fashion-MNIST zoo as it comes out of the cache (the reduced recipe in CI), with the
demo's router (score and temperature chosen on select, threshold on calibrate). Scores keep
their resolution (max-softmax as log-odds, entropy as -log H) and thresholds sit midway
between calibration scores, so the share of inputs within numerical resolution of the
threshold is tiny; it is printed and bounded here.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from conftest import app_client, make_served

from cascadekit import scores
from cascadekit.oip import HEADER_LENGTH
from cascadekit.serve import ServeConfig, create_app

N = 1500
URL = "/v2/models/fashion-mnist/infer"


@pytest.fixture(scope="module")
def served(zoo: Any, choice: Any) -> Any:
    return make_served(zoo, choice)


@pytest.fixture(scope="module")
def whole(served: Any, zoo: Any) -> Any:
    return served.cascade.predict(zoo.images["test"][:N].astype(np.float32), probabilities=False)


@pytest.fixture(scope="module")
def near(served: Any, whole: Any) -> np.ndarray:
    t = float(served.cascade.thresholds[0])
    out = scores.near_threshold(whole.stage_scores[:, 0], t)
    st = served.cascade.stages[0]
    print(
        f"\n{out.mean():.4%} of {N} test inputs lie within numerical resolution of the "
        f"threshold {t:.6g} ({st.score}, T={st.temperature:.3g})"
    )
    return out


def _same(stage: np.ndarray, label: np.ndarray, whole: Any, near: np.ndarray, idx: Any) -> None:
    ok = ~near[idx]
    np.testing.assert_array_equal(stage[ok], whole.stage[idx][ok])
    np.testing.assert_array_equal(label[ok], whole.predictions[idx][ok])


def test_few_inputs_lie_within_resolution_of_the_threshold(whole: Any, near: np.ndarray) -> None:
    assert near.mean() < 0.001
    assert 0 < whole.teacher_share < 1  # both stages answer


def test_batch_size_and_order_change_no_answer(
    served: Any, zoo: Any, whole: Any, near: np.ndarray
) -> None:
    images = zoo.images["test"][:N].astype(np.float32)
    cascade = served.cascade
    one_by_one = [cascade.predict(images[i : i + 1], probabilities=False) for i in range(120)]
    _same(
        np.concatenate([r.stage for r in one_by_one]),
        np.concatenate([r.predictions for r in one_by_one]),
        whole,
        near,
        np.arange(120),
    )
    for size in (7, 64, 257):
        parts = [
            cascade.predict(images[i : i + size], probabilities=False) for i in range(0, N, size)
        ]
        _same(
            np.concatenate([r.stage for r in parts]),
            np.concatenate([r.predictions for r in parts]),
            whole,
            near,
            np.arange(N),
        )
    perm = np.random.default_rng(0).permutation(N)
    shuffled = cascade.predict(images[perm], probabilities=False)
    _same(shuffled.stage, shuffled.predictions, whole, near, perm)


def _json_body(images: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "image",
                "shape": list(images.shape),
                "datatype": "UINT8",
                "data": images.reshape(-1).tolist(),
            }
        ]
    }


def _binary_body(images: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": list(images.shape),
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": images.size},
                }
            ]
        }
    ).encode()
    return header + images.tobytes(), {HEADER_LENGTH: str(len(header))}


def _outputs(resp: Any) -> dict[str, np.ndarray]:
    assert resp.status_code == 200, resp.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in resp.json()["outputs"]}


@pytest.mark.anyio
async def test_server_json_binary_and_co_batching_change_no_answer(
    served: Any, zoo: Any, whole: Any, near: np.ndarray
) -> None:
    images = zoo.images["test"][:N]
    # a generous stage timeout: answers are compared, and a slow teacher on a loaded machine
    # would otherwise fall back to the student
    async with app_client(create_app(served, ServeConfig(stage_timeout=30))) as c:
        # one request with every image, as JSON and as a binary tensor
        out = _outputs(await c.post(URL, json=_json_body(images)))
        _same(out["stage"], out["label"], whole, near, np.arange(N))
        content, headers = _binary_body(images)
        out = _outputs(await c.post(URL, content=content, headers=headers))
        _same(out["stage"], out["label"], whole, near, np.arange(N))
        # 60 concurrent requests of 1 to 9 images: the batcher mixes them into shared batches
        sizes = np.random.default_rng(1).integers(1, 10, size=60)
        starts = np.r_[0, np.cumsum(sizes)[:-1]]

        def send(k: int, s: int, n: int) -> Any:
            if k % 2:
                return c.post(URL, json=_json_body(images[s : s + n]))
            content, headers = _binary_body(images[s : s + n])
            return c.post(URL, content=content, headers=headers)

        replies = await asyncio.gather(
            *(send(k, s, n) for k, (s, n) in enumerate(zip(starts, sizes, strict=True)))
        )
        for r, s, n in zip(replies, starts, sizes, strict=True):
            out = _outputs(r)
            _same(out["stage"], out["label"], whole, near, np.arange(s, s + n))
