"""Cascade routing over saved outputs: reference behaviour, N stages, class maps, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from cascadekit import Cascade, Stage, assign_stages, binary_logits, scores
from cascadekit.calibration import calibrate_outputs
from cascadekit.errors import (
    ClassCountError,
    EmptyInputError,
    InputShapeError,
    LabelError,
    NonFiniteError,
    NotCalibratedError,
    ParameterError,
    SampleCountError,
    ScoreInputError,
    ThresholdRangeWarning,
    UnknownNameError,
)

RNG = np.random.default_rng(1)


def _brute_route(outs: list[np.ndarray], ths: list[float], score: str) -> tuple[list, list]:
    preds, stage = [], []
    for i in range(outs[0].shape[0]):
        for k in range(len(outs)):
            if k == len(outs) - 1:
                preds.append(int(np.argmax(outs[k][i])))
                stage.append(k)
                break
            s = scores.compute_score(score, outs[k][i : i + 1])[0]
            if s >= ths[k]:
                preds.append(int(np.argmax(outs[k][i])))
                stage.append(k)
                break
    return preds, stage


@pytest.mark.parametrize("n_stages", [2, 3, 4])
@pytest.mark.parametrize("score", ["energy", "max_softmax", "margin"])
def test_route_matches_per_sample_reference(n_stages: int, score: str) -> None:
    outs = [RNG.normal(size=(60, 5)) * (k + 1) for k in range(n_stages)]
    ths = [float(np.median(scores.compute_score(score, o))) for o in outs[:-1]]
    c = Cascade.from_outputs(outs, costs=range(1, n_stages + 1), score=score, thresholds=ths)
    r = c.route()
    preds, stage = _brute_route(outs, ths, score)
    np.testing.assert_array_equal(r.predictions, preds)
    np.testing.assert_array_equal(r.stage, stage)
    # scores are NaN exactly where a stage did not run
    for k in range(n_stages - 1):
        np.testing.assert_array_equal(np.isnan(r.stage_scores[:, k]), r.stage < k)
    expected_cost = np.cumsum(range(1, n_stages + 1))[np.array(stage)].mean() / n_stages
    assert r.relative_cost == pytest.approx(expected_cost)
    assert r.stage_shares.sum() == pytest.approx(1.0)


def test_assign_stages_agrees_with_route() -> None:
    outs = [RNG.normal(size=(40, 4)) for _ in range(3)]
    c = Cascade.from_outputs(outs, thresholds=[1.5, 1.2])
    s = [scores.energy(o) for o in outs[:2]]
    np.testing.assert_array_equal(assign_stages(s, [1.5, 1.2]), c.route().stage)


def test_threshold_ends_and_live_knob() -> None:
    s, t = RNG.normal(size=(30, 3)), RNG.normal(size=(30, 3))
    c = Cascade.from_outputs([s, t], costs=[1, 9], thresholds=-np.inf)
    assert c.route().teacher_share == 0.0
    np.testing.assert_array_equal(c.route().predictions, s.argmax(1))
    c.thresholds = np.inf
    assert c.route().teacher_share == 1.0
    assert c.route().relative_cost == pytest.approx(10 / 9)
    np.testing.assert_array_equal(c.route().predictions, t.argmax(1))
    # per-call override leaves the default alone
    assert c.route(thresholds=[-np.inf]).teacher_share == 0.0
    assert c.thresholds == (np.inf,)


def test_labels_only_last_stage_and_accuracy() -> None:
    s = RNG.normal(size=(20, 3))
    t_labels = RNG.integers(0, 3, size=20)
    c = Cascade.from_outputs([s, t_labels], thresholds=[np.inf])
    r = c.route()
    np.testing.assert_array_equal(r.predictions, t_labels)
    assert r.accuracy(t_labels) == 1.0


def test_specialized_student_gate_and_class_map() -> None:
    # student knows teacher classes 3 and 7 plus "other" (last column)
    student = np.array([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 9.0], [0.2, 0.1, 0.0]])
    teacher = np.eye(10)[[3, 7, 5, 7]] * 5
    st = Stage(student, cost=1, class_map=[3, 7, -1], other_class=-1, score="energy")
    c = Cascade([st, Stage(teacher, cost=10)], thresholds=[1.0])
    r = c.route()
    # row 2: argmax is "other" -> teacher even though its energy is high; row 3: low energy
    np.testing.assert_array_equal(r.stage, [0, 0, 1, 1])
    np.testing.assert_array_equal(r.predictions, [3, 7, 5, 7])
    # the energy is computed over the real classes only
    assert r.stage_scores[2, 0] == pytest.approx(np.log(2.0))
    c.thresholds = [-np.inf]
    assert c.route().stage[2] == 1  # the gate holds whatever the threshold


def test_route_with_new_outputs() -> None:
    s, t = RNG.normal(size=(10, 3)), RNG.normal(size=(10, 3))
    s2, t2 = RNG.normal(size=(7, 3)), RNG.normal(size=(7, 3))
    c = Cascade.from_outputs([s, t], thresholds=[float(np.median(scores.energy(s2)))])
    r = c.route([s2, t2])
    assert r.predictions.shape == (7,)
    assert c.route().predictions.shape == (10,)  # saved outputs untouched


@pytest.mark.parametrize(
    ("outs", "err", "match"),
    [
        ([np.zeros((5, 3)), np.zeros((4, 3))], SampleCountError, "has 5 but 'stage1' has 4"),
        (
            [np.zeros((5, 3)), np.zeros((5, 4))],
            ClassCountError,
            "number of classes: 3 vs 4",
        ),
        ([np.zeros(5), np.zeros((5, 3))], InputShapeError, "only the last stage may give labels"),
        ([np.zeros((0, 3)), np.zeros((0, 3))], EmptyInputError, "at least one sample"),
        ([np.full((2, 3), np.nan), np.zeros((2, 3))], NonFiniteError, "6 non-finite"),
        (
            [np.zeros((2, 3)), np.array([0.5, 1.0])],
            InputShapeError,
            r"non-integer numbers.*binary_logits\(d, 'decision'\) \(= np.c_\[-d, d\] / 2\)",
        ),
        (
            [np.array([0.2, -1.0]), np.zeros((2, 3))],
            InputShapeError,
            r"binary_logits\(p, 'probability'\) \(= np.log\(np.c_\[1 - p, p\]\)\)",
        ),
        ([np.zeros((2, 3)), np.array([0, -1])], LabelError, r"in \[0, n_classes-1\]"),
    ],
)
def test_bad_outputs(outs: list, err: type, match: str) -> None:
    c = Cascade.from_outputs(outs, thresholds=[0.0])
    with pytest.raises(err, match=match):
        c.route()


def test_bad_construction() -> None:
    with pytest.raises(ParameterError, match="at least 2 stages; got 1"):
        Cascade([Stage(np.zeros((2, 2)))])
    with pytest.raises(ParameterError, match="Expected Stage objects; stage 0 is ndarray"):
        Cascade([np.zeros((2, 2)), np.zeros((2, 2))])  # type: ignore[list-item]
    with pytest.raises(ParameterError, match="non-negative costs"):
        Cascade.from_outputs([np.zeros((2, 2))] * 2, costs=[-1, 2])
    with pytest.raises(ParameterError, match="one cost per stage"):
        Cascade.from_outputs([np.zeros((2, 2))] * 2, costs=[1, 2, 3])
    with pytest.raises(UnknownNameError, match="Unknown score 'nope'"):
        Cascade.from_outputs([np.zeros((2, 2))] * 2, score="nope")
    with pytest.raises(ParameterError, match="positive, finite temperature"):
        Cascade.from_outputs([np.zeros((2, 2))] * 2, temperature=0)


def test_bad_thresholds_and_not_calibrated() -> None:
    c = Cascade.from_outputs([np.zeros((2, 2))] * 3)
    with pytest.raises(
        NotCalibratedError,
        match=r"no threshold yet\. Pass thresholds=\.\.\. or call cascade\.calibrate\(target",
    ):
        c.route()
    with pytest.raises(ParameterError, match=r"Expected 2 threshold\(s\) for a 3-stage"):
        c.thresholds = [1.0]
    with pytest.raises(ParameterError, match="got NaN"):
        c.thresholds = [1.0, float("nan")]


def test_bad_class_map() -> None:
    st = Stage(np.zeros((2, 3)), class_map=[0, 1])
    c = Cascade([st, Stage(np.zeros((2, 4)))], thresholds=[0.0])
    with pytest.raises(ClassCountError, match="one entry per class"):
        c.route()
    st.class_map = [0, 1, 9]
    with pytest.raises(ClassCountError, match="maps to label 9, but the last stage has 4"):
        c.route()


# ---------------------------------------------------------------- probabilities are not logits


def _probabilities(n: int = 200, c: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    z = np.random.default_rng(seed).normal(scale=3.0, size=(n, c))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return z, p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["probabilities", "log-probabilities"])
def test_energy_is_refused_on_saved_normalized_outputs(kind: str) -> None:
    z, p = _probabilities()
    student = p if kind == "probabilities" else np.log(p)
    cascade = Cascade.from_outputs([student, z], thresholds=[0.0])  # energy by default
    with pytest.raises(ScoreInputError, match=f"energy needs raw logits; the outputs of stage "
                       f"'stage0' are {kind}"):  # fmt: skip
        cascade.route()
    with pytest.raises(ScoreInputError, match=f"outputs of stage 0 are {kind}"):
        calibrate_outputs([student, z], np.zeros(200, dtype=int), 0.3)


def test_saved_probabilities_are_converted_not_taken_as_logits() -> None:
    z, p = _probabilities()
    for name in ("max_softmax", "margin", "entropy"):
        from_p = Cascade.from_outputs([p, z], score=name, thresholds=[1.0]).route()
        from_z = Cascade.from_outputs([z, z], score=name, thresholds=[1.0]).route()
        np.testing.assert_allclose(from_p.stage_scores, from_z.stage_scores, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(from_p.stage, from_z.stage)


def test_a_few_rows_are_taken_as_they_are() -> None:
    # fewer than MIN_ROWS_TO_DETECT rows cannot tell probabilities from logits: no conversion
    rows = np.array([[1.0, 0.0], [0.3, 0.7]])
    res = Cascade.from_outputs([rows, rows], score="margin", thresholds=[0.5]).route()
    np.testing.assert_allclose(res.stage_scores[:, 0], [1.0, 0.4])


def test_energy_on_a_live_model_with_probabilities_is_refused_at_construction() -> None:
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_digits(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    with pytest.raises(ScoreInputError, match="outputs of stage 'stage0' are log-probabilities"):
        Cascade.from_models([forest, forest], thresholds=[0.0])
    ok = Cascade.from_models([forest, forest], score="max_softmax", thresholds=[2.0])
    assert ok.predict(X[:20]).predictions.shape == (20,)


def test_binary_outputs_become_two_logit_columns() -> None:
    d = RNG.normal(size=50) * 3
    z = binary_logits(d, "decision")
    np.testing.assert_allclose(z, np.c_[-d, d] / 2)
    np.testing.assert_allclose(scores.margin(z), np.abs(d))
    p = 1 / (1 + np.exp(-d))
    zp = binary_logits(p, "probability")
    e = np.exp(zp)
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), np.c_[1 - p, p], atol=1e-12)
    # the same classifier given either way routes identically (same predictions, same order)
    y = (d + RNG.normal(size=50) > 0).astype(int)
    teacher = np.eye(2)[y] * 4
    ra = Cascade.from_outputs([z, teacher], score="margin", thresholds=[1.0]).route()
    rb = Cascade.from_outputs([zp, teacher], score="margin", thresholds=[1.0]).route()
    np.testing.assert_array_equal(ra.predictions, rb.predictions)
    np.testing.assert_array_equal(ra.stage, rb.stage)
    with pytest.raises(ParameterError, match=r"from -.* to .*use kind='decision'"):
        binary_logits(d, "probability")
    with pytest.raises(ParameterError, match="Expected kind 'decision'"):
        binary_logits(d, "logit")
    with pytest.raises(InputShapeError, match=r"one number per input, shape \(n_samples,\)"):
        binary_logits(np.zeros((4, 2)), "decision")


def test_threshold_outside_the_scores_range_warns() -> None:
    s, t = RNG.normal(size=(40, 3)), RNG.normal(size=(40, 3))
    c = Cascade.from_outputs([s, t], score="max_softmax")
    hi = float(scores.max_softmax(s).max())
    with pytest.warns(ThresholdRangeWarning, match=r"above every max_softmax score of the 40"):
        r = c.route(thresholds=[hi + 1.0])
    assert r.teacher_share == 1.0
    with pytest.warns(ThresholdRangeWarning, match="below every .* all of them stay"):
        c.route(thresholds=[-50.0])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c.route(thresholds=[np.inf])  # explicit: no warning
        c.route(thresholds=[-np.inf])
        c.route(thresholds=[float(np.median(scores.max_softmax(s)))])
    assert issubclass(ThresholdRangeWarning, UserWarning)


def test_from_models_maps_text_and_sparse_labels_through_classes() -> None:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    s = LogisticRegression(max_iter=500).fit(X, names)
    t = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, names)
    c = Cascade.from_models([s, t], score="margin", thresholds=[2.0])
    r = c.predict(X)
    assert r.classes.tolist() == ["setosa", "versicolor", "virginica"]
    expected = np.where(r.stage == 0, s.predict(X), t.predict(X))
    np.testing.assert_array_equal(r.predicted_labels, expected)
    assert r.accuracy(names) == pytest.approx(np.mean(expected == names))
    assert r.accuracy(y) == r.accuracy(names)  # class indices still work
    # labels 3..5 and a teacher that never saw class 4: columns follow classes_, not position
    y2 = y + 3
    t2 = RandomForestClassifier(n_estimators=20, random_state=0).fit(X[y2 != 4], y2[y2 != 4])
    s2 = LogisticRegression(max_iter=500).fit(X, y2)
    r2 = Cascade.from_models([s2, t2], score="margin", thresholds=[np.inf]).predict(X)
    np.testing.assert_array_equal(r2.predicted_labels, t2.predict(X))
    with pytest.raises(ParameterError, match=r"Stage\(s\) \[1\] give logit columns without"):
        Cascade.from_models([s, lambda x: np.zeros((len(x), 3))])
    c3 = Cascade.from_models(
        [s, lambda x: np.zeros((len(x), 3))], classes=["setosa", "versicolor", "virginica"]
    )
    assert c3.classes.tolist() == ["setosa", "versicolor", "virginica"]


# ------------------------------------------------------------------------------------------
# Cascade.calibrate: the library's calibration on the cascade's own stages


def _calibration_case(n: int = 400, seed: int = 3) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    outs = []
    for noise in (2.5, 1.5, 0.7):  # stronger stages make fewer mistakes
        z = rng.normal(0, noise, (n, 4))
        z[np.arange(n), y] += 2.0
        outs.append(z)
    return outs, y


def test_calibrate_sets_learned_attributes_like_calibrate_outputs() -> None:
    from cascadekit import curves

    outs, y = _calibration_case()
    c = Cascade.from_outputs(outs[::2], costs=[1, 6], score="margin")
    assert c.calibrate({"accuracy": 0.8}, y) is c
    ref = calibrate_outputs(outs[::2], y, {"accuracy": 0.8}, score="margin", costs=[1, 6])
    assert c.calibration_ == ref
    assert c.thresholds_.shape == (1,) and tuple(c.thresholds_) == ref.thresholds
    assert c.thresholds == ref.thresholds
    r = c.route()  # routes with the calibrated thresholds, with the calibration's figures
    assert (r.teacher_share, r.accuracy(y)) == (ref.teacher_share, ref.accuracy)
    s = scores.margin(outs[0])
    want = curves.cascade_curve(s, outs[0].argmax(1) == y, outs[2].argmax(1) == y, costs=[1, 6])
    np.testing.assert_array_equal(c.curve_.accuracy, want.accuracy)
    c.thresholds = [np.inf]  # the knob moves; what calibration chose stays on record
    assert tuple(c.thresholds_) == ref.thresholds


def test_calibrate_three_stages_live_models_guarantee_and_label_free() -> None:
    outs, y = _calibration_case(n=3000)
    X = np.arange(3000)
    models = [lambda idx, z=z: z[idx] for z in outs]
    c = Cascade.from_models(models, costs=[1, 3, 10], score="max_softmax")
    c.calibrate({"relative_cost": 0.6}, y, X=X)
    ref = calibrate_outputs(outs, y, {"relative_cost": 0.6}, score="max_softmax", costs=[1, 3, 10])
    assert c.thresholds_.shape == (2,) and c.calibration_ == ref
    assert c.curve_.thresholds.shape[1] == 2  # the N-stage grid curve
    g = c.calibrate({"accuracy_drop": 0.05, "delta": 0.1}, y, X=X).calibration_
    assert g.method == "trinomial" and g.epsilon == 0.05 and g.delta == 0.1
    free = c.calibrate(0.3, outputs=outs).calibration_  # no labels: agreement with the last
    assert free.label_free and free.teacher_accuracy == 1.0


def test_calibrate_bad_input() -> None:
    outs, y = _calibration_case(n=50)
    c = Cascade.from_outputs(outs[:2], score="margin")
    with pytest.raises(ParameterError, match="outputs or inputs X, not both"):
        c.calibrate(0.3, y, outputs=outs[:2], X=np.arange(50))
    with pytest.raises(ParameterError, match="Expected a target: a teacher share"):
        c.calibrate({"recall": 0.9}, y)
    with pytest.raises(ParameterError, match="has no model"):
        c.calibrate(0.3, y, X=np.arange(50))
    special = Cascade([Stage(outs[0], other_class=3), Stage(outs[1])])
    with pytest.raises(ParameterError, match="specialized .* does not model its 'other' gate"):
        special.calibrate(0.3, y)
    assert c.thresholds is None  # a failed calibration leaves the cascade as it was
