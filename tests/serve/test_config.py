"""Cascades described in YAML files: real zoo models by state dict, errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import app_client

from cascadekit.errors import DataNotFoundError
from cascadekit.serve import ConfigError, ServeConfig, create_app, load_config
from cascadekit.serve.batching import BatchPolicy


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "serve.yaml"
    p.write_text(text)
    return p


def _yaml(zoo: Any, choice: Any, extra: str = "") -> str:
    specs = {m.name: m for m in zoo.recipe.models}
    s, t = specs["student"], specs["teacher"]
    return f"""
name: fmnist
input: {{name: image, datatypes: [UINT8, FP32], shape: [-1, 28, 28], range: [0, 255]}}
score: {choice.score}
temperature: {choice.temperature}
thresholds: [{choice.threshold}]
score_form: log
batching: {{max_batch_size: 32, max_wait_ms: 1, max_queue: 512}}
server: {{port: 9123, request_timeout_ms: 5000, stage_timeout_ms: 800}}
stages:
  - name: student
    torch:
      factory: "cascadekit.data._nets:build_network"
      kwargs: {{arch: {s.arch}, params: {json.dumps(dict(s.params))}}}
      state_dict: {zoo.path / "student.pt"}
    batching: {{max_batch_size: 128}}
  - name: teacher
    torch:
      factory: "cascadekit.data._nets:build_network"
      kwargs: {{arch: {t.arch}, params: {json.dumps(dict(t.params))}}}
      state_dict: {zoo.path / "teacher.pt"}
{extra}"""


@pytest.mark.anyio
async def test_yaml_cascade_serves_like_the_demo(
    tmp_path: Path, zoo: Any, choice: Any, test_images: Any
) -> None:
    served, config = load_config(_write(tmp_path, _yaml(zoo, choice)))
    assert config.port == 9123 and config.host == "127.0.0.1"
    assert config.policy(0, 2) == BatchPolicy(128, 0.001, 512)
    assert config.policy(1, 2) == BatchPolicy(32, 0.001, 512)
    assert config.timeout(1, 2) == pytest.approx(0.8) and config.timeout(0, 2) is None
    images, labels = test_images[0][:100], test_images[1][:100]
    async with app_client(create_app(served, config)) as c:
        doc = {
            "inputs": [
                {
                    "name": "image",
                    "shape": [100, 28, 28],
                    "datatype": "UINT8",
                    "data": images.reshape(-1).tolist(),
                }
            ]
        }
        r = await c.post("/v2/models/fmnist/infer", json=doc)
    assert r.status_code == 200
    label = np.array(r.json()["outputs"][0]["data"])
    offline = served.cascade.predict(images.astype(np.float32)).predictions
    assert np.mean(label == offline) >= 0.99 and np.mean(label == labels) > 0.85


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("name: [1]\n", ConfigError, r"Expected 'name' to be a model name without '/'; got \[1\]"),
        ("- a\n- b\n", ConfigError, r"Expected .*serve.yaml to be a mapping; got list"),
        ("name: m\ncolour: red\n", ConfigError, r"Unknown key\(s\) 'colour' in .*expected"),
        (
            "name: m\ninput: {shape: [28]}\nthresholds: [1]\nstages: [{}, {}]\n",
            ConfigError,
            r"exactly one of onnx, torch, torchscript, callable, zoo; got none",
        ),
        ("name: m\ninput: {shape: 5}\n", ConfigError, r"Expected input.shape to be a list"),
        (
            "name: m\ninput: {shape: [-1, 2], datatypes: [STR]}\n",
            ConfigError,
            r"Expected input.datatypes to be numeric protocol datatypes; got \['STR'\]",
        ),
        (
            "name: m\ninput: {shape: [-1, 2]}\nstages: []\n",
            ConfigError,
            r"The config sets no thresholds: add 'thresholds: \[...\]' or 'router: router.json'",
        ),
        (
            "name: m\ninput: {shape: [-1, 2]}\nthresholds: [1]\nstages: [{callable: x}]\n",
            ConfigError,
            r"Expected 'stages' to list at least 2 stages",
        ),
        (
            "name: m\ninput: {shape: [-1, 2]}\nthresholds: [1]\n"
            "stages: [{callable: 'os:nope'}, {callable: 'os:getcwd'}]\n",
            ConfigError,
            r"Could not import 'os:nope' for stages\[0\].callable",
        ),
        (
            "name: m\ninput: {shape: [-1, 2]}\nthresholds: [1]\n"
            "stages: [{onnx: missing.onnx}, {onnx: m.onnx}]\n",
            DataNotFoundError,
            r"stages\[0\].onnx: expected a file at .*missing.onnx",
        ),
        (
            "name: m\ninput: {shape: [-1, 2]}\nthresholds: [1]\nbatching: {max_batch_size: 0}\n"
            "stages: [{callable: 'os:getcwd'}, {callable: 'os:getcwd'}]\n",
            ConfigError,
            r"In 'batching': Expected max_batch_size to be a positive integer; got 0",
        ),
        (
            "name: m\ninput: {shape: [-1, 2]}\nthresholds: [1]\nserver: {port: 99999}\n"
            "stages: [{callable: 'os:getcwd'}, {callable: 'os:getcwd'}]\n",
            ConfigError,
            r"Expected port to be an integer in \[0, 65535\]; got 99999",
        ),
        (
            "name: m\ninput: {shape: [-1, 2]}\nthresholds: [1, 2]\n"
            "stages: [{callable: 'os:getcwd'}, {callable: 'os:getcwd'}]\n",
            ConfigError,
            r"is invalid: Expected 1 threshold\(s\) for a 2-stage cascade",
        ),
        ("name: m\n  bad: [\n", ConfigError, r"is not valid YAML"),
        (
            "name: m\ninput: {shape: [-1, 2]}\nthresholds: [1]\nscore_form: logit\n"
            "stages: [{callable: 'os:getcwd'}, {callable: 'os:getcwd'}]\n",
            ConfigError,
            r"Expected score_form to be 'probability' .* or 'log' .*; got 'logit'",
        ),
    ],
)
def test_config_errors(tmp_path: Path, text: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        load_config(_write(tmp_path, text))


def test_config_file_missing(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"Expected a server config file at .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"request_timeout": 0}, r"Expected request_timeout to be a positive number; got 0"),
        ({"max_body_bytes": 0}, r"Expected max_body_bytes to be a positive integer; got 0"),
        ({"stage_timeout": [1.0, -1]}, r"Expected each stage_timeout to be a positive number"),
        ({"host": ""}, r"Expected host to be a non-empty string"),
        ({"batching": [1]}, r"Expected batching to be a BatchPolicy or a list of them"),
        ({"body_timeout": -1}, r"Expected body_timeout to be a positive number; got -1"),
        ({"limit_concurrency": 0}, r"Expected limit_concurrency to be a positive integer or None"),
        ({"threshold_override": "never"}, r"Expected threshold_override to be one of allow, clamp"),
        ({"threshold_override": "clamp"}, r'threshold_override="clamp" needs threshold_clamp'),
        ({"threshold_clamp": (2, 1)}, r"Expected threshold_clamp to be \[low, high\]"),
        ({"trusted_hosts": "localhost"}, r"Expected trusted_hosts to be a list of host names"),
    ],
)
def test_serve_config_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ServeConfig(**kwargs)


@pytest.mark.anyio
async def test_yaml_thresholds_in_probability_form_keep_their_meaning(
    tmp_path: Path, zoo: Any, choice: Any
) -> None:
    # a config written for p_max (the form YAML thresholds always had) routes as p_max >= 0.93
    text = _yaml(zoo, choice).replace(f"score: {choice.score}", "score: max_softmax")
    text = text.replace(f"thresholds: [{choice.threshold}]\nscore_form: log", "thresholds: [0.93]")
    served, _ = load_config(_write(tmp_path, text))
    from cascadekit import scores

    assert served.cascade.thresholds == (scores.from_probability_form("max_softmax", 0.93),)
    logits = zoo.logits["test"]["student"][:2000]
    stage = served.cascade.stages[0]
    kept = stage.decide(logits, served.cascade.thresholds[0]).keep
    plain = scores.max_probability(logits, choice.temperature) >= 0.93
    np.testing.assert_array_equal(kept, plain)


def test_hardening_settings_from_yaml(tmp_path: Path) -> None:
    text = (
        "name: m\ninput: {shape: [-1, 2]}\nthresholds: [1]\n"
        "server: {body_timeout_s: 5, limit_concurrency: 8, threshold_override: clamp,\n"
        "         threshold_clamp: [-1, 2], trusted_hosts: [LocalHost], docs: false}\n"
        "stages: [{callable: 'os:getcwd'}, {callable: 'os:getcwd'}]\n"
    )
    _, cfg = load_config(_write(tmp_path, text))
    assert (cfg.body_timeout, cfg.limit_concurrency, cfg.docs) == (5, 8, False)
    assert cfg.threshold_override == "clamp" and cfg.threshold_clamp == (-1.0, 2.0)
    assert cfg.trusted_hosts == ["localhost"]
    from cascadekit.serve.app import uvicorn_config

    assert uvicorn_config(object(), cfg).limit_concurrency == 8


def test_a_yaml_config_is_documented_as_code() -> None:
    import cascadekit.serve.config as config_module

    root = Path(__file__).resolve().parents[2]
    assert "**A YAML config is code.**" in (config_module.__doc__ or "")
    page = (root / "docs" / "security.md").read_text()
    assert "A YAML config is code" in page and "router file" in page
    assert "docs/security.md" in (root / "README.md").read_text()
