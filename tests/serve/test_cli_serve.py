"""``cascadekit serve --demo --teacher-only --reduced`` as a user runs it: a process, HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import free_port


def _start(*flags: str, log: Any) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    cmd = [sys.executable, "-m", "cascadekit.cli", "serve", "--demo", "--reduced", *flags]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Any) -> None:
    import httpx

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            err = log.read().decode()
            raise AssertionError(f"the server exited with {proc.returncode}: {err[-2000:]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not get ready within 240 s")


@pytest.fixture(scope="module")
def teacher_only_url() -> Iterator[str]:
    with tempfile.TemporaryFile() as log:
        proc, url = _start("--teacher-only", "--torch-threads", "1", log=log)
        try:
            _wait_ready(proc, url, log)
            yield url
        finally:
            proc.terminate()
            proc.wait(30)


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
