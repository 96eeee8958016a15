"""NVIDIA's own client, ``tritonclient[http]``, unchanged, against a real uvicorn server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import make_served, uvicorn_thread
from serve_helpers import check_correct_or_flagged, reference

from cascadekit.serve import create_app

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def server(zoo: Any, choice: Any) -> Iterator[tuple[str, Any]]:
    served = make_served(zoo, choice)
    with uvicorn_thread(create_app(served)) as url:
        yield url, served


def _infer(client: Any, images: np.ndarray, binary: bool, **kw: Any) -> Any:
    inp = httpclient.InferInput("image", list(images.shape), "UINT8")
    inp.set_data_from_numpy(images, binary_data=binary)
    return client.infer("fashion-mnist", [inp], **kw)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infer(server: Any, test_images: Any, binary: bool) -> None:
    url, served = server
    images, labels = test_images[0][:100], test_images[1][:100]
    client = httpclient.InferenceServerClient(url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("fashion-mnist")
        meta = client.get_model_metadata("fashion-mnist")
        assert meta["inputs"][0] == {"name": "image", "datatype": "UINT8", "shape": [-1, 28, 28]}
        if binary:  # tritonclient's default: no outputs given -> binary_data_output
            result = _infer(client, images, True)
        else:
            outs = [
                httpclient.InferRequestedOutput(n, binary_data=False)
                for n in ("label", "score", "stage", "fallback")
            ]
            result = _infer(client, images, False, outputs=outs)
        label = result.as_numpy("label")
        stage = result.as_numpy("stage")
        assert label.dtype == np.int64 and stage.dtype == np.int32
        assert result.as_numpy("fallback").dtype == np.bool_
        th = served.cascade.thresholds[0]
        check_correct_or_flagged(
            label,
            stage,
            result.as_numpy("fallback"),
            result.as_numpy("score"),
            reference(served, images),
            np.arange(100),
            th,
        )
        assert np.mean(label == labels) > 0.85  # correct labels on real Fashion-MNIST images
        assert result.get_response()["parameters"]["threshold"] == th
        # tritonclient's own parameters: a deadline (microseconds) and a custom threshold
        r = _infer(client, images[:4], binary, timeout=5_000_000, parameters={"threshold": -1e9})
        assert np.all(r.as_numpy("stage") == 0)
    finally:
        client.close()


def test_tritonclient_sees_errors(server: Any) -> None:
    url, _ = server
    client = httpclient.InferenceServerClient(url)
    try:
        inp = httpclient.InferInput("image", [1, 784], "UINT8")
        inp.set_data_from_numpy(np.zeros((1, 784), np.uint8))
        with pytest.raises(InferenceServerException, match=r"expects shape \[-1, 28, 28\]"):
            client.infer("fashion-mnist", [inp])
        with pytest.raises(InferenceServerException, match="Unknown model 'nope'"):
            client.infer("nope", [inp])
    finally:
        client.close()


def test_cli_serve_demo_real_process(test_images: Any, zoo: Any) -> None:
    """`cascadekit serve --demo --port 0` in its own process, on loopback; SIGTERM drains.

    It serves the zoo the other tests use: the full one when it is cached, else the reduced one
    (`--reduced`), so the test runs on a new machine too."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    from cascadekit.data.zoo import default_recipe

    reduced = [] if zoo.recipe.key == default_recipe().key else ["--reduced"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cascadekit.cli", "serve", "--demo", *reduced, "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        url = None
        deadline = time.monotonic() + 120
        assert proc.stderr is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}")
            m = re.search(r"Uvicorn running on http://(127\.0\.0\.1:\d+)", line)
            url = m.group(1) if m else None
        assert url is not None
        client = httpclient.InferenceServerClient(url)
        try:
            images, labels = test_images[0][:64], test_images[1][:64]
            label = _infer(client, images, True).as_numpy("label")
            assert np.mean(label == labels) > 0.85
        finally:
            client.close()
    finally:
        proc.terminate()
        _, rest = proc.communicate(timeout=30)
        # uvicorn re-raises SIGTERM after its graceful shutdown (lifespan drain included)
        assert proc.returncode in (0, -15)
        assert "Application shutdown complete" in rest
