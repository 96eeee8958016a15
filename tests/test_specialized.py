"""Specialized EBJR: the top-C + "other" recipe, popular-class streams, the gated router and its
exact curve (against brute-force routing), router files, bad input, and real Fashion-MNIST
students trained (small) into a temporary cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cascadekit import Cascade, Stage
from cascadekit.data import DEFAULT_FASHION_MNIST_DIR
from cascadekit.errors import (
    ClassCountError,
    InsufficientDataError,
    LabelError,
    ParameterError,
    SampleCountError,
)
from cascadekit.router import Router
from cascadekit.scores import specialized_energy
from cascadekit.specialized import (
    Specialization,
    popular_stream,
    specialized_cascade,
    specialized_curve,
    specialized_router,
    specialized_scores,
    specialized_stage,
)

# ------------------------------------------------------------------------------ the recipe


def test_from_labels_picks_the_most_frequent_classes_ties_by_label() -> None:
    y = np.array([5] * 7 + [2] * 4 + [7] * 4 + [0] * 1 + [9] * 4)
    spec = Specialization.from_labels(y, n_top=3, n_classes=10)
    assert spec.classes == (5, 2, 7)  # 2, 7 and 9 tie at 4: smaller labels first
    assert spec.class_map == [5, 2, 7, -1] and spec.other_class == 3
    enc = spec.encode(y)
    assert set(enc[y == 5]) == {0} and set(enc[y == 9]) == {3} and set(enc[y == 0]) == {3}
    np.testing.assert_array_equal(spec.decode(spec.encode([5, 2, 7])), [5, 2, 7])
    assert spec.decode([3]).tolist() == [-1]
    assert spec.in_top([5, 0]).tolist() == [True, False]


def test_popular_stream_has_the_share_and_is_reproducible() -> None:
    y = np.repeat(np.arange(10), 100)
    for share in (0.5, 0.75, 0.9):
        idx = popular_stream(y, (3, 1), share, random_state=1)
        assert len(set(idx.tolist())) == len(idx)  # without replacement
        assert np.mean(np.isin(y[idx], [3, 1])) == pytest.approx(share, abs=1e-2)
        np.testing.assert_array_equal(idx, popular_stream(y, (3, 1), share, random_state=1))
    idx = popular_stream(y, Specialization((3, 1), 10), 0.75, n=240, random_state=2)
    assert len(idx) == 240 and np.sum(np.isin(y[idx], [3, 1])) == 180
    assert popular_stream(y, (3, 1), 1.0).size == 200
    assert popular_stream(y, (3, 1), 0.0).size == 800


def _random_case(n: int = 300, c: int = 3, k: int = 6, seed: int = 0) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    spec = Specialization(tuple(int(v) for v in rng.permutation(k)[:c]), k)
    student = rng.normal(size=(n, c + 1)) * 2
    enc = spec.encode(y)
    student[np.arange(n), enc] += 2.0  # somewhat informative
    student = np.round(student, 1)  # create ties
    teacher = rng.normal(size=(n, k))
    teacher[np.arange(n), y] += 2.5
    return spec, student, teacher, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curve_matches_brute_force_routing(seed: int) -> None:
    spec, zs, zt, y = _random_case(seed=seed)
    curve = specialized_curve(zs, zt, y, spec, costs=[1, 8])
    cascade = specialized_cascade(zs, zt, spec, costs=[1, 8])
    for t, share, acc, cost in zip(
        curve.thresholds, curve.teacher_share, curve.accuracy, curve.relative_cost, strict=True
    ):
        r = cascade.route(thresholds=t)  # a row: one threshold per non-final stage
        assert r.teacher_share == pytest.approx(share)
        assert r.accuracy(y) == pytest.approx(acc)
        assert r.relative_cost == pytest.approx(cost)
    forced = np.argmax(zs, axis=1) == spec.other_class
    assert curve.teacher_share[0] == pytest.approx(forced.mean())  # the gate's floor
    assert curve.accuracy[-1] == pytest.approx(np.mean(np.argmax(zt, axis=1) == y))
    # energy over the real classes only (eq. 17), the score the stage routes by
    s, gate, _ = specialized_scores(zs, spec)
    np.testing.assert_allclose(s, specialized_energy(zs))
    np.testing.assert_array_equal(gate, forced)


def test_router_file_round_trip_routes_the_same(tmp_path: Path) -> None:
    spec, zs, zt, _y = _random_case(seed=4)
    t = float(np.median(specialized_scores(zs, spec)[0]))
    path = tmp_path / "router.json"
    specialized_router(spec, t, costs=[1, 8]).save(path)
    doc = json.loads(path.read_text())
    assert doc["class_maps"][0] == spec.class_map and doc["other_class"] == [spec.other_class, None]
    loaded = Router.load(path).to_cascade([zs, zt]).route()
    direct = specialized_cascade(zs, zt, spec, costs=[1, 8], threshold=t).route()
    np.testing.assert_array_equal(loaded.stage, direct.stage)
    np.testing.assert_array_equal(loaded.predictions, direct.predictions)
    assert loaded.relative_cost == pytest.approx(direct.relative_cost)


def test_cli_route_applies_a_specialized_router_file(tmp_path: Path) -> None:
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from cascadekit.cli import app

    spec, zs, zt, y = _random_case(seed=5)
    specialized_router(spec, 0.5, costs=[1, 8]).save(tmp_path / "r.json")
    for name, arr in (("s.npy", zs), ("t.npy", zt), ("y.npy", y)):
        np.save(tmp_path / name, arr)
    out = tmp_path / "out.json"
    res = CliRunner().invoke(
        app,
        [
            "route",
            str(tmp_path / "r.json"),
            str(tmp_path / "s.npy"),
            str(tmp_path / "t.npy"),
            "--labels",
            str(tmp_path / "y.npy"),
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    direct = specialized_cascade(zs, zt, spec, costs=[1, 8], threshold=0.5).route()
    assert doc["prediction"] == direct.predictions.tolist()
    assert doc["accuracy"] == pytest.approx(direct.accuracy(y))


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: Specialization((1,), 10), ParameterError, r"n_top \(C\) in \[2, 9\]"),
        (lambda: Specialization(tuple(range(10)), 10), ParameterError, r"in \[2, 9\]"),
        (lambda: Specialization((1, 12), 10), LabelError, "unknown class"),
        (lambda: Specialization((1, -1), 10), LabelError, "unknown class"),
        (lambda: Specialization((1, 1), 10), ParameterError, "distinct"),
        (lambda: Specialization((0, 1), 1), ParameterError, "n_classes >= 2"),
        (lambda: Specialization(("a", "b"), 3), ParameterError, "integer labels"),  # type: ignore[arg-type]
        (lambda: Specialization.from_labels([0, 1, 2], n_top=3), ParameterError, r"\[2, 2\]"),
        (lambda: Specialization.from_labels([0, 1, 2], n_top=2.0), ParameterError, "integer"),  # type: ignore[arg-type]
        (lambda: Specialization.from_labels([0, 1, 12], 2, n_classes=10), LabelError, r"\[0, 9\]"),
        (lambda: Specialization((0, 1), 4).encode([0, 4]), LabelError, "unknown class"),
        (lambda: Specialization((0, 1), 4).encode([0.5]), LabelError, "integer"),
        (lambda: popular_stream([0, 1, 2], (0,), 1.5), ParameterError, r"share in \[0, 1\]"),
        (lambda: popular_stream([0, 1, 2], (0,), np.nan), ParameterError, "share"),
        (lambda: popular_stream([0, 1, 2], (), 0.5), ParameterError, "at least one"),
        (lambda: popular_stream([0, 1, 2], (0,), 0.5, n=10), InsufficientDataError, "pool has"),
        (lambda: popular_stream([0, 1, 2], (0,), 0.5, n=0), ParameterError, "positive integer"),
        (
            lambda: specialized_stage(Specialization((0, 1), 4), np.zeros((2, 4))),
            ClassCountError,
            "C \\+ 1 = 3 columns",
        ),
        (
            lambda: specialized_cascade(
                np.zeros((2, 3)), np.zeros((2, 5)), Specialization((0, 1), 4)
            ),
            ClassCountError,
            "n_classes = 4",
        ),
        (
            lambda: specialized_curve(
                np.zeros((2, 3)), np.zeros((2, 4)), [0, 7], Specialization((0, 1), 4)
            ),
            LabelError,
            "unknown class",
        ),
        (
            lambda: specialized_curve(
                np.zeros((2, 3)), np.zeros((3, 4)), [0, 1], Specialization((0, 1), 4)
            ),
            SampleCountError,
            "same inputs",
        ),
        (
            lambda: specialized_curve(
                np.zeros((2, 3)), np.zeros((2, 4)), [0, 1, 1], Specialization((0, 1), 4)
            ),
            SampleCountError,
            "labels",
        ),
        (
            lambda: specialized_router(Specialization((0, 1), 4), 0.0, score="energi"),
            Exception,
            "Unknown score",
        ),
    ],
)
def test_bad_input(call, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------- real data: Fashion-MNIST students

torch_mark = pytest.mark.skipif(
    not (DEFAULT_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="needs `sudo apt-get install -y dataset-fashion-mnist`",
)
SIZES = {"train": 3000, "select": 200, "calibrate": 400, "test": 1000}


@pytest.fixture(scope="module")
def students(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    pytest.importorskip("torch")
    if not (DEFAULT_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs `sudo apt-get install -y dataset-fashion-mnist`")
    from cascadekit.data.specialized import load_specialized_student

    cache = tmp_path_factory.mktemp("spec-cache")
    kw: dict[str, Any] = dict(sizes=SIZES, epochs=2, threads=1, cache_dir=cache)
    spec = load_specialized_student((1, 8, 7), hidden=(32,), **kw)
    teacher = load_specialized_student(None, hidden=(96,), **kw)  # a general, wider "teacher"
    return spec, teacher, cache


@torch_mark
def test_real_specialized_student_sends_every_other_to_the_teacher(students: Any) -> None:
    spec_s, teacher, _ = students
    spec = spec_s.spec
    zs, zt, y = spec_s.logits["test"], teacher.logits["test"], spec_s.labels["test"]
    np.testing.assert_array_equal(y, teacher.labels["test"])
    other = np.argmax(zs, axis=1) == spec.other_class
    # the student learned the recipe: it calls most non-top inputs "other", most top ones not
    assert other[~spec.in_top(y)].mean() > 0.8 and other[spec.in_top(y)].mean() < 0.2
    for t in (-np.inf, float(np.median(specialized_energy(zs))), np.inf):
        r = specialized_cascade(zs, zt, spec, costs=[spec_s.flops, teacher.flops]).route(
            thresholds=[t]
        )
        assert np.all(r.stage[other] == 1)
        assert np.all(r.predictions[r.stage == 0] >= 0)  # never "other" in the final answer
        assert set(np.unique(r.predictions[r.stage == 0])) <= set(spec.classes)


@torch_mark
def test_real_curve_endpoints_and_live_prediction(students: Any) -> None:
    spec_s, teacher, _ = students
    spec = spec_s.spec
    from cascadekit.data import load_fashion_mnist

    images, _ = load_fashion_mnist("test")
    idx = popular_stream(spec_s.labels["test"], spec, 0.75, random_state=0)
    zs, zt, y = spec_s.logits["test"][idx], teacher.logits["test"][idx], spec_s.labels["test"][idx]
    assert np.mean(spec.in_top(y)) == pytest.approx(0.75, abs=0.01)
    curve = specialized_curve(zs, zt, y, spec, costs=[spec_s.flops, teacher.flops])
    forced = np.argmax(zs, axis=1) == spec.other_class
    _, _, pred = specialized_scores(zs, spec)
    first = np.where(forced, np.argmax(zt, axis=1) == y, pred == y).mean()
    assert curve.accuracy[0] == pytest.approx(first)  # the gated student at its widest
    assert curve.accuracy[-1] == pytest.approx(np.mean(np.argmax(zt, axis=1) == y))  # teacher
    assert curve.relative_cost[-1] == pytest.approx(1 + spec_s.flops / teacher.flops)
    # live models through Cascade.predict give the routing of the saved logits
    t = float(np.quantile(specialized_energy(zs), 0.3))
    live = specialized_cascade(
        None,
        None,
        spec,
        costs=[1, 5],
        threshold=t,
        student_model=spec_s.model,
        teacher_model=teacher.model,
    )
    x = images[spec_s.indices["test"][idx[:200]]]
    got = live.predict(x, probabilities=False)
    ref = specialized_cascade(zs[:200], zt[:200], spec, costs=[1, 5], threshold=t).route()
    np.testing.assert_array_equal(got.stage, ref.stage)
    np.testing.assert_array_equal(got.predictions, ref.predictions)


@torch_mark
def test_students_are_cached(students: Any) -> None:
    spec_s, _, cache = students
    from cascadekit.data.specialized import load_specialized_student

    again = load_specialized_student(
        (1, 8, 7), hidden=(32,), sizes=SIZES, epochs=2, threads=1, cache_dir=cache
    )
    assert spec_s.trained and not again.trained
    np.testing.assert_array_equal(again.logits["test"], spec_s.logits["test"])
    assert again.n_outputs == 4 and again.spec == spec_s.spec


def test_stage_built_by_hand_equals_the_helper() -> None:
    spec, zs, zt, _ = _random_case(seed=6)
    manual = Cascade(
        [
            Stage(zs, class_map=spec.class_map, other_class=spec.other_class),
            Stage(zt, cost=8),
        ],
        thresholds=[1.0],
    ).route()
    helper = specialized_cascade(zs, zt, spec, costs=[1, 8], threshold=1.0).route()
    np.testing.assert_array_equal(manual.predictions, helper.predictions)
