"""A student trained for the cascade (a deferral head) served from a router file and a YAML
config: the server answers like the offline cascade, with labels from the class columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import app_client

from cascadekit import training
from cascadekit.router import Router
from cascadekit.serve import create_app, load_config
from cascadekit.training.scores import RoutingScore, deferral


@pytest.mark.anyio
async def test_a_deferral_student_serves_from_a_router_file(tmp_path: Path, zoo: Any) -> None:
    import torch

    x_sel = np.asarray(zoo.images["select"])[:600]
    ct = zoo.logits["select"]["teacher"][:600].argmax(1) == zoo.labels["select"][:600]
    res = training.train_deferral(
        zoo.models["student"],
        x_sel,
        zoo.labels["select"][:600],
        ct,
        surrogate="ova",
        epochs=3,
        cache_dir=tmp_path,
    )
    example = torch.zeros(4, 28, 28)
    paths = {}
    for name, module in (("student", res.model), ("teacher", zoo.models["teacher"])):
        paths[name] = tmp_path / f"{name}.pt"
        torch.jit.trace(module.eval(), example).save(str(paths[name]))
    Router(score="deferral", thresholds=[0.0], costs=[1.0, 40.0]).save(tmp_path / "router.json")
    (tmp_path / "serve.yaml").write_text(
        f"""
name: fmnist
input: {{name: image, datatypes: [UINT8, FP32], shape: [-1, 28, 28], range: [0, 255]}}
router: router.json
score_form: log
stages:
  - name: student
    torchscript: {paths["student"]}
  - name: teacher
    torchscript: {paths["teacher"]}
"""
    )
    served, config = load_config(tmp_path / "serve.yaml")
    assert isinstance(served.cascade.stages[0].score, RoutingScore)
    images = np.asarray(zoo.images["test"])[:64]
    offline = served.cascade.predict(images.astype(np.float32))
    with torch.inference_mode():
        out = res.model(torch.from_numpy(images.astype(np.float32))).numpy()
    np.testing.assert_array_equal(offline.stage, (deferral(out) < 0.0).astype(np.int32))
    assert offline.predictions.max() < 10
    async with app_client(create_app(served, config)) as c:
        doc = {
            "inputs": [
                {
                    "name": "image",
                    "shape": [64, 28, 28],
                    "datatype": "UINT8",
                    "data": images.reshape(-1).tolist(),
                }
            ]
        }
        r = await c.post("/v2/models/fmnist/infer", json=doc)
    assert r.status_code == 200, r.text
    outs = {o["name"]: o["data"] for o in r.json()["outputs"]}
    assert np.mean(np.array(outs["label"]) == offline.predictions) >= 0.98
    assert json.loads((tmp_path / "router.json").read_text())["score"] == "deferral"
