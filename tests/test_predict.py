"""Cascade.predict on live models: partial forwarding, agreement with route(), bad models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from cascadekit import Cascade, Stage, scores
from cascadekit.adapters import CallableModel, OnnxModel, TorchModel, as_model, export_onnx
from cascadekit.errors import (
    ClassCountError,
    InputShapeError,
    NonFiniteError,
    NotCalibratedError,
    ParameterError,
    SampleCountError,
    StageError,
)
from cascadekit.routing import PredictResult


class Recorder:
    """Wraps a model; records every batch it is called on (to check partial forwarding)."""

    def __init__(self, model: Any, batch_size: int | None, name: str) -> None:
        self.model = as_model(model)
        self.batch_size = batch_size
        self.name = name
        self.batches: list[Any] = []

    def __call__(self, x: Any) -> np.ndarray:
        self.batches.append(x)
        return self.model(x)

    @property
    def rows(self) -> np.ndarray:
        return np.concatenate([np.asarray(b) for b in self.batches]) if self.batches else None

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    tr, te = order[:1000], order[1000:]
    student = LogisticRegression(max_iter=200).fit(X[tr][:, ::4], y[tr])  # 16 of 64 pixels
    teacher = RandomForestClassifier(n_estimators=30, random_state=0).fit(X[tr], y[tr])
    return {
        "X": X[te],
        "y": y[te],
        "student": lambda x: as_model(student)(np.asarray(x)[:, ::4]),
        "teacher": teacher,
    }


def _cascade(d: dict[str, Any], bs_s: int | None, bs_t: int | None, score: str = "max_softmax"):
    rs = Recorder(d["student"], bs_s, "student")
    rt = Recorder(d["teacher"], bs_t, "teacher")
    c = Cascade(
        [Stage(model=rs, name="student", score=score), Stage(model=rt, cost=20, name="teacher")]
    )
    return c, rs, rt


@pytest.mark.parametrize("score", ["energy", "max_softmax", "margin"])
def test_teacher_runs_only_on_undecided_rows_and_agrees_with_route(digits, score: str) -> None:
    X = digits["X"]
    c, rs, rt = _cascade(digits, bs_s=37, bs_t=16, score=score)
    z_s = as_model(digits["student"])(X)
    z_t = as_model(digits["teacher"])(X)
    th = float(np.quantile(scores.compute_score(score, z_s), 0.4))
    c.thresholds = th
    r = c.predict(X)
    ref = Cascade.from_outputs([z_s, z_t], costs=[1, 20], score=score, thresholds=[th]).route()
    np.testing.assert_array_equal(r.predictions, ref.predictions)
    np.testing.assert_array_equal(r.stage, ref.stage)
    np.testing.assert_allclose(r.stage_scores, ref.stage_scores)
    undecided = np.flatnonzero(ref.stage == 1)
    # the teacher saw exactly the undecided inputs, in order, in dense batches of 16
    np.testing.assert_array_equal(rt.rows, X[undecided])
    assert rt.sizes[:-1] == [16] * (len(rt.sizes) - 1) and 0 < rt.sizes[-1] <= 16
    # the student saw every input once, in batches of at most 37
    np.testing.assert_array_equal(rs.rows, X)
    assert max(rs.sizes) == 37 and sum(rs.sizes) == len(X)
    assert r.stage_inputs.tolist() == [len(X), undecided.size]
    assert r.teacher_share == pytest.approx(undecided.size / len(X))
    assert r.relative_cost == pytest.approx(ref.relative_cost)


def test_permuting_inputs_permutes_results(digits) -> None:
    X = digits["X"]
    c, _, _ = _cascade(digits, 50, 50)
    c.thresholds = 0.9
    r = c.predict(X)
    perm = np.random.default_rng(3).permutation(len(X))
    rp = c.predict(X[perm])
    np.testing.assert_array_equal(rp.predictions, r.predictions[perm])
    np.testing.assert_array_equal(rp.stage, r.stage[perm])
    np.testing.assert_allclose(rp.probabilities, r.probabilities[perm])


def test_probabilities_are_the_answering_stage_softmax(digits) -> None:
    X = digits["X"][:200]
    c, _, _ = _cascade(digits, None, None)
    r = c.predict(X, thresholds=[0.8])
    z_s = as_model(digits["student"])(X)
    z_t = as_model(digits["teacher"])(X)
    expect = np.where((r.stage == 0)[:, None], _softmax(z_s), _softmax(z_t))
    np.testing.assert_allclose(r.probabilities, expect, atol=1e-12)
    np.testing.assert_array_equal(r.probabilities.argmax(axis=1), r.predictions)
    assert c.predict(X, [0.8], probabilities=False).probabilities is None


def test_thresholds_live_and_per_call(digits) -> None:
    X = digits["X"][:100]
    c, _, rt = _cascade(digits, 32, 32)
    with pytest.raises(NotCalibratedError, match="no threshold yet"):
        c.predict(X)
    r = c.predict(X, thresholds=[-np.inf])  # every input stays on the student
    assert r.teacher_share == 0.0 and rt.batches == [] and r.stage_inputs.tolist() == [100, 0]
    c.thresholds = np.inf  # the knob on a live cascade: everything to the teacher
    r = c.predict(X)
    assert r.teacher_share == 1.0 and np.isnan(r.stage_scores).sum() == 0
    assert c.thresholds == (np.inf,)


def test_empty_batch_gives_empty_results(digits) -> None:
    c, rs, rt = _cascade(digits, 8, 8)
    r = c.predict(digits["X"][:0], thresholds=0.5)
    assert isinstance(r, PredictResult)
    assert r.predictions.shape == (0,) and r.stage.shape == (0,) and r.stage_scores.shape == (0, 1)
    assert r.probabilities.shape[0] == 0 and rt.batches == [] and rs.batches == []
    assert r.teacher_share == 0.0 and r.relative_cost == 0.0


def test_input_kinds_list_of_strings_tensor_tuple_dataframe() -> None:
    import pandas as pd

    texts = ["good", "bad", "fine", "awful", "great", "meh", "superb"]

    def student(batch: Any) -> np.ndarray:  # confident on short texts
        lens = np.array([len(t) for t in batch], dtype=float)
        return np.stack([10 - lens, np.zeros_like(lens)], axis=1)

    seen: list[list[str]] = []

    def teacher(batch: Any) -> np.ndarray:
        seen.append(list(batch))
        return np.stack([np.zeros(len(batch)), np.ones(len(batch))], axis=1)

    c = Cascade.from_models([student, teacher], score="max_logit", thresholds=[5.5])
    r = c.predict(texts)
    assert seen == [["awful", "great", "superb"]]
    assert r.stage.tolist() == [0, 0, 0, 1, 1, 0, 1]
    assert c.predict(tuple(texts)).stage.tolist() == r.stage.tolist()
    assert c.predict(pd.Series(texts)).stage.tolist() == r.stage.tolist()

    def num_student(x: Any) -> np.ndarray:
        return np.asarray(x, dtype=float)[:, :2]

    c2 = Cascade.from_models([num_student, lambda x: np.asarray(x, dtype=float)[:, 2:]],
                             score="margin", thresholds=[1.0])  # fmt: skip
    arr = np.random.default_rng(0).normal(size=(50, 4))
    r_np = c2.predict(arr)
    for kind in (torch.from_numpy(arr), pd.DataFrame(arr), [row for row in arr]):
        other = c2.predict(kind)
        np.testing.assert_array_equal(other.predictions, r_np.predictions)
        np.testing.assert_array_equal(other.stage, r_np.stage)


def test_three_stages_forward_only_undecided(digits) -> None:
    X = digits["X"]
    zs = [as_model(digits["student"])(X), as_model(digits["teacher"])(X)]
    mid_model = Recorder(lambda x: as_model(digits["teacher"])(x) * 0.5, 10, "mid")
    last = Recorder(digits["teacher"], 7, "last")
    c = Cascade(
        [
            Stage(model=Recorder(digits["student"], 25, "s"), score="max_softmax"),
            Stage(model=mid_model, score="max_softmax", cost=3),
            Stage(model=last, cost=9),
        ],
        thresholds=[0.95, 0.6],
    )
    r = c.predict(X)
    ref = Cascade.from_outputs(
        [zs[0], zs[1] * 0.5, zs[1]], score="max_softmax", thresholds=[0.95, 0.6]
    ).route()
    np.testing.assert_array_equal(r.stage, ref.stage)
    np.testing.assert_array_equal(r.predictions, ref.predictions)
    np.testing.assert_array_equal(mid_model.rows, X[ref.stage >= 1])
    np.testing.assert_array_equal(last.rows, X[ref.stage == 2])
    assert max(last.sizes) <= 7 and max(mid_model.sizes) <= 10
    assert r.stage_inputs.tolist() == [
        len(X),
        int((ref.stage >= 1).sum()),
        int((ref.stage == 2).sum()),
    ]


def test_class_map_probabilities_in_final_label_space() -> None:
    # a specialized student: classes 0, 1 of a 3-class problem plus "other" (column 2)
    z_s = np.array([[5.0, 0.0, 0.0], [0.0, 0.0, 6.0], [0.0, 4.0, 0.0]])
    z_t = np.array([[0.0, 0.0, 3.0], [0.0, 0.0, 3.0], [3.0, 0.0, 0.0]])
    c = Cascade(
        [
            Stage(model=z_s, score="max_logit", class_map=[0, 1, -1], other_class=2),
            Stage(model=z_t, cost=5),
        ],
        thresholds=[1.0],
    )
    r = c.predict(np.arange(3))
    ref = Cascade([Stage(z_s, score="max_logit", class_map=[0, 1, -1], other_class=2),
                   Stage(z_t)], thresholds=[1.0]).route()  # fmt: skip
    np.testing.assert_array_equal(r.stage, ref.stage)
    np.testing.assert_array_equal(r.predictions, ref.predictions)
    assert r.stage.tolist() == [0, 1, 0]  # "other" always moves on
    assert r.probabilities.shape == (3, 3)
    np.testing.assert_allclose(r.probabilities.sum(axis=1), 1.0)
    assert r.probabilities[0, 2] == 0.0 and r.probabilities[0, 0] > 0.9


def test_timings_are_recorded(digits) -> None:
    c, _, _ = _cascade(digits, 64, 64)
    r = c.predict(digits["X"], thresholds=[0.9])
    assert np.all(r.stage_seconds > 0) and r.total_seconds >= r.stage_seconds.sum()
    assert 0 <= r.overhead_seconds < r.total_seconds


# -- torch and ONNX end to end -------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_pair(digits) -> tuple[torch.nn.Module, torch.nn.Module, np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    imgs = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    xt, yt = torch.from_numpy(imgs[:1200]), torch.from_numpy(y[:1200])
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    teacher = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 16, 10),
    )  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets train faster on one thread
    try:
        for net, steps in ((student, 60), (teacher, 80)):
            opt = torch.optim.Adam(net.parameters(), lr=0.01)
            for _ in range(steps):  # full batch: about a second
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(xt), yt).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return student.eval(), teacher.eval(), imgs[1200:], y[1200:]


def test_torch_cascade_numpy_and_tensor_inputs_and_onnx_teacher(torch_pair, tmp_path) -> None:
    student, teacher, X, y = torch_pair
    c = Cascade.from_models([student, teacher], costs=[1, 8], score="max_softmax",
                            thresholds=[0.9])  # fmt: skip
    assert isinstance(c.stages[0].model, TorchModel)
    r = c.predict(X)
    rt = c.predict(torch.from_numpy(X))
    np.testing.assert_array_equal(r.predictions, rt.predictions)
    acc_s = float(np.mean(TorchModel(student)(X).argmax(1) == y))
    acc_t = float(np.mean(TorchModel(teacher)(X).argmax(1) == y))
    assert acc_t > acc_s and r.accuracy(y) > acc_s  # real models: the teacher helps
    onnx_teacher = OnnxModel(export_onnx(teacher, X[:8], tmp_path / "t.onnx"))
    c_onnx = Cascade.from_models([student, onnx_teacher], score="max_softmax", thresholds=[0.9])
    ro = c_onnx.predict(X)
    np.testing.assert_array_equal(ro.stage, r.stage)
    assert np.mean(ro.predictions == r.predictions) > 0.995


def test_torch_stage_with_wrong_input_names_stage_and_shapes(torch_pair) -> None:
    student, teacher, X, _ = torch_pair
    c = Cascade.from_models([student, teacher], names=["mlp", "cnn"], thresholds=[0.9])
    with pytest.raises(InputShapeError, match=r"Stage 'mlp'.*\(n, \.\.\., 64\)"):
        c.predict(X.reshape(len(X), -1)[:, :32])
    c2 = Cascade.from_models([teacher, student], names=["cnn", "mlp"], thresholds=[0.9])
    with pytest.raises(
        InputShapeError, match=r"Stage 'cnn'.*expected float inputs of shape \(n, 1, H, W\)"
    ):
        c2.predict(X.reshape(len(X), 8, 8))


# -- bad models ----------------------------------------------------------------------------


def _good(x: Any) -> np.ndarray:
    return np.tile([2.0, 0.0, 0.0], (len(x), 1)) * np.asarray(x, dtype=float)[:, None]


def _bad_cascade(teacher: Any) -> Cascade:
    return Cascade.from_models([_good, teacher], names=["student", "teacher"], score="margin",
                               thresholds=[3.0])  # fmt: skip


@pytest.mark.parametrize(
    ("teacher", "error", "match"),
    [
        (lambda x: np.full((len(x), 3), np.nan), NonFiniteError,
         r"Stage 'teacher' \(<lambda>\) returned 9 non-finite logits \(NaN or inf\) in 3 of 3"),
        (lambda x: np.zeros((len(x) + 1, 3)), SampleCountError, r"Stage 'teacher'.*4 rows for 3"),
        (lambda x: np.zeros((len(x), 4)), ClassCountError,
         r"Stage 'student' and stage 'teacher' disagree on the number of classes: 3 vs 4"),
        (lambda x: np.zeros(len(x)), InputShapeError, r"Stage 'teacher'.*shape \(3,\); expected"),
        (lambda x: np.zeros((len(x), 1)), ClassCountError, "Stage 'teacher'.*1 class column"),
        (lambda x: 1 / 0, StageError, r"Stage 'teacher' \(<lambda>\) raised ZeroDivisionError"),
        (lambda x: np.array([["a"] * 3] * len(x)), InputShapeError, "Stage 'teacher'.*numeric"),
    ],
)  # fmt: skip
def test_bad_model_outputs_name_the_stage(teacher: Any, error: type, match: str) -> None:
    c = _bad_cascade(teacher)
    with pytest.raises(error, match=match) as info:
        c.predict(np.array([0.5, 1.0, 2.0, 0.1]))  # 0.5, 1.0 and 0.1 go to the teacher
    if error is StageError:
        assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_bad_student_and_missing_models() -> None:
    c = Cascade.from_models([lambda x: np.full((len(x), 3), np.inf), _good], thresholds=[0.0])
    with pytest.raises(NonFiniteError, match="Stage 'stage0'"):
        c.predict(np.ones(3))
    saved = Cascade.from_outputs([np.eye(3), np.eye(3)], thresholds=[0.0])
    with pytest.raises(ParameterError, match="Stage 'stage0' has no model"):
        saved.predict(np.arange(3))
    with pytest.raises(InputShapeError, match="single str"):
        _bad_cascade(_good).predict("abc")
    changing = CallableModel(lambda x: np.zeros((len(x), 3 if len(x) > 1 else 4)), batch_size=2)
    with pytest.raises(ClassCountError, match="3 classes for one chunk and 4 for another"):
        _bad_cascade(changing).predict(np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ClassCountError, match="class_map of stage 's' to have one entry per class"):
        Cascade([Stage(model=_good, name="s", class_map=[0, 1]), Stage(model=_good)],
                thresholds=[0.0]).predict(np.ones(2))  # fmt: skip


def test_a_single_1d_example_gets_a_clear_message(digits) -> None:
    from cascadekit.estimators import CascadeClassifier

    X = digits["X"]
    teacher = digits["teacher"]
    c = Cascade.from_models([teacher, teacher], score="margin", thresholds=[1.0])
    with pytest.raises(
        InputShapeError, match=r"got a 1-D array of shape \(64,\).*reshape\(1, -1\)"
    ):
        c.predict(X[0])
    assert c.predict(X[0].reshape(1, -1)).stage.shape == (1,)
    clf = CascadeClassifier(teacher, teacher, routing_score="margin", prefit=True)
    clf.fit(X[:200], digits["y"][:200])
    with pytest.raises(InputShapeError, match=r"shape \(n_inputs, 64\); got a 1-D array"):
        clf.predict(X[0])


def test_prefit_classifiers_on_text_labels_map_through_classes(digits) -> None:
    from cascadekit.estimators import CascadeClassifier

    X, y = digits["X"], digits["y"]
    words = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    s = LogisticRegression(max_iter=300).fit(X[:400], words[y[:400]])
    t = RandomForestClassifier(n_estimators=30, random_state=0).fit(X[:400], words[y[:400]])
    clf = CascadeClassifier(s, t, routing_score="margin", prefit=True).fit(X[400:], words[y[400:]])
    assert clf.classes_.tolist() == sorted(words.tolist())
    pred = clf.predict(X[400:])
    r = Cascade.from_models([s, t], score="margin", thresholds=[clf.thresholds_[0]]).predict(
        X[400:]
    )
    np.testing.assert_array_equal(pred, r.predicted_labels)  # one mechanism, one answer
    np.testing.assert_array_equal(
        pred, np.where(r.stage == 0, s.predict(X[400:]), t.predict(X[400:]))
    )


def test_models_returning_probabilities_are_read_as_probabilities() -> None:
    from cascadekit.adapters import CallableModel

    rng = np.random.default_rng(5)
    z = rng.normal(size=(30, 4)) * 2
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    model = CallableModel(lambda idx: p[idx], outputs="probabilities")
    c = Cascade.from_models([model, model], score="margin")
    r = c.predict(np.arange(30), thresholds=[-np.inf])
    # the softmax of the answering stage is p itself, not softmax(p)
    np.testing.assert_allclose(r.probabilities, p, atol=1e-9)
    ref = Cascade.from_outputs([p, p], score="margin").route(thresholds=[-np.inf])
    np.testing.assert_allclose(r.stage_scores, ref.stage_scores)
