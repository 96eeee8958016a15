"""CascadeClassifier: scikit-learn's own estimator checks, and behaviour on real digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from cascadekit import scores
from cascadekit.calibration import CalibrationResult, Target, guaranteed_threshold, parse_target
from cascadekit.errors import InfeasibleTargetError, LabelError, ParameterError, ScoreInputError
from cascadekit.estimators import CascadeClassifier


def _student() -> LogisticRegression:
    return LogisticRegression(max_iter=1000)


def _teacher() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=10, random_state=0)


def _strong_teacher() -> KNeighborsClassifier:
    """On digits, distance-weighted 5-NN (~0.98; it keeps the whole training set) beats the
    logistic regression student (~0.96)."""
    return KNeighborsClassifier(n_neighbors=5, weights="distance")


# Every check applies with a teacher-share target. An accuracy target is deliberately left out
# of the suite: on the suite's random data no threshold reaches it, and fit raises
# InfeasibleTargetError by design (it is tested below).
@parametrize_with_checks(
    [
        CascadeClassifier(_student(), _teacher(), random_state=0),
        CascadeClassifier(_student(), _teacher(), random_state=0, intermediates=[_student()]),
    ]
)
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    order = np.random.default_rng(0).permutation(len(y))
    tr, te = order[:1300], order[1300:]
    return X[tr], y[tr], X[te], y[te]


def test_fit_splits_calibrates_and_routes_like_a_brute_force(digits) -> None:
    X, y, Xt, yt = digits
    clf = CascadeClassifier(_student(), _strong_teacher(), routing_score="max_softmax", target=0.3,
                            random_state=0).fit(X, y)  # fmt: skip
    assert isinstance(clf.calibration_, CalibrationResult)
    assert clf.n_fit_ == 650 and clf.calibration_.n_calibration == 650
    assert clf.calibration_.teacher_share == pytest.approx(0.3, abs=0.01)
    # brute force: the fitted stages' probabilities, the threshold, per input; the student's
    # raw decision scores are its logits, and max_softmax is the log-odds of p_max
    assert clf.student_.method == "decision_function"
    p_s = clf.student_.estimator.predict_proba(Xt)
    p_t = clf.teacher_.estimator.predict_proba(Xt)
    log_odds = scores.max_softmax(clf.student_.estimator.decision_function(Xt))
    np.testing.assert_allclose(log_odds, np.log(p_s.max(axis=1) / (1 - p_s.max(axis=1))))
    to_teacher = log_odds < clf.thresholds_[0]
    expect = np.where(to_teacher, p_t.argmax(axis=1), p_s.argmax(axis=1))
    np.testing.assert_array_equal(clf.predict(Xt), clf.classes_[expect])
    np.testing.assert_allclose(
        clf.predict_proba(Xt), np.where(to_teacher[:, None], p_t, p_s), atol=1e-9
    )
    res = clf.predict_cascade(Xt)
    assert res.teacher_share == pytest.approx(to_teacher.mean())
    assert abs(res.teacher_share - 0.3) < 0.1  # the share carries over to new data
    acc_s = float(np.mean(p_s.argmax(axis=1) == yt))
    assert clf.score(Xt, yt) > acc_s  # the teacher fixes some of the student's mistakes


def test_accuracy_and_cost_targets(digits) -> None:
    X, y, _, _ = digits
    clf = CascadeClassifier(_student(), _strong_teacher(), routing_score="max_softmax",
                            target={"accuracy": 0.97}, random_state=0).fit(X, y)  # fmt: skip
    assert clf.calibration_.accuracy >= 0.97
    assert clf.calibration_.method == "accuracy"
    cheap = clone(clf).set_params(target={"relative_cost": 0.3}, costs=(1, 10)).fit(X, y)
    # (1 + share * 10) / 10 <= 0.3: at most 20% to the teacher, and the most accurate such
    # threshold, so at least as accurate as the accuracy target's (cheaper) point
    assert cheap.calibration_.relative_cost <= 0.3
    assert cheap.calibration_.teacher_share <= 0.2 + 1e-12
    assert clf.calibration_.teacher_share <= 0.2
    assert cheap.calibration_.accuracy >= clf.calibration_.accuracy
    with pytest.raises(InfeasibleTargetError, match="No threshold reaches target_accuracy=1"):
        clone(clf).set_params(target={"accuracy": 1.0}).fit(X[:200], y[:200])


def test_guaranteed_target_is_the_library_guarantee(digits) -> None:
    # the estimator's accuracy_drop target is calibration.guaranteed_threshold on its
    # calibration part: the same threshold, delta and method
    X, y, _, _ = digits
    student = _student().fit(X[:600], y[:600])
    teacher = _strong_teacher().fit(X[:600], y[:600])
    target = {"accuracy_drop": 0.05, "delta": 0.2}
    clf = CascadeClassifier(student, teacher, prefit=True, target=target).fit(X[600:], y[600:])
    z = student.predict_proba(X[600:])
    cs = z.argmax(axis=1) == y[600:]
    ct = teacher.predict(X[600:]) == y[600:]
    ref = guaranteed_threshold(z.max(axis=1), cs, ct, 0.05, 0.2)
    assert clf.calibration_.method == "trinomial" and clf.calibration_.delta == 0.2
    np.testing.assert_allclose(clf.thresholds_, ref.thresholds)
    assert clf.calibration_.teacher_share == ref.teacher_share


def test_prefit_stages_are_only_calibrated(digits) -> None:
    X, y, _, _ = digits
    student = _student().fit(X[:600], y[:600])
    teacher = _strong_teacher().fit(X[:600], y[:600])
    coef = student.coef_.copy()
    clf = CascadeClassifier(student, teacher, prefit=True, target=0.5).fit(X[600:], y[600:])
    assert clf.student_.estimator is student and clf.teacher_.estimator is teacher
    np.testing.assert_array_equal(student.coef_, coef)
    assert clf.n_fit_ == 0 and clf.calibration_.n_calibration == len(y) - 600


def test_torch_stages_are_calibrated_not_fitted(digits) -> None:
    X, y, Xt, _ = digits
    torch.manual_seed(0)
    net = torch.nn.Linear(64, 10)
    xt, ytt = torch.from_numpy(X[:600]).float(), torch.from_numpy(y[:600])
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(60):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt), ytt).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    before = net.weight.detach().clone()
    teacher = _strong_teacher().fit(X[:600], y[:600])
    clf = CascadeClassifier(net, teacher, routing_score="energy", target=0.4, prefit=True)
    clf.fit(X[600:], y[600:])
    assert torch.equal(net.weight, before)
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    z = net(torch.from_numpy(Xt).float()).detach().numpy()
    to_teacher = scores.energy(z) < clf.thresholds_[0]
    expect = np.where(to_teacher, teacher.predict_proba(Xt).argmax(axis=1), z.argmax(axis=1))
    np.testing.assert_array_equal(clf.predict(Xt), expect)
    with pytest.raises(LabelError, match="class indices 0..C-1"):
        clone(clf).fit(X[600:], np.array(["a", "b"] * 350)[: len(y) - 600])


def test_string_labels_pipelines_and_grid_search(digits) -> None:
    X, y, Xt, yt = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])  # fmt: skip
    clf = CascadeClassifier(make_pipeline(StandardScaler(), _student()), _strong_teacher(),
                            random_state=0).fit(X, names[y])  # fmt: skip
    assert set(clf.predict(Xt)) <= set(names)
    assert clf.score(Xt, names[yt]) > 0.85
    search = GridSearchCV(
        CascadeClassifier(_student(), _teacher(), random_state=0),
        {"routing_score": ["energy", "margin"]},
        cv=2,
    ).fit(X[:500], y[:500])
    assert search.best_params_["routing_score"] in ("energy", "margin")
    assert clone(clf).get_params()["routing_score"] == "max_softmax"


def test_live_threshold_on_the_fitted_cascade(digits) -> None:
    X, y, Xt, _ = digits
    clf = CascadeClassifier(_student(), _strong_teacher(), target=0.3, random_state=0).fit(X, y)
    clf.cascade_.thresholds = [np.inf]
    teacher_pred = clf.teacher_.estimator.predict_proba(Xt).argmax(axis=1)
    np.testing.assert_array_equal(clf.predict(Xt), teacher_pred)
    assert clf.predict_cascade(Xt).teacher_share == 1.0


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"target": {"recall": 0.9}}, ParameterError, "Expected a target: a teacher share"),
        ({"target": 1.5}, ParameterError, r"teacher_share in \[0, 1\]; got 1.5"),
        ({"target": {"accuracy_drop": 0.01, "delta": 2}}, ParameterError, "delta strictly"),
        ({"target": {"relative_cost": -1}}, ParameterError, "positive relative_cost"),
        ({"calibration_size": 1.0}, ParameterError, "calibration_size strictly between 0 and 1"),
        ({"temperature": 0.0}, ParameterError, "positive, finite temperature"),
        ({"routing_score": "nope"}, Exception, "Unknown score 'nope'"),
    ],
)
def test_bad_parameters_fail_at_fit(digits, params, error, match) -> None:
    X, y, _, _ = digits
    clf = CascadeClassifier(_student(), _teacher(), **params)  # constructor only stores
    with pytest.raises(error, match=match):
        clf.fit(X[:100], y[:100])


def test_unfitted_and_one_class(digits) -> None:
    X, _, _, _ = digits
    with pytest.raises(NotFittedError):
        CascadeClassifier(_student(), _strong_teacher()).predict(X[:3])
    with pytest.raises(LabelError, match="at least 2 classes; got one class"):
        CascadeClassifier(_student(), _strong_teacher()).fit(X[:20], np.zeros(20, dtype=int))
    assert parse_target(("accuracy", 0.9)) == Target("accuracy", 0.9)


def test_default_score_works_for_a_student_with_probabilities_only(digits) -> None:
    # a random forest has no decision_function: its outputs are log-probabilities, on which
    # max_softmax is defined and energy (constant logsumexp) is refused
    X, y, Xt, _ = digits
    forest = RandomForestClassifier(n_estimators=20, random_state=0)
    clf = CascadeClassifier(forest, _strong_teacher(), target=0.3, random_state=0).fit(X, y)
    assert clf.student_.method == "predict_proba"
    assert clf.calibration_.teacher_share == pytest.approx(0.3, abs=0.02)
    assert clf.calibration_.numerical_margin > 0
    whole = clf.predict(Xt)
    np.testing.assert_array_equal(np.concatenate([clf.predict(Xt[:7]), clf.predict(Xt[7:])]), whole)
    with pytest.raises(ScoreInputError, match="energy needs raw logits; the outputs of stage"):
        clone(clf).set_params(routing_score="energy").fit(X, y)


def test_answers_do_not_depend_on_the_rest_of_the_batch() -> None:
    """scikit-learn's subset-invariance check with the pair it once failed on. The cause: the
    default score was energy, and a scikit-learn student's outputs were probabilities, whose
    logsumexp is constant, so the threshold sat in float rounding that changes with the batch.
    Now the student's per-class decision_function is used when it has one, the default score is
    max_softmax, and energy on probabilities is refused."""
    from sklearn.utils.estimator_checks import check_methods_subset_invariance

    est = CascadeClassifier(
        LogisticRegression(max_iter=1000),
        RandomForestClassifier(n_estimators=20, random_state=0),
        random_state=0,
    )
    check_methods_subset_invariance("CascadeClassifier", est)


def test_three_stages_with_intermediates(digits) -> None:
    X, y, Xt, _ = digits
    clf = CascadeClassifier(
        _student(),
        _strong_teacher(),
        target={"relative_cost": 0.6},
        costs=(1, 3, 10),
        intermediates=[RandomForestClassifier(n_estimators=30, random_state=0)],
        random_state=0,
    ).fit(X, y)
    assert clf.thresholds_.shape == (2,) and clf.cascade_.n_stages == 3
    assert len(clf.stages_) == 3 and clf.stages_[0] is clf.student_
    assert clf.calibration_.relative_cost <= 0.6
    # the same rule as calibrate_cascade on the calibration part, routed by the cascade
    res = clf.predict_cascade(Xt)
    z = [m(Xt) for m in clf.stages_]
    s = [scores.max_softmax(z_) for z_ in z[:2]]
    stage = np.where(s[0] >= clf.thresholds_[0], 0, np.where(s[1] >= clf.thresholds_[1], 1, 2))
    np.testing.assert_array_equal(res.stage, stage)
    np.testing.assert_array_equal(
        clf.predict(Xt), clf.classes_[np.choose(stage, [x.argmax(1) for x in z])]
    )
    with pytest.raises(ParameterError, match=r"one cost per stage \(3\); got 2"):
        clone(clf).set_params(costs=(1, 10)).fit(X, y)
