"""Tests of cascadekit.detection: NMS, detection energy, data, mAP, cascade curves, end to end."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.special import logsumexp

from cascadekit import scores as cls_scores
from cascadekit.detection import (
    DETECTION_SCORES,
    CanvasSpec,
    CocoMAP,
    DetectionScorer,
    as_detections,
    batched_nms,
    box_area,
    box_iou,
    compare_detection_routers,
    detection_cascade_curve,
    detection_energy,
    detection_gap_captured,
    detection_oracle_gains,
    detection_score,
    make_canvas_dataset,
    mean_average_precision,
    nms,
    oracle_detection_curve,
    random_detection_curve,
    route_images,
    speedup_at_map_fraction,
    threshold_at_map,
)
from cascadekit.errors import (
    ClassCountError,
    EmptyInputError,
    InfeasibleTargetError,
    InputShapeError,
    LabelError,
    NonFiniteError,
    ParameterError,
    SampleCountError,
    UnknownNameError,
)

# ----------------------------------------------------------------------------------------------
# helpers


def _random_boxes(rng: np.random.Generator, k: int, size: float = 50.0) -> np.ndarray:
    xy = rng.uniform(0, size, size=(k, 2))
    wh = rng.uniform(1, size / 2, size=(k, 2))
    return np.column_stack([xy, xy + wh])


def _iou_ref(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _nms_ref(boxes: np.ndarray, scores: np.ndarray, t: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        if all(_iou_ref(boxes[i].tolist(), boxes[j].tolist()) <= t for j in keep):
            keep.append(i)
    return keep


def _img(k: int = 2, c: int = 3, bins: int | None = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {
        "boxes": _random_boxes(rng, k),
        "labels": rng.integers(0, c, size=k),
        "scores": rng.uniform(0.0, 1.0, size=k),
        "logits": rng.normal(size=(k, c)),
    }
    if bins is not None:
        out["box_logits"] = rng.normal(size=(k, 4, bins))
    return out


def _empty(c: int = 3) -> dict[str, np.ndarray]:
    return {
        "boxes": np.zeros((0, 4)),
        "labels": np.zeros(0, dtype=np.int64),
        "scores": np.zeros(0),
        "logits": np.zeros((0, c)),
    }


# ----------------------------------------------------------------------------------------------
# box ops and NMS


@pytest.mark.parametrize("seed", range(30))
def test_nms_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(0, 25))
    boxes = _random_boxes(rng, k)
    scores = np.round(rng.uniform(size=k), 1)  # ties on purpose
    t = float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0]))
    assert nms(boxes, scores, t).tolist() == _nms_ref(boxes, scores, t)


@pytest.mark.parametrize("seed", range(15))
def test_batched_nms_matches_per_class_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 25))
    boxes = _random_boxes(rng, k, size=20.0)
    scores = np.round(rng.uniform(size=k), 1)
    labels = rng.integers(0, 3, size=k)
    ref: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        ref += [int(idx[i]) for i in _nms_ref(boxes[idx], scores[idx], 0.5)]
    ref.sort(key=lambda i: (-scores[i], i))
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == ref


def test_box_iou_and_area_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    a, b = _random_boxes(rng, 6), _random_boxes(rng, 5)
    ref = np.array([[_iou_ref(x.tolist(), y.tolist()) for y in b] for x in a])
    np.testing.assert_allclose(box_iou(a, b), ref, rtol=1e-12)
    np.testing.assert_allclose(box_area(a), (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 5)


def test_box_errors() -> None:
    with pytest.raises(InputShapeError, match=r"shape \(k, 4\)"):
        box_iou([[0, 0, 1]], [[0, 0, 1, 1]])
    with pytest.raises(InputShapeError, match="x2 >= x1"):
        box_area([[5, 0, 1, 1]])
    with pytest.raises(NonFiniteError, match="non-finite"):
        box_area([[0, 0, np.nan, 1]])
    with pytest.raises(InputShapeError, match="numeric"):
        box_area([["a", "b", "c", "d"]])
    with pytest.raises(SampleCountError, match="one score per box"):
        nms([[0, 0, 1, 1]], [0.1, 0.2])
    with pytest.raises(NonFiniteError, match="non-finite"):
        nms([[0, 0, 1, 1]], [np.nan])
    with pytest.raises(ParameterError, match="iou_threshold"):
        nms([[0, 0, 1, 1]], [0.5], iou_threshold=1.5)
    with pytest.raises(SampleCountError, match="one label per box"):
        batched_nms([[0, 0, 1, 1]], [0.5], [0, 1])


# ----------------------------------------------------------------------------------------------
# detection energy: hand computations


def test_energy_matches_hand_computation() -> None:
    img = {
        "boxes": [[0, 0, 4, 4], [10, 10, 20, 20], [0, 0, 3, 3]],
        "labels": [0, 1, 0],
        "scores": [0.9, 0.5, 0.1],
        "logits": [[1.0, 2.0], [0.0, 0.0], [5.0, 5.0]],
        "box_logits": np.array(
            [
                [[0.0, 1.0], [2.0, 0.0], [0.0, 0.0], [1.0, 1.0]],
                [[3.0, 0.0], [0.0, 0.0], [1.0, 2.0], [0.0, 4.0]],
                [[9.0, 9.0], [9.0, 9.0], [9.0, 9.0], [9.0, 9.0]],
            ]
        ),
    }

    def lse(*v: float) -> float:
        return math.log(sum(math.exp(x) for x in v))

    # the third box scores 0.1 < 0.3: it does not count
    cls = (lse(1, 2) + lse(0, 0)) / 2
    box1 = (lse(0, 1) + lse(2, 0) + lse(0, 0) + lse(1, 1)) / 4
    box2 = (lse(3, 0) + lse(0, 0) + lse(1, 2) + lse(0, 4)) / 4
    box = (box1 + box2) / 2
    assert detection_energy([img])[0] == pytest.approx(cls + box, rel=1e-12)
    assert detection_energy([img], box_weight=0.25)[0] == pytest.approx(cls + 0.25 * box)
    assert detection_score([img], "class_energy")[0] == pytest.approx(cls)
    assert detection_score([img], "box_energy")[0] == pytest.approx(box)
    assert detection_energy([img], box_term="none")[0] == pytest.approx(cls)
    # every box counts
    cls3 = (lse(1, 2) + lse(0, 0) + lse(5, 5)) / 3
    assert detection_score([img], "class_energy", score_threshold=0.0)[0] == pytest.approx(cls3)
    # top-1: only the best box
    assert detection_energy([img], top_k=1)[0] == pytest.approx(lse(1, 2) + box1)
    # temperature: T * LSE(z / T)
    t = 2.0
    cls_t = (t * lse(0.5, 1.0) + t * lse(0, 0)) / 2
    assert detection_score([img], "class_energy", temperature=t)[0] == pytest.approx(cls_t)
    # joint energy: sum of softplus
    sp = (math.log1p(math.e) + math.log1p(math.e**2) + 2 * math.log(2)) / 2
    assert detection_score([img], "joint_energy")[0] == pytest.approx(sp)
    assert detection_energy([img], class_term="joint_energy", box_term="none")[0] == pytest.approx(
        sp
    )


def test_alternative_scores_match_classification_scores() -> None:
    img = _img(k=5, c=4, seed=3)
    sel = img["scores"] >= 0.3
    z = img["logits"][sel]
    assert detection_score([img], "mean_score")[0] == pytest.approx(img["scores"][sel].mean())
    assert detection_score([img], "max_score")[0] == pytest.approx(img["scores"].max())
    assert detection_score([img], "mean_max_softmax")[0] == pytest.approx(
        cls_scores.max_softmax(z).mean()
    )
    assert detection_score([img], "mean_neg_entropy")[0] == pytest.approx(
        cls_scores.entropy(z).mean()
    )
    assert detection_score([img], "mean_margin")[0] == pytest.approx(cls_scores.margin(z).mean())
    for name in DETECTION_SCORES:
        s = detection_score([img, img], name)
        assert s.shape == (2,) and s[0] == s[1]


def test_softmax_head_with_background_and_gaussian_box_head() -> None:
    img = {
        "boxes": [[0, 0, 4, 4]],
        "labels": [1],
        "scores": [0.8],
        "logits": [[7.0, 1.0, 2.0]],  # column 0 = background
        "box_log_sigma": [[0.0, 1.0, 2.0, -3.0]],
    }
    e = detection_energy([img], head="softmax", background_class=0)[0]
    assert e == pytest.approx(logsumexp([1.0, 2.0]) - 0.0)  # box term: -mean log sigma = 0
    img["box_log_sigma"] = [[1.0, 1.0, 1.0, 1.0]]
    assert detection_energy([img], head="softmax", background_class=0)[0] == pytest.approx(
        logsumexp([1.0, 2.0]) - 1.0
    )
    p = np.exp(np.array([7.0, 1.0, 2.0]) - logsumexp([7.0, 1.0, 2.0]))
    assert detection_score([img], "mean_max_softmax", head="softmax", background_class=0)[
        0
    ] == pytest.approx(p[1:].max())


def test_no_box_policies() -> None:
    low = {"boxes": [[0, 0, 4, 4]], "labels": [0], "scores": [0.1], "logits": [[0.0, 1.0]]}
    imgs: list[dict[str, Any]] = [_empty(2), low]
    np.testing.assert_array_equal(detection_energy(imgs), [-np.inf, -np.inf])
    np.testing.assert_array_equal(detection_energy(imgs, empty="student"), [np.inf, np.inf])
    np.testing.assert_array_equal(detection_energy(imgs, empty=-5.0), [-5.0, -5.0])
    fb = detection_energy(imgs, empty="fallback")
    assert fb[0] == -np.inf and fb[1] == pytest.approx(logsumexp([0.0, 1.0]))
    for name in DETECTION_SCORES:
        assert detection_score([_empty(2)], name)[0] == -np.inf


def test_nms_option_of_the_scorer() -> None:
    dup = {
        "boxes": [[0, 0, 10, 10], [0, 0, 10, 9.5], [20, 20, 30, 30]],
        "labels": [0, 0, 1],
        "scores": [0.9, 0.8, 0.7],
        "logits": [[1.0, 0.0], [9.0, 0.0], [0.0, 3.0]],
    }
    kept = detection_score([dup], "class_energy", nms_iou=0.5)[0]
    assert kept == pytest.approx((logsumexp([1.0, 0.0]) + logsumexp([0.0, 3.0])) / 2)
    assert DetectionScorer(nms_iou=0.5).select(as_detections(dup)).scores.tolist() == [0.9, 0.7]


# ----------------------------------------------------------------------------------------------
# malformed outputs


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"logits": None}, InputShapeError, "missing key.*'logits'"),
        ({"boxes": [[0, 0, 1]] * 2}, InputShapeError, r"shape \(k, 4\)"),
        ({"logits": np.zeros(2)}, InputShapeError, r"'logits' of shape \(k, n_classes\)"),
        ({"scores": np.zeros((2, 1))}, InputShapeError, r"shape \(k,\)"),
        ({"box_logits": np.zeros((2, 3, 4))}, InputShapeError, r"'box_logits' of shape"),
        ({"box_log_sigma": np.zeros((2, 2))}, InputShapeError, r"'box_log_sigma' of shape"),
        ({"labels": ["a", "b"]}, InputShapeError, "numeric"),
        ({"labels": [-1, 0]}, InputShapeError, "non-negative integers"),
        ({"scores": [0.5, np.nan]}, NonFiniteError, r"'scores'.*non-finite.*box 1"),
        ({"logits": [[0.0, 1.0, np.inf], [0, 0, 0]]}, NonFiniteError, "'logits'.*non-finite"),
        ({"boxes": [[0, 0, 1, 1], [0, 0, np.nan, 1]]}, NonFiniteError, "non-finite"),
        ({"scores": [0.5]}, SampleCountError, "disagree on the number of boxes"),
        ({"logits": np.zeros((3, 3))}, SampleCountError, "logits=3"),
        ({"box_logits": np.zeros((1, 4, 4))}, SampleCountError, "box_logits=1"),
    ],
)
def test_malformed_outputs(change: dict, error: type, match: str) -> None:
    img = _img(k=2, c=3)
    for key, value in change.items():
        if value is None:
            del img[key]
        else:
            img[key] = value
    with pytest.raises(error, match=match):
        detection_energy([_img(k=1, c=3), img])
    with pytest.raises(error, match="image 1"):
        detection_energy([_img(k=1, c=3), img])


def test_malformed_batches_and_options() -> None:
    with pytest.raises(ClassCountError, match="expected 'logits' with 3 columns"):
        detection_energy([_img(c=3), _img(c=4)])
    with pytest.raises(EmptyInputError, match="at least one image"):
        detection_energy([])
    with pytest.raises(InputShapeError, match="one detections dict per image"):
        detection_energy(_img())  # type: ignore[arg-type]
    with pytest.raises(InputShapeError, match="expected a dict"):
        detection_energy([np.zeros(3)])  # type: ignore[list-item]
    with pytest.raises(InputShapeError, match="needs 'box_logits'"):
        detection_energy([_img(bins=None)], box_term="energy")
    with pytest.raises(InputShapeError, match="needs 'box_log_sigma'"):
        detection_energy([_img()], box_term="neg_log_sigma")
    with pytest.raises(UnknownNameError, match="Unknown detection score 'enrgy'"):
        DetectionScorer("enrgy")
    bad_options: list[tuple[dict[str, Any], str]] = [
        ({"box_weight": -1.0}, "box_weight >= 0"),
        ({"temperature": 0.0}, "temperature > 0"),
        ({"top_k": 0}, "top_k"),
        ({"nms_iou": 2.0}, "nms_iou"),
        ({"score_threshold": float("nan")}, "score_threshold"),
        ({"empty": "nobody"}, "empty"),
        ({"head": "relu"}, "head"),
        ({"background_class": 0}, "softmax heads"),
        ({"class_term": "free"}, "class_term"),
        ({"box_term": "iou"}, "box_term"),
    ]
    for kwargs, match in bad_options:
        with pytest.raises(ParameterError, match=match):
            DetectionScorer(**kwargs)
    with pytest.raises(InputShapeError, match="background_class in"):
        detection_energy([_img(c=3)], head="softmax", background_class=5)


# ----------------------------------------------------------------------------------------------
# data


def test_canvas_dataset_is_deterministic_and_boxes_are_tight() -> None:
    spec = CanvasSpec()
    a = make_canvas_dataset(30, "val", random_state=4)
    b = make_canvas_dataset(30, "val", random_state=4)
    np.testing.assert_array_equal(a.images, b.images)
    assert all(np.array_equal(x, y) for x, y in zip(a.boxes, b.boxes, strict=True))
    c = make_canvas_dataset(30, "val", random_state=5)
    assert not np.array_equal(a.images, c.images)
    for img, boxes, labels in zip(a.images, a.boxes, a.labels, strict=True):
        assert 1 <= len(boxes) <= spec.max_items and len(labels) == len(boxes)
        assert labels.min() >= 0 and labels.max() < 10
        assert boxes.min() >= 0 and boxes.max() <= spec.canvas
        for x1, y1, x2, y2 in boxes.astype(int):
            inside = img[y1:y2, x1:x2]
            assert inside.max() > spec.ink  # the item is there
            assert (inside[:, 0] > 0).any() and (inside[0, :] > 0).any()  # tight on two sides
        if len(boxes) > 1:
            iou = box_iou(boxes, boxes)
            assert iou[~np.eye(len(boxes), dtype=bool)].max() <= spec.max_iou + 1e-9
    with pytest.raises(UnknownNameError, match="split"):
        make_canvas_dataset(2, "dev")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="n_images"):
        make_canvas_dataset(0)
    with pytest.raises(ParameterError, match="min_items <= max_items"):
        CanvasSpec(min_items=3, max_items=2)
    with pytest.raises(ParameterError, match="so an item fits"):
        CanvasSpec(canvas=20)


# ----------------------------------------------------------------------------------------------
# mAP and curves


def _jittered(ds, rng: np.random.Generator, noise: float, drop: float) -> list[dict]:  # type: ignore[no-untyped-def]
    out = []
    for boxes, labels in zip(ds.boxes, ds.labels, strict=True):
        keep = rng.uniform(size=len(boxes)) >= drop
        b = boxes[keep] + rng.normal(0, noise, size=(int(keep.sum()), 4))
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        lab = np.where(rng.uniform(size=len(b)) < 0.2, rng.integers(0, 10, len(b)), labels[keep])
        out.append(
            {
                "boxes": b,
                "labels": lab,
                "scores": rng.uniform(size=len(b)),
                "logits": rng.normal(size=(len(b), 10)),
            }
        )
    return out


def test_mixed_map_equals_direct_evaluation_and_curve_endpoints() -> None:
    rng = np.random.default_rng(0)
    ds = make_canvas_dataset(60, "test", random_state=1)
    student = _jittered(ds, rng, noise=2.0, drop=0.3)
    teacher = _jittered(ds, rng, noise=0.5, drop=0.05)
    student[3] = _empty(10)
    m = CocoMAP(ds.targets(), 10)
    ms, mt = m.evaluate(student), m.evaluate(teacher)
    map_s, map_t = m.compute(ms)["map"], m.compute(mt)["map"]
    assert 0.0 <= map_s < map_t <= 1.0
    assert mean_average_precision(teacher, ds.targets(), 10)["map"] == pytest.approx(map_t)
    choice = rng.uniform(size=60) < 0.5
    direct = [t if c else s for s, t, c in zip(student, teacher, choice, strict=True)]
    assert m.mixed([ms, mt], choice) == pytest.approx(m.compute(direct))
    scores = detection_energy(student, score_threshold=0.0)
    assert scores[3] == -np.inf
    curve = detection_cascade_curve(scores, m, ms, mt, costs=[1.0, 4.0], n_thresholds=8)
    assert curve.accuracy[0] == pytest.approx(map_s) and curve.accuracy[-1] == pytest.approx(map_t)
    assert curve.teacher_share[0] == 0.0 and curve.teacher_share[-1] == 1.0
    assert np.all(np.diff(curve.teacher_share) > 0)
    np.testing.assert_allclose(curve.relative_cost, (1.0 + 4.0 * curve.teacher_share) / 4.0)
    assert curve.teacher_share[1] >= 1 / 60  # the no-box image goes first
    rnd = random_detection_curve(m, ms, mt, costs=[1.0, 4.0], n_points=5, n_repeats=2)
    assert rnd.accuracy[0] == pytest.approx(map_s) and rnd.accuracy[-1] == pytest.approx(map_t)
    t = threshold_at_map(curve, map_t)
    assert route_images(scores, t).mean() <= 1.0
    assert speedup_at_map_fraction(curve, 1.0) >= 0.8
    with pytest.raises(InfeasibleTargetError, match="No threshold reaches"):
        threshold_at_map(curve, 2.0)
    assert math.isnan(speedup_at_map_fraction(curve.take([0]), 1.5))


def test_map_errors() -> None:
    gt = [{"boxes": [[0, 0, 4, 4]], "labels": [0]}]
    good = [{"boxes": [[0, 0, 4, 4]], "labels": [0], "scores": [0.5]}]
    m = CocoMAP(gt, 2)
    with pytest.raises(SampleCountError, match="predictions for the 1 images"):
        m.compute(good * 2)
    with pytest.raises(InputShapeError, match="missing key 'scores'"):
        m.compute([{"boxes": [[0, 0, 4, 4]], "labels": [0]}])
    with pytest.raises(LabelError, match="labels in"):
        m.compute([{"boxes": [[0, 0, 4, 4]], "labels": [2], "scores": [0.5]}])
    with pytest.raises(EmptyInputError, match="at least one image"):
        CocoMAP([])
    with pytest.raises(SampleCountError, match="one label per box"):
        CocoMAP([{"boxes": [[0, 0, 4, 4]], "labels": [0, 1]}])
    with pytest.raises(SampleCountError, match="one choice per image"):
        m.mixed([good, good], [0, 1])
    with pytest.raises(InputShapeError, match="indices of the detectors"):
        m.mixed([good, good], [2])
    with pytest.raises(InputShapeError, match="one routing score per image"):
        detection_cascade_curve([0.1, 0.2], m, good, good)
    with pytest.raises(NonFiniteError, match="NaN"):
        detection_cascade_curve([np.nan], m, good, good)
    with pytest.raises(ParameterError, match="metric"):
        detection_cascade_curve([0.1], m, good, good, metric="ap")
    assert m.compute([_empty(2)])["map"] == 0.0


def test_compare_detection_routers_on_synthetic_outputs() -> None:
    rng = np.random.default_rng(2)
    ds = make_canvas_dataset(40, "test", random_state=2)
    student = _jittered(ds, rng, noise=2.5, drop=0.3)
    teacher = _jittered(ds, rng, noise=0.5, drop=0.0)
    cmp = compare_detection_routers(
        student,
        teacher,
        ds.targets(),
        costs=[1, 10],
        n_classes=10,
        n_thresholds=5,
        random_repeats=2,
    )
    assert set(cmp.curves) == {*DETECTION_SCORES, "random", "oracle"}
    for c in cmp.curves.values():
        assert c.accuracy[0] == pytest.approx(cmp.student_map["map"])
        assert c.accuracy[-1] == pytest.approx(cmp.teacher_map["map"])
    sp = cmp.speedups(0.5)
    assert all(math.isnan(v) or v > 0 for v in sp.values())
    gaps = cmp.gaps_captured()
    assert gaps["oracle"] == pytest.approx(1.0) and gaps["random"] == pytest.approx(0.0)
    assert all(v <= 1.0 + 1e-9 for v in gaps.values())
    del cmp.curves["oracle"]
    with pytest.raises(ParameterError, match="oracle=True"):
        cmp.gaps_captured()


# ----------------------------------------------------------------------------------------------
# the hindsight (oracle) router


def _synthetic_pair(seed: int, n: int = 60) -> tuple[Any, list[dict], list[dict]]:
    rng = np.random.default_rng(seed)
    ds = make_canvas_dataset(n, "test", random_state=seed)
    return ds, _jittered(ds, rng, noise=2.0, drop=0.3), _jittered(ds, rng, noise=0.7, drop=0.05)


@pytest.mark.parametrize("seed", [0, 1])
def test_oracle_curve_dominates_every_router_and_ends_at_the_detectors(seed: int) -> None:
    ds, student, teacher = _synthetic_pair(seed)
    student[5] = _empty(10)
    m = CocoMAP(ds.targets(), 10)
    ms, mt = m.evaluate(student), m.evaluate(teacher)
    map_s, map_t = m.compute(ms)["map"], m.compute(mt)["map"]
    oracle = oracle_detection_curve(m, ms, mt, costs=[1.0, 8.0], n_points=11)
    assert oracle.accuracy[0] == pytest.approx(map_s)
    assert oracle.accuracy[-1] == pytest.approx(map_t)
    assert oracle.teacher_share[0] == 0.0 and oracle.teacher_share[-1] == 1.0
    assert np.all(np.diff(oracle.teacher_share) > 0) and np.all(np.isnan(oracle.thresholds))
    np.testing.assert_allclose(oracle.relative_cost, (1.0 + 8.0 * oracle.teacher_share) / 8.0)
    # each oracle point is the exact mAP of one hindsight routing of that many images; with a
    # clearly better teacher it is at or above every score's routing at the same share
    routings: dict[str, np.ndarray] = {
        name: DetectionScorer(name, score_threshold=0.0)(student) for name in DETECTION_SCORES
    }
    routings["random"] = np.random.default_rng(seed).uniform(size=len(ds))
    routings["hindsight_gain"] = -detection_oracle_gains(m, ms, mt)  # the oracle's own order
    for name, scores in routings.items():
        curve = detection_cascade_curve(scores, m, ms, mt, costs=[1.0, 8.0], n_thresholds=8)
        at = oracle_detection_curve(m, ms, mt, shares=curve.teacher_share)
        ours = np.interp(curve.teacher_share, at.teacher_share, at.accuracy)
        assert np.all(ours >= curve.accuracy - 1e-12), name
    rnd = random_detection_curve(m, ms, mt, n_points=11, n_repeats=3)
    assert detection_gap_captured(oracle, rnd, oracle) == pytest.approx(1.0)
    assert detection_gap_captured(rnd, rnd, oracle) == pytest.approx(0.0)
    assert float(np.trapezoid(oracle.accuracy, oracle.teacher_share)) > float(
        np.trapezoid(rnd.accuracy, rnd.teacher_share)
    )


def test_oracle_gains_track_exact_single_image_swaps() -> None:
    from scipy.stats import spearmanr

    ds, student, teacher = _synthetic_pair(0)
    m = CocoMAP(ds.targets(), 10)
    ms, mt = m.evaluate(student), m.evaluate(teacher)
    map_s, map_t = m.compute(ms)["map"], m.compute(mt)["map"]
    n = len(ds)
    add_one = [m.mixed([ms, mt], np.arange(n) == i)["map"] - map_s for i in range(n)]
    drop_one = [map_t - m.mixed([ms, mt], np.arange(n) != i)["map"] for i in range(n)]
    g_s = detection_oracle_gains(m, ms, mt, reference="student")
    g_t = detection_oracle_gains(m, ms, mt, reference="teacher")
    assert spearmanr(g_s, add_one)[0] > 0.9  # linearised at the all-student ranking
    assert spearmanr(g_t, drop_one)[0] > 0.9  # ... at the all-teacher ranking
    both = detection_oracle_gains(m, ms, mt)
    np.testing.assert_allclose(both, (g_s + g_t) / 2)
    assert both.sum() == pytest.approx(map_t - map_s, abs=0.03)
    # the same detector twice: nothing to gain, a flat curve
    np.testing.assert_allclose(detection_oracle_gains(m, ms, ms), 0.0, atol=1e-12)
    flat = oracle_detection_curve(m, ms, ms, n_points=4)
    np.testing.assert_allclose(flat.accuracy, map_s)
    # mAP at IoU 0.5 only: its own curve, same endpoints as the single detectors at 0.5
    c50 = oracle_detection_curve(m, ms, mt, n_points=3, metric="map_50")
    assert c50.accuracy[-1] == pytest.approx(m.compute(mt)["map_50"])


def test_oracle_errors() -> None:
    gt = [{"boxes": [[0, 0, 4, 4]], "labels": [0]}]
    good = [{"boxes": [[0, 0, 4, 4]], "labels": [0], "scores": [0.5]}]
    m = CocoMAP(gt, 2)
    with pytest.raises(ParameterError, match="reference in"):
        oracle_detection_curve(m, good, good, reference="median")
    with pytest.raises(ParameterError, match="reference 'student', 'teacher' or 'both'"):
        detection_oracle_gains(m, good, good, reference="best")
    with pytest.raises(ParameterError, match="n_points"):
        oracle_detection_curve(m, good, good, n_points=1)
    with pytest.raises(ParameterError, match=r"shares in \[0, 1\]"):
        oracle_detection_curve(m, good, good, shares=[0.5, 1.5])
    with pytest.raises(ParameterError, match="metric"):
        detection_oracle_gains(m, good, good, metric="ap")
    with pytest.raises(SampleCountError, match="predictions for the 1 images"):
        oracle_detection_curve(m, good * 2, good)


# ----------------------------------------------------------------------------------------------
# detectors: targets, decode, reduced end to end


def test_assign_targets_gives_every_box_a_positive_cell() -> None:
    from cascadekit.detection.nets import assign_targets

    ds = make_canvas_dataset(40, "train", random_state=3, spec=CanvasSpec(max_iou=0.0))
    classes, gt = assign_targets(ds.boxes, ds.labels, 16, 4)
    for i, (boxes, labels) in enumerate(zip(ds.boxes, ds.labels, strict=True)):
        for b, lab in zip(boxes, labels, strict=True):
            hit = np.all(gt[i] == b, axis=1)
            assert hit.any() and np.all(classes[i, hit] == lab)
        assert np.all((classes[i] >= 0) == np.any(gt[i] != 0, axis=1))


def test_decode_gives_the_output_format() -> None:
    torch = pytest.importorskip("torch")
    from cascadekit.detection.nets import build_detector, decode

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_detector("small").eval()
        x = torch.from_numpy(make_canvas_dataset(3, "test").images)
        with torch.inference_mode():
            cls, box = net(x)
    outs = decode(cls, box, net.stride, score_threshold=0.0, max_detections=7)
    assert len(outs) == 3
    for o in outs:
        d = as_detections(o, n_classes=10)
        assert 1 <= len(d) <= 7 and d.box_logits is not None and d.box_logits.shape[1:] == (4, 9)
        assert np.all(np.diff(d.scores) <= 0)
    assert np.isfinite(detection_energy(outs, score_threshold=0.0)).all()


def test_reduced_end_to_end(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Tiny training of both detectors: the larger one wins, the curve ends at both mAPs."""
    pytest.importorskip("torch")
    from cascadekit.detection import DetectorRecipe, load_detector

    recipes = [
        DetectorRecipe(n, a, epochs=1, images_per_epoch=700)
        for n, a in (("student", "small"), ("teacher", "large"))
    ]
    small, large = (load_detector(r, tmp_path) for r in recipes)
    assert small.trained and large.trained and large.flops > 5 * small.flops
    test = make_canvas_dataset(150, "test", random_state=0)
    ps, pt = small.predict(test.images), large.predict(test.images)
    m = CocoMAP(test.targets(), 10)
    ms, mt = m.evaluate(ps), m.evaluate(pt)
    map_s, map_t = m.compute(ms)["map"], m.compute(mt)["map"]
    assert map_t > map_s
    curve = detection_cascade_curve(
        detection_energy(ps), m, ms, mt, costs=[small.flops, large.flops], n_thresholds=6
    )
    assert curve.accuracy[0] == pytest.approx(map_s)
    assert curve.accuracy[-1] == pytest.approx(map_t)
    again = load_detector(recipes[0], tmp_path)
    assert not again.trained
    np.testing.assert_array_equal(again.predict(test.images[:5])[0]["boxes"], ps[0]["boxes"])


def test_remaining_error_paths() -> None:
    gt = [{"boxes": [[0, 0, 4, 4]], "labels": [0]}]
    good = [{"boxes": [[0, 0, 4, 4]], "labels": [0], "scores": [0.5]}]
    m = CocoMAP(gt, 2)
    with pytest.raises(ParameterError, match="NaN"):
        route_images([0.1], float("nan"))
    with pytest.raises(ParameterError, match="n_points"):
        random_detection_curve(m, good, good, n_points=1)
    with pytest.raises(ParameterError, match="n_repeats"):
        random_detection_curve(m, good, good, n_repeats=0)
    with pytest.raises(ParameterError, match="n_thresholds"):
        detection_cascade_curve([-np.inf], m, good, good, n_thresholds=0)
    curve = detection_cascade_curve([0.3], m, good, good)
    with pytest.raises(ParameterError, match="fraction of the teacher's mAP"):
        speedup_at_map_fraction(curve, 0.0)
    other = CocoMAP(gt * 2, 2)
    with pytest.raises(SampleCountError, match="matching of 1 images; got one of 2"):
        m.compute(other.evaluate(good * 2))
    with pytest.raises(InputShapeError, match="expected a dict"):
        CocoMAP([np.zeros(4)])  # type: ignore[list-item]
    with pytest.raises(InputShapeError, match="one dict per image"):
        CocoMAP({"boxes": [[0, 0, 4, 4]], "labels": [0]})  # type: ignore[arg-type]
    with pytest.raises(InputShapeError, match=r"shape \(k, 4\)"):
        CocoMAP([{"boxes": [[0, 0, 4]], "labels": [0]}])


def test_detector_recipe_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    from cascadekit.detection import DetectorRecipe, load_detector, load_detector_pair
    from cascadekit.detection.nets import build_detector

    with pytest.raises(ParameterError, match="Expected a DetectorRecipe"):
        load_detector("small", tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="two recipes"):
        load_detector_pair([DetectorRecipe("s", "small", 1, 10)], tmp_path)
    with pytest.raises(UnknownNameError, match="Unknown detector architecture 'tiny'"):
        build_detector("tiny")
    a, b = DetectorRecipe("s", "small", 1, 10), DetectorRecipe("s", "small", 1, 10, random_state=1)
    assert a.key == DetectorRecipe("s", "small", 1, 10).key != b.key


def test_named_pairs_keep_the_first_recipes_and_add_cheaper_students() -> None:
    torch = pytest.importorskip("torch")
    from cascadekit.detection import DetectorRecipe, default_detector_recipes
    from cascadekit.detection.nets import build_detector, decode

    v1 = default_detector_recipes(pair="v1")
    first = (
        DetectorRecipe("student", "small", 4, 4000, threads=2),
        DetectorRecipe("teacher", "large", 4, 4000, threads=2),
    )
    assert [r.key for r in v1] == [r.key for r in first]  # cached detectors stay valid
    s, t = default_detector_recipes()
    assert (s.arch, t.arch) == ("small_s8", "xlarge") and s.key != v1[0].key
    with pytest.raises(UnknownNameError, match="Unknown detector pair 'v9'"):
        default_detector_recipes(pair="v9")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_detector("small_s8").eval()
        with torch.inference_mode():
            cls, box = net(torch.from_numpy(make_canvas_dataset(2, "test").images))
    assert net.stride == 8 and tuple(cls.shape) == (2, 10, 8, 8)
    assert tuple(box.shape) == (2, 4, 9, 8, 8)
    outs = decode(cls, box, net.stride, score_threshold=0.0)
    assert all(as_detections(o, n_classes=10).boxes.shape[1] == 4 for o in outs)
