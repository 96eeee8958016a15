"""Every driver of the routing engine gives the same answer on the same inputs.

``Cascade.route`` (saved outputs), ``Cascade.predict`` (live models) and the server over HTTP
(``create_app``, the in-process ASGI transport) route one toy cascade built from checked-in
files (tests/data): a router file with a specialized student ("other" gate, class map), an
intermediate stage and a teacher, served from YAML. Labels, stages, every stage's score and
the fallback flags must be identical, bit for bit, also when the teacher is down. The Ray
backends are compared in tests/serve/test_ray.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import app_client
from serve_helpers import TOY_SLICES, toy_inputs

from cascadekit import oip
from cascadekit.errors import RouterFileError
from cascadekit.policies import FeatureSpec, LearnedPolicy, PolicyRouter, save_policy_router
from cascadekit.router import Router
from cascadekit.scores import from_probability_form
from cascadekit.serve import ServeConfig, create_app, load_config

DATA = Path(__file__).resolve().parents[1] / "data"
FIELDS = ("label", "stage", "stage_scores", "fallback")


def _fields(r: Any) -> dict[str, np.ndarray]:
    return {
        "label": r.predictions,
        "stage": r.stage,
        "stage_scores": r.stage_scores,
        "fallback": r.fallback,
    }


async def _over_http(served: Any, x: np.ndarray, warmup: bool = True) -> dict[str, np.ndarray]:
    body, _ = oip.encode_infer_request(
        [oip.OutputTensor(served.input.name, x)], outputs=list(FIELDS)
    )
    config = ServeConfig(stage_timeout=30.0, warmup=warmup)
    async with app_client(create_app(served, config)) as client:
        reply = await client.post(f"/v2/models/{served.name}/infer", content=body)
    assert reply.status_code == 200, reply.text
    return {o["name"]: oip.decode_tensor(o) for o in reply.json()["outputs"]}


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray], who: str) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"{who}: {name}")


def _copy_yaml(tmp_path: Path, teacher: str = "toy_teacher") -> Path:
    shutil.copy(DATA / "router_toy_specialized.json", tmp_path)
    text = (DATA / "serve_specialized.yaml").read_text()
    path = tmp_path / "serve.yaml"
    path.write_text(text.replace("serve_helpers:toy_teacher", f"serve_helpers:{teacher}"))
    return path


@pytest.mark.anyio
async def test_route_predict_and_server_give_identical_fields() -> None:
    served, _ = load_config(DATA / "serve_specialized.yaml")
    cascade = served.cascade
    x = toy_inputs()
    outputs = [x[:, s] for s in TOY_SLICES]
    routed = _fields(cascade.route(outputs))
    _assert_same(_fields(cascade.predict(x)), routed, "predict")
    _assert_same(await _over_http(served, x), routed, "server")
    # the routes are not trivial: every stage answers, the "other" gate forwards confident rows
    assert set(routed["stage"].tolist()) == {0, 1, 2}
    gated = np.argmax(outputs[0], axis=1) == 2
    assert gated.any() and (routed["stage"][gated] > 0).all()
    assert (np.abs(outputs[0][gated][:, 0] - outputs[0][gated][:, 1]) >= 1.0).any()
    assert np.isnan(routed["stage_scores"][:, 1]).sum() == (routed["stage"] == 0).sum()


@pytest.mark.anyio
async def test_specialized_router_from_yaml_answers_in_the_teachers_classes() -> None:
    served, _ = load_config(DATA / "serve_specialized.yaml")
    x = toy_inputs()
    got = await _over_http(served, x)
    student = x[:, TOY_SLICES[0]]
    at_student = got["stage"] == 0
    # the student's classes 0 and 1 are the teacher's 4 and 2; "other" is never an answer
    np.testing.assert_array_equal(
        got["label"][at_student], np.array([4, 2])[np.argmax(student[at_student, :2], axis=1)]
    )
    assert set(got["label"][at_student].tolist()) == {2, 4}
    assert (np.argmax(student[at_student], axis=1) != 2).all()
    # the same rule as the router file applied to saved logits
    rule = Router.load(DATA / "router_toy_specialized.json")
    want = rule.to_cascade([x[:, s] for s in TOY_SLICES]).route()
    np.testing.assert_array_equal(got["label"], want.predictions)
    np.testing.assert_array_equal(got["stage"], want.stage)


@pytest.mark.anyio
async def test_fallback_is_identical_in_predict_and_the_server(tmp_path: Path) -> None:
    served, _ = load_config(_copy_yaml(tmp_path, teacher="toy_teacher_down"))
    x = toy_inputs()
    predicted = _fields(served.cascade.predict(x))
    # (no warm-up: it runs every stage, and a model down at start-up is not ready)
    _assert_same(await _over_http(served, x, warmup=False), predicted, "server")
    routed = load_config(DATA / "serve_specialized.yaml")[0].cascade.route(
        [x[:, s] for s in TOY_SLICES]
    )
    # rows the teacher should have answered keep the intermediate stage's answer, flagged
    to_teacher = routed.stage == 2
    assert to_teacher.any()
    np.testing.assert_array_equal(predicted["fallback"], to_teacher)
    np.testing.assert_array_equal(predicted["stage"], np.where(to_teacher, 1, routed.stage))
    middle = np.argmax(x[:, TOY_SLICES[1]], axis=1)
    np.testing.assert_array_equal(predicted["label"][to_teacher], middle[to_teacher])
    np.testing.assert_array_equal(predicted["stage_scores"], routed.stage_scores)


def _learned_router(tmp_path: Path, x: np.ndarray) -> Path:
    """A learned chain policy (middle -> teacher) saved as a router file next to a YAML."""
    student, teacher = x[:, TOY_SLICES[1]], x[:, TOY_SLICES[2]]
    y = np.argmax(teacher, axis=1)  # the teacher is right by construction
    spec = FeatureSpec()
    policy = LearnedPolicy([1.0, 10.0], lam=0.05).fit(
        [spec.build(student)], [np.argmax(student, axis=1) == y, np.ones(y.shape[0], bool)]
    )
    save_policy_router(
        PolicyRouter(policy, spec, stage_names=["middle", "teacher"]), tmp_path / "r.json"
    )
    (tmp_path / "serve.yaml").write_text(
        "name: learned\ninput: {name: x, datatypes: [FP32], shape: [-1, 13]}\n"
        "router: r.json\nstages:\n"
        "  - callable: 'serve_helpers:toy_middle'\n"
        "  - callable: 'serve_helpers:toy_teacher'\n"
    )
    return tmp_path / "serve.yaml"


@pytest.mark.anyio
async def test_a_learned_policy_router_is_served(tmp_path: Path) -> None:
    x = toy_inputs(seed=1)
    # a teacher that agrees with the intermediate stage where that one is confident
    noise = np.random.default_rng(1).normal(scale=1.5, size=(x.shape[0], 5))
    x[:, TOY_SLICES[2]] = x[:, TOY_SLICES[1]] + noise.astype(np.float32)
    served, _ = load_config(_learned_router(tmp_path, x))
    outputs = [x[:, TOY_SLICES[1]], x[:, TOY_SLICES[2]]]
    got = await _over_http(served, x)
    # the policy's own routing of saved logits decides the same
    from cascadekit.policies import load_policy_router

    route, preds = load_policy_router(tmp_path / "r.json").predict(outputs)
    np.testing.assert_array_equal(got["stage"], route.exit_node)
    np.testing.assert_array_equal(got["label"], preds)
    assert 0 < (got["stage"] == 1).mean() < 1
    _assert_same(got, _fields(served.cascade.route(outputs)), "route")
    _assert_same(_fields(served.cascade.predict(x)), got, "predict")


def test_a_dag_policy_cannot_become_a_cascade(tmp_path: Path) -> None:
    from cascadekit.policies import PolicyGraph

    x = toy_inputs(seed=2)
    logits = [x[:, s] for s in TOY_SLICES]
    y = np.argmax(logits[2], axis=1)
    graph = PolicyGraph.skip_dag([1.0, 3.0, 10.0])
    spec = FeatureSpec()
    correct = [np.argmax(z, axis=1) == y for z in logits]
    feats = [spec.build(logits[0]), spec.build(logits[1]), None]
    policy = LearnedPolicy(graph, lam=0.05).fit(feats, correct)
    save_policy_router(PolicyRouter(policy, spec), tmp_path / "dag.json")
    with pytest.raises(RouterFileError, match="graph is a DAG"):
        Router.load(tmp_path / "dag.json").to_cascade()


def test_router_to_cascade_needs_one_model_per_stage() -> None:
    rule = Router.load(DATA / "router_toy_specialized.json")
    with pytest.raises(RouterFileError, match="routes 3 stages; got models for 2"):
        rule.to_cascade(models=[np.asarray, np.asarray])


def test_a_score_function_cannot_be_saved(tmp_path: Path) -> None:
    rule = Router(score=lambda z, t=1.0: z.max(axis=1), thresholds=[0.0])
    with pytest.raises(RouterFileError, match="cannot hold. Register it by name"):
        rule.save(tmp_path / "r.json")


def test_checked_in_yaml_configs_keep_loading() -> None:
    rng = np.random.default_rng(3)
    z = [rng.normal(scale=3.0, size=(300, 10)).astype(np.float32) for _ in range(2)]
    # inline rule: p_max thresholds converted to the routing form, costs and names kept
    inline, _ = load_config(DATA / "serve_inline.yaml")
    want = Router(
        score="max_softmax",
        temperature=0.71,
        thresholds=[from_probability_form("max_softmax", 0.93)],
        costs=[1.0, 42.0],
        stage_names=["student", "teacher"],
    )
    assert inline.cascade.thresholds == tuple(want.thresholds)
    assert [s.name for s in inline.cascade.stages] == ["student", "teacher"]
    np.testing.assert_array_equal(inline.cascade.costs, [1.0, 42.0])
    np.testing.assert_array_equal(
        inline.cascade.route(z).predictions, want.to_cascade(z).route().predictions
    )
    # a format_version 1 router file named by the YAML
    v1, _ = load_config(DATA / "serve_router_v1.yaml")
    rule = Router.load(DATA / "router_v1_max_softmax.json")
    assert v1.cascade.thresholds == tuple(rule.thresholds)
    np.testing.assert_array_equal(v1.cascade.costs, rule.costs)
    assert [s.name for s in v1.cascade.stages] == rule.stage_names
    r = v1.cascade.route(z)
    np.testing.assert_array_equal(r.stage, rule.to_cascade(z).route().stage)
    assert 0 < r.teacher_share < 1
    doc = json.loads((DATA / "router_v1_max_softmax.json").read_text())
    assert doc["format_version"] == 1
