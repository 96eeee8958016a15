"""Students built for the cascade, on the real (reduced) Fashion-MNIST zoo: distillation,
confidence tuning, deferral heads, committees, their scores, router files and the cache."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cascadekit import Cascade, Stage, curves, training  # noqa: E402
from cascadekit.data import DEFAULT_FASHION_MNIST_DIR  # noqa: E402
from cascadekit.errors import (  # noqa: E402
    ClassCountError,
    ParameterError,
    RouterFileError,
    SampleCountError,
    TrainingError,
    UnknownNameError,
)
from cascadekit.policies import committee_features  # noqa: E402
from cascadekit.router import Router  # noqa: E402
from cascadekit.scores import compute_score  # noqa: E402
from cascadekit.training.scores import (  # noqa: E402
    RoutingScore,
    agreement,
    committee_agreement,
    deferral,
    p_norm_softmax,
    resolve_score,
    routing_columns,
    tune_p_norm,
)

if not (DEFAULT_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
    pytest.skip("needs `apt-get install -y dataset-fashion-mnist`", allow_module_level=True)

N_TRAIN = 2000


@pytest.fixture(scope="module")
def zoo() -> Any:
    from cascadekit.data.zoo import load_fashion_mnist_zoo

    return load_fashion_mnist_zoo(reduced=True)


@pytest.fixture(scope="module")
def data(zoo: Any) -> dict[str, Any]:
    x = {s: np.asarray(zoo.images[s]) for s in zoo.splits}
    return {
        "x": x["train"][:N_TRAIN],
        "y": zoo.labels["train"][:N_TRAIN],
        "t": zoo.logits["train"]["teacher"][:N_TRAIN],
        "x_test": x["test"],
        "y_test": zoo.labels["test"],
        "ct_test": zoo.logits["test"]["teacher"].argmax(1) == zoo.labels["test"],
        "t_test": zoo.logits["test"]["teacher"],
        "x_sel": x["select"],
        "y_sel": zoo.labels["select"],
        "ct_sel": zoo.logits["select"]["teacher"].argmax(1) == zoo.labels["select"],
    }


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("training-cache")


def mlp(hidden: int = 32, seed: int = 0, out: int = 10) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(784, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, out),
        )


def logits_of(model: Any, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        out: np.ndarray = model(torch.from_numpy(x.astype(np.float32) / 255.0)).numpy()
    return out


def scaled(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x.astype(np.float32) / 255.0
    return out


@pytest.fixture(scope="module")
def kd(data: dict[str, Any], cache: Path) -> Any:
    return training.distill(
        mlp(), scaled(data["x"]), data["y"], teacher_logits=data["t"], epochs=10, cache_dir=cache
    )


# ---------------------------------------------------------------------------------------------
# distillation, the cache


def test_distilled_student_learns_and_follows_the_teacher(
    kd: Any, data: dict[str, Any], cache: Path
) -> None:
    z = logits_of(kd.model, data["x_test"])
    acc = float(np.mean(z.argmax(1) == data["y_test"]))
    assert acc > 0.7
    assert kd.losses[-1] < kd.losses[0]
    ce = training.fit(mlp(), scaled(data["x"]), data["y"], epochs=10, cache_dir=cache)
    teacher = logits_of_teacher = data["t_test"].argmax(1)
    agree_kd = float(np.mean(z.argmax(1) == teacher))
    agree_ce = float(np.mean(logits_of(ce.model, data["x_test"]).argmax(1) == logits_of_teacher))
    assert agree_kd > 0.75 and agree_ce > 0.7
    assert ce.key != kd.key and ce.method == "fit"


def test_a_second_run_loads_the_weights_and_a_new_recipe_retrains(
    kd: Any, data: dict[str, Any], cache: Path
) -> None:
    again = training.distill(
        mlp(), scaled(data["x"]), data["y"], teacher_logits=data["t"], epochs=10, cache_dir=cache
    )
    assert again.from_cache and again.key == kd.key and again.losses == kd.losses
    for a, b in zip(again.model.state_dict().values(), kd.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert (kd.path / "meta.json").is_file() and (kd.path / "model.pt").is_file()
    other = training.distill(
        mlp(),
        scaled(data["x"]),
        data["y"],
        teacher_logits=data["t"],
        epochs=10,
        tau=2.0,
        cache_dir=cache,
    )
    assert not other.from_cache and other.key != kd.key


def test_training_is_deterministic_given_the_seed(data: dict[str, Any]) -> None:
    a = training.fit(mlp(), scaled(data["x"][:500]), data["y"][:500], epochs=1, cache=False)
    b = training.fit(mlp(), scaled(data["x"][:500]), data["y"][:500], epochs=1, cache=False)
    c = training.fit(
        mlp(), scaled(data["x"][:500]), data["y"][:500], epochs=1, random_state=1, cache=False
    )
    wa, wb, wc = (list(r.model.state_dict().values())[-1] for r in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_teacher_logits_are_computed_once_and_cached(zoo: Any, cache: Path) -> None:
    teacher = zoo.models["teacher"]
    x = np.asarray(zoo.images["select"])[:300]
    seen: list[str] = []
    t1 = training.compute_teacher_logits(
        teacher, x, cache_dir=cache, progress=lambda d, f: seen.append(d)
    )
    t2 = training.compute_teacher_logits(
        teacher, x, cache_dir=cache, progress=lambda d, f: seen.append(d)
    )
    np.testing.assert_array_equal(t1, t2)
    assert seen[-1] == "teacher logits: loaded from cache"
    np.testing.assert_allclose(t1, zoo.logits["select"]["teacher"][:300], atol=1e-3)
    distilled = training.distill(
        mlp(), scaled(x), zoo.labels["select"][:300], teacher=teacher, epochs=1, cache_dir=cache
    )
    assert distilled.settings["tau"] == 4.0


def test_progress_reaches_one(data: dict[str, Any], cache: Path) -> None:
    seen: list[float] = []
    training.fit(
        mlp(seed=3),
        scaled(data["x"][:300]),
        data["y"][:300],
        epochs=2,
        cache_dir=cache,
        progress=lambda d, f: seen.append(f),
    )
    assert seen[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in seen) and seen == sorted(seen)


# ---------------------------------------------------------------------------------------------
# bad input: what was expected, what was got, what to do; nothing half-written


def test_teacher_logits_that_do_not_match_the_inputs(data: dict[str, Any], cache: Path) -> None:
    x, y, t = scaled(data["x"][:200]), data["y"][:200], data["t"][:200]
    with pytest.raises(
        SampleCountError, match=r"teacher's logits on the 200 training inputs; got 199"
    ):
        training.distill(mlp(), x, y, teacher_logits=t[:199], cache_dir=cache)
    with pytest.raises(ClassCountError, match=r"have 9 classes but the labels go up to 9"):
        training.distill(mlp(), x, y, teacher_logits=t[:, :9], cache_dir=cache)
    with pytest.raises(TrainingError, match=r"teacher's logits hold 1 non-finite"):
        bad = t.copy()
        bad[3, 2] = np.nan
        training.distill(mlp(), x, y, teacher_logits=bad, cache_dir=cache)
    with pytest.raises(ParameterError, match="exactly one of teacher= .* got neither"):
        training.distill(mlp(), x, y, cache_dir=cache)
    with pytest.raises(SampleCountError, match=r"one label per training input \(200\); got 150"):
        training.fit(mlp(), x, y[:150], cache_dir=cache)


def test_student_width_must_match_the_teacher(data: dict[str, Any], cache: Path) -> None:
    x, y, t = scaled(data["x"][:200]), data["y"][:200], data["t"][:200]
    with pytest.raises(ClassCountError, match=r"output 10 logits per input .* got shape \(1, 7\)"):
        training.distill(mlp(out=7), x, y, teacher_logits=t, cache_dir=cache)
    with pytest.raises(ClassCountError, match=r"at least 10 columns\); got 7"):
        training.fit(mlp(out=7), x, y, cache_dir=cache)


def test_a_diverging_loss_raises_and_caches_nothing(data: dict[str, Any], tmp_path: Path) -> None:
    x, y = scaled(data["x"][:256]), data["y"][:256]
    x[5, 0, 0] = np.nan
    student = mlp(seed=7)
    before = copy.deepcopy(student.state_dict())
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, step 1 .* Lower the"):
        training.fit(student, x, y, cache_dir=tmp_path)
    assert not list(tmp_path.rglob("meta.json")) and not list(tmp_path.rglob("model.pt"))
    for k, v in student.state_dict().items():
        assert torch.equal(v, before[k])


def test_confidence_tune_checks(data: dict[str, Any], cache: Path) -> None:
    x, y = scaled(data["x"][:200]), data["y"][:200]
    with pytest.raises(SampleCountError, match=r"teacher_correct with one bool per training input"):
        training.confidence_tune(mlp(), x, y, teacher_correct=np.ones(3, bool), cache_dir=cache)
    with pytest.raises(ParameterError, match=r"alpha in \(0, 1\]; got 0.0"):
        training.confidence_tune(mlp(), x, y, alpha=0.0, cache_dir=cache)


# ---------------------------------------------------------------------------------------------
# confidence tuning, deferral, committees


def test_confidence_tuning_lowers_confidence_on_wrong_answers(
    kd: Any, data: dict[str, Any], cache: Path
) -> None:
    before = logits_of(kd.model, data["x_test"])
    tuned = training.confidence_tune(
        copy.deepcopy(kd.model),
        scaled(data["x"]),
        data["y"],
        alpha=0.3,
        epochs=2,
        lr=1e-3,
        cache_dir=cache,
    )
    after = logits_of(tuned.model, data["x_test"])

    def wrong_conf(z: np.ndarray) -> float:
        wrong = z.argmax(1) != data["y_test"]
        return float(np.mean(compute_score("max_softmax", z)[wrong]))

    assert wrong_conf(after) < wrong_conf(before) - 0.2
    aware = training.confidence_tune(
        copy.deepcopy(kd.model),
        scaled(data["x"]),
        data["y"],
        alpha=0.3,
        teacher_correct=data["t"].argmax(1) == data["y"],
        cache_dir=cache,
    )
    assert aware.key != tuned.key and aware.settings["teacher_aware"]


def test_deferral_student_routes_through_a_cascade(
    kd: Any, data: dict[str, Any], cache: Path, zoo: Any
) -> None:
    half = slice(0, 500)
    res = training.train_deferral(
        kd.model,
        scaled(data["x_sel"][half]),
        data["y_sel"][half],
        data["ct_sel"][half],
        surrogate="ova",
        feature_layer="2",
        epochs=5,
        cache_dir=cache,
    )
    model = res.model
    out = logits_of(model, data["x_test"])
    student = logits_of(kd.model, data["x_test"])
    assert out.shape == (len(data["y_test"]), 11)
    np.testing.assert_allclose(out[:, :10], student, atol=1e-5)  # the student is frozen
    assert np.all(out[:, 10] <= 0.0)  # log P(teacher right)
    cascade = Cascade.from_models(
        [lambda x: logits_of(model, x), lambda x: zoo.forward("teacher", x)],
        costs=[1, 40],
        score=deferral,
        thresholds=[0.0],
    )
    r = cascade.predict(data["x_test"])
    kept = r.stage == 0
    assert 0 < kept.mean() < 1
    np.testing.assert_array_equal(r.predictions[kept], student.argmax(1)[kept])
    assert r.probabilities is not None and r.probabilities.shape[1] == 10
    np.testing.assert_array_equal(r.stage_scores[:, 0], deferral(out))
    again = training.train_deferral(
        kd.model,
        scaled(data["x_sel"][half]),
        data["y_sel"][half],
        data["ct_sel"][half],
        surrogate="ova",
        feature_layer="2",
        epochs=5,
        cache_dir=cache,
    )
    assert again.from_cache
    np.testing.assert_array_equal(logits_of(again.model, data["x_test"]), out)


def test_deferral_checks(kd: Any, data: dict[str, Any], cache: Path) -> None:
    x, y = scaled(data["x_sel"][:100]), data["y_sel"][:100]
    with pytest.raises(SampleCountError, match=r"teacher_correct with one bool per input \(100,\)"):
        training.train_deferral(kd.model, x, y, np.ones(99, bool), cache_dir=cache)
    with pytest.raises(UnknownNameError, match=r"surrogate in \['ce', 'ova'\]; got 'hinge'"):
        training.train_deferral(kd.model, x, y, np.ones(100, bool), surrogate="hinge")
    with pytest.raises(UnknownNameError, match=r"feature_layer to name a sub-module .* 'body'"):
        training.train_deferral(kd.model, x, y, np.ones(100, bool), feature_layer="body")


def test_committee_agreement_matches_its_members(data: dict[str, Any], cache: Path) -> None:
    from cascadekit.costs import count_flops

    res = training.train_committee(
        lambda i: mlp(hidden=16), 2, scaled(data["x"]), data["y"], epochs=2, cache_dir=cache
    )
    com = res.model
    x = data["x_test"][:400]
    out = logits_of(com, x)
    members = [logits_of(m, x) for m in com.members]
    ens, agree = committee_agreement(members)
    np.testing.assert_allclose(out[:, :10], ens, atol=1e-5)
    np.testing.assert_allclose(out[:, 10], agree, atol=1e-5)
    np.testing.assert_allclose(agreement(out), agree, atol=1e-5)
    votes = np.floor(agree)
    np.testing.assert_array_equal(votes, 1 + committee_features(members[0], members[1])[:, 0])
    one = count_flops(com.members[0], torch.zeros(1, 28, 28))
    assert count_flops(com, torch.zeros(1, 28, 28)) == 2 * one
    with pytest.raises(ParameterError, match="at least 2 members; got 1"):
        training.train_committee(lambda i: mlp(), 1, scaled(data["x"]), data["y"])


# ---------------------------------------------------------------------------------------------
# scores and router files


def test_p_norm_softmax_reorders_but_never_changes_the_prediction() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 10)) * rng.uniform(0.5, 4, size=(500, 1))
    a, b = compute_score("max_softmax", z), p_norm_softmax(z, p=2.0)
    assert not np.array_equal(np.argsort(a), np.argsort(b))
    np.testing.assert_array_equal(np.argsort(p_norm_softmax(z, p=0.0)), np.argsort(a))
    y = rng.integers(0, 10, 500)
    p, _t, crit = tune_p_norm(z, y, p_values=(0.0, 2.0), temperatures=(1.0,))
    assert p in (0.0, 2.0) and 0 <= crit <= 1
    with pytest.raises(ParameterError, match=r"p = 0 \(no normalisation\) or p >= 1; got 0.5"):
        p_norm_softmax(z, p=0.5)


def test_router_files_describe_the_new_scores(tmp_path: Path) -> None:
    import jsonschema

    from cascadekit.schemas import load_schema

    z = np.random.default_rng(1).normal(size=(50, 4)) * 3
    r = Router(score="p_norm_softmax", thresholds=[-0.2], score_params={"p": 3.0})
    path = tmp_path / "r.json"
    r.save(path)
    doc = json.loads(path.read_text())
    assert doc["format_version"] == 2 and doc["score_params"] == {"p": 3.0}
    jsonschema.validate(doc, load_schema("router"))
    loaded = Router.load(path)
    cascade = loaded.to_cascade([z, np.eye(4)[np.arange(50) % 4] * 5])
    assert isinstance(cascade.stages[0].score, RoutingScore)
    np.testing.assert_allclose(cascade.route().stage_scores[:, 0], p_norm_softmax(z, p=3.0))
    for name in ("deferral", "agreement"):
        Router(score=name, thresholds=[0.0]).save(path)
        assert routing_columns(Router.load(path).stage_score) == 1
    assert resolve_score("margin") == "margin"
    bad = {**doc, "score_params": {"q": 1}}
    with pytest.raises(UnknownNameError, match=r"takes parameters \['p'\]; got \['q'\]"):
        Router.from_dict(bad)
    with pytest.raises(UnknownNameError, match="Score 'margin' takes no parameters"):
        Router.from_dict({**doc, "score": "margin"})
    with pytest.raises(RouterFileError, match='"score_params" to be an object'):
        Router.from_dict({**doc, "score_params": [3]})


def test_version_1_router_files_still_load() -> None:
    data_dir = Path(__file__).parent / "data"
    for f in sorted(data_dir.glob("router_v1_*.json")):
        r = Router.load(f)
        assert r.score_params is None and isinstance(r.stage_score, str)


def test_deferral_stage_checks_classes_without_its_routing_column() -> None:
    out = np.column_stack([np.eye(3)[[0, 1, 2, 0]] * 4, np.log([0.9, 0.2, 0.5, 0.99])])
    teacher = np.eye(3)[[0, 1, 1, 1]] * 3
    c = Cascade([Stage(out, score=deferral), Stage(teacher, cost=10)], thresholds=[0.0])
    r = c.route()
    assert r.predictions.max() < 3
    np.testing.assert_array_equal(r.stage, (deferral(out) < 0).astype(np.int32))
    with pytest.raises(ClassCountError, match="disagree on the number of classes: 3 vs 4"):
        Cascade(
            [Stage(out, score=deferral), Stage(np.eye(4)[[0, 1, 2, 3]])], thresholds=[0.0]
        ).route()


def test_gap_captured_of_the_trained_students_is_measured_not_assumed(
    kd: Any, data: dict[str, Any]
) -> None:
    z = logits_of(kd.model, data["x_test"])
    cs = z.argmax(1) == data["y_test"]
    c = curves.cascade_curve(compute_score("max_softmax", z), cs, data["ct_test"])
    assert 0.0 < curves.gap_captured(c, cs, data["ct_test"]) < 1.0


def test_zoo_student_is_trained_once_and_cached(zoo: Any, tmp_path: Path) -> None:
    from cascadekit.training.zoo import train_zoo_student

    kw: dict[str, Any] = {"hidden": 16, "epochs": 1, "tune_alpha": 0.5, "cache_dir": tmp_path}
    first = train_zoo_student(zoo, **kw)
    again = train_zoo_student(zoo, **kw)
    assert not first.result.from_cache and again.result.from_cache
    np.testing.assert_array_equal(first.logits["test"], again.logits["test"])
    assert first.label == "MLP 16" and first.flops < zoo.flops["student"]
    assert np.mean(first.logits["test"].argmax(1) == zoo.labels["test"]) > 0.6
    with pytest.raises(UnknownNameError, match="method 'fit' or 'distill'; got 'svm'"):
        train_zoo_student(zoo, method="svm", cache_dir=tmp_path)
