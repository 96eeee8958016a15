"""``cascadekit serve --demo --teacher-only --reduced`` as a user runs it: a process, HTTP."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from cascadekit.serve.launch import serve_process

#: ``cascadekit serve --demo --reduced`` in a child process (``serve_process`` adds the port).
SERVE = [sys.executable, "-m", "cascadekit.cli", "serve", "--demo", "--reduced"]
SERVE += ["--log-level", "warning"]


@pytest.fixture(scope="module")
def teacher_only_url() -> Iterator[str]:
    with (
        tempfile.TemporaryFile() as log,
        serve_process([*SERVE, "--teacher-only", "--torch-threads", "1"], log=log) as server,
    ):
        yield server.url


def _infer(url: str, images: np.ndarray) -> Any:
    import httpx

    body = {
        "inputs": [
            {
                "name": "image",
                "shape": list(images.shape),
                "datatype": "UINT8",
                "data": images.ravel().tolist(),
            }
        ],
        "parameters": {"probabilities": True},
    }
    r = httpx.post(f"{url}/v2/models/fashion-mnist/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return {o["name"]: o["data"] for o in r.json()["outputs"]}


def test_teacher_only_answers_with_the_teacher(teacher_only_url: str) -> None:
    import httpx
    import torch

    from cascadekit.data.zoo import load_fashion_mnist_zoo

    zoo = load_fashion_mnist_zoo(reduced=True)  # the zoo `--reduced` serves

    meta = httpx.get(f"{teacher_only_url}/v2/models/fashion-mnist", timeout=10).json()
    assert meta["parameters"]["stages"].split(",")[0] == "teacher"
    assert meta["parameters"]["threshold"] == "-inf"
    images = zoo.images["test"][:16]
    out = _infer(teacher_only_url, images)
    assert out["stage"] == [0] * 16 and out["fallback"] == [False] * 16
    # the labels are the teacher's own: the same network run here in-process
    teacher = zoo.models["teacher"].eval()
    with torch.no_grad():
        expected = teacher(torch.as_tensor(images, dtype=torch.float32)).argmax(1).tolist()
    assert out["label"] == expected
