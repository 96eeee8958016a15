"""Cascades of two detectors that route whole images (EBJR section 2.3), and their mAP curves.

**Score direction: higher = keep the image on the student.** Image ``i`` keeps the student's
detections when ``score[i] >= threshold`` and gets the teacher's otherwise; the threshold
``+inf`` sends every image to the teacher (even images scored ``+inf``), ``-inf`` keeps every
image on the student. Cost per image is EBJR's: ``F_S`` for an image the student keeps,
``F_S + F_T`` for one it passes on; the *relative cost* divides the mean by ``F_T``.

mAP is not a sum over images, so the curve cannot come from cumulative sums as
:func:`cascadekit.curves.cascade_curve` does for accuracy: it is evaluated at a grid of
thresholds (quantiles of the scores, :func:`cascadekit.curves.threshold_grid`), each point one
pycocotools accumulation over the per-image matchings of :class:`~.metrics.CocoMAP`. The result is
a :class:`cascadekit.curves.Curve` whose ``accuracy`` field holds the mAP, so the curve metrics
of :mod:`cascadekit.curves` apply (``speedup_at_teacher_accuracy(curve, 0.97 * teacher_map)``).

Examples
--------
>>> import numpy as np
>>> from cascadekit.detection import CocoMAP, detection_cascade_curve
>>> gt = [{"boxes": [[0, 0, 8, 8]], "labels": [0]}, {"boxes": [[2, 2, 9, 9]], "labels": [1]}]
>>> student = [{"boxes": [[0, 0, 8, 8]], "labels": [0], "scores": [0.9]},
...            {"boxes": np.zeros((0, 4)), "labels": [], "scores": []}]
>>> teacher = [{"boxes": [[0, 0, 8, 8]], "labels": [0], "scores": [0.9]},
...            {"boxes": [[2, 2, 9, 9]], "labels": [1], "scores": [0.8]}]
>>> m = CocoMAP(gt)
>>> c = detection_cascade_curve([1.0, -np.inf], m, m.evaluate(student), m.evaluate(teacher),
...                             costs=[1, 4])
>>> c.teacher_share, c.accuracy, c.relative_cost
(array([0. , 0.5, 1. ]), array([0.5, 1. , 1. ]), array([0.25, 0.75, 1.25]))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import check_costs
from ..curves import Curve, speedup_at_teacher_accuracy, threshold_grid
from ..errors import InfeasibleTargetError, InputShapeError, NonFiniteError, ParameterError
from .energy import Detections, DetectionScorer
from .metrics import MAX_DETECTIONS, CocoMAP, MatchedDetections

__all__ = [
    "DetectionComparison",
    "compare_detection_routers",
    "detection_cascade_curve",
    "detection_gap_captured",
    "detection_oracle_gains",
    "oracle_detection_curve",
    "random_detection_curve",
    "route_images",
    "speedup_at_map_fraction",
    "threshold_at_map",
]

FloatArray = NDArray[np.floating[Any]]
_METRICS = ("map", "map_50", "map_75")


def _as_image_scores(scores: ArrayLike, n: int) -> FloatArray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.shape[0] != n:
        raise InputShapeError(
            f"Expected one routing score per image ({n}); got shape {s.shape}. Compute them with "
            "cascadekit.detection.detection_score(student_outputs)."
        )
    if np.isnan(s).any():
        raise NonFiniteError(
            f"Routing scores contain {int(np.isnan(s).sum())} NaN values, first at image "
            f"{int(np.flatnonzero(np.isnan(s))[0])}. (-inf and +inf are allowed: they mean "
            "'always to the teacher' and 'always on the student'.)"
        )
    return s


def route_images(scores: ArrayLike, threshold: float) -> NDArray[np.bool_]:
    """True where an image goes to the teacher: ``score < threshold`` (``+inf``: every image).

    Examples
    --------
    >>> import numpy as np
    >>> route_images([0.5, -np.inf, np.inf], 0.6)
    array([ True,  True, False])
    >>> route_images([0.5, -np.inf, np.inf], np.inf)
    array([ True,  True,  True])
    """
    s = np.asarray(scores, dtype=np.float64)
    t = float(threshold)
    if math.isnan(t):
        raise ParameterError("Expected a threshold that is a number or +-inf; got NaN.")
    if t == math.inf:
        return np.ones(s.shape, dtype=bool)
    out: NDArray[np.bool_] = ~(s >= t)
    return out


def _metric(name: str) -> str:
    if name not in _METRICS:
        raise ParameterError(f"Expected metric in {list(_METRICS)}; got {name!r}.")
    return name


def _relative_cost(share: FloatArray, c: FloatArray) -> FloatArray:
    out: FloatArray = (c[0] + share * c[1]) / c[1]
    return out


def detection_cascade_curve(
    scores: ArrayLike,
    evaluator: CocoMAP,
    student: MatchedDetections | Sequence[Mapping[str, Any] | Detections],
    teacher: MatchedDetections | Sequence[Mapping[str, Any] | Detections],
    costs: ArrayLike | None = None,
    *,
    n_thresholds: int = 20,
    metric: str = "map",
) -> Curve:
    """mAP vs cost of routing images by ``scores`` at a grid of thresholds.

    Parameters
    ----------
    scores : array-like of shape (n_images,)
        Student's per-image routing score (higher = keep); ``-inf`` / ``+inf`` allowed.
    evaluator : CocoMAP
        Holds the true boxes of the same images.
    student, teacher : MatchedDetections or list of dict
        Each detector's predictions (or their matching from ``evaluator.evaluate``).
    costs : array-like of 2 floats, optional
        ``[F_S, F_T]`` (e.g. FLOPs per image); defaults to ``[0, 1]``.
    n_thresholds : int, default=20
        Levels of the finite scores' grid (:func:`cascadekit.curves.threshold_grid`); the
        thresholds ``-inf`` (all on the student) and ``+inf`` (all to the teacher) are added.
    metric : {"map", "map_50", "map_75"}

    Returns
    -------
    Curve
        ``accuracy`` holds the mAP; the first point is the student's, the last the teacher's.
    """
    key = _metric(metric)
    n = evaluator.n_images
    s = _as_image_scores(scores, n)
    c = check_costs(costs, 2)
    ms, mt = evaluator.as_matched(student), evaluator.as_matched(teacher)
    finite = s[np.isfinite(s)]
    if finite.size:
        grid = threshold_grid(finite, n_thresholds)
        if finite.size < s.size:  # images without a score (-inf): also keep only the scored ones
            low = float(finite.min())
            grid = np.union1d(grid, [low - max(1.0, abs(low))])
    else:
        if (
            isinstance(n_thresholds, bool)
            or not isinstance(n_thresholds, (int, np.integer))
            or n_thresholds < 1
        ):
            raise ParameterError(
                f"Expected n_thresholds to be an integer >= 1; got {n_thresholds!r}."
            )
        grid = np.array([-np.inf, np.inf])
    shares, maps, kept = [], [], []
    seen: set[bytes] = set()
    for t in grid:
        to_teacher = route_images(s, t)
        sig = np.packbits(to_teacher).tobytes()
        if sig in seen:  # the same routing as a lower threshold: same point
            continue
        seen.add(sig)
        kept.append(t)
        shares.append(float(to_teacher.mean()))
        maps.append(evaluator.mixed([ms, mt], to_teacher)[key])
    share = np.asarray(shares)
    return Curve(
        thresholds=np.asarray(kept),
        teacher_share=share,
        accuracy=np.asarray(maps),
        relative_cost=_relative_cost(share, c),
        costs=c,
    )


def random_detection_curve(
    evaluator: CocoMAP,
    student: MatchedDetections | Sequence[Mapping[str, Any] | Detections],
    teacher: MatchedDetections | Sequence[Mapping[str, Any] | Detections],
    costs: ArrayLike | None = None,
    *,
    n_points: int = 11,
    n_repeats: int = 5,
    random_state: int = 0,
    metric: str = "map",
) -> Curve:
    """mAP of sending a random share of the images to the teacher, averaged over repeats.

    Shares ``0, 1/(n_points-1), ..., 1``; at each share, ``round(share * n)`` images drawn
    uniformly (seed ``random_state``) go to the teacher; the mAP is the mean over ``n_repeats``
    draws.

    Examples
    --------
    >>> gt = [{"boxes": [[0, 0, 8, 8]], "labels": [0]}] * 4
    >>> hit = [{"boxes": [[0, 0, 8, 8]], "labels": [0], "scores": [0.9]}] * 4
    >>> m = CocoMAP(gt)
    >>> random_detection_curve(m, hit, hit, n_points=3).accuracy
    array([1., 1., 1.])
    """
    key = _metric(metric)
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 2:
        raise ParameterError(f"Expected n_points to be an integer >= 2; got {n_points!r}.")
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, (int, np.integer)) or n_repeats < 1:
        raise ParameterError(f"Expected n_repeats to be an integer >= 1; got {n_repeats!r}.")
    c = check_costs(costs, 2)
    ms, mt = evaluator.as_matched(student), evaluator.as_matched(teacher)
    n = evaluator.n_images
    rng = np.random.default_rng(random_state)
    share = np.linspace(0.0, 1.0, int(n_points))
    counts = np.rint(share * n).astype(int)
    maps = np.zeros(share.shape[0])
    for j, k in enumerate(counts):
        reps = 1 if k in (0, n) else int(n_repeats)
        vals = []
        for _ in range(reps):
            to_teacher = np.zeros(n, dtype=bool)
            to_teacher[rng.choice(n, size=int(k), replace=False)] = True
            vals.append(evaluator.mixed([ms, mt], to_teacher)[key])
        maps[j] = float(np.mean(vals))
    real_share = counts / n
    thresholds = np.full(share.shape[0], np.nan)
    thresholds[0], thresholds[-1] = -np.inf, np.inf
    return Curve(
        thresholds=thresholds,
        teacher_share=real_share,
        accuracy=maps,
        relative_cost=_relative_cost(real_share, c),
        costs=c,
    )


# ----------------------------------------------------------------------------------------------
# the hindsight (oracle) router for mAP

_ORACLE_REFERENCES = ("student", "teacher", "both", "best")
_T_ROWS: dict[str, list[int] | None] = {"map": None, "map_50": [0], "map_75": [5]}


def _flatten_class(
    eval_imgs: Sequence[Any], rows: list[int] | None
) -> tuple[NDArray[np.intp], FloatArray, NDArray[np.bool_], NDArray[np.bool_]]:
    """One class's per-image matchings -> image index, score, TP (T, D) and counted (T, D)."""
    img, sc, tp, ok = [], [], [], []
    for i, e in enumerate(eval_imgs):
        if e is None or len(e["dtScores"]) == 0:
            continue
        dm = np.asarray(e["dtMatches"])[:, :MAX_DETECTIONS]
        di = np.asarray(e["dtIgnore"], dtype=bool)[:, :MAX_DETECTIONS]
        if rows is not None:
            dm, di = dm[rows], di[rows]
        img.append(np.full(dm.shape[1], i, dtype=np.intp))
        sc.append(np.asarray(e["dtScores"][:MAX_DETECTIONS], dtype=np.float64))
        tp.append(dm > 0)
        ok.append(~di)
    n_t = 10 if rows is None else len(rows)
    if not img:
        return (
            np.zeros(0, np.intp),
            np.zeros(0),
            np.zeros((n_t, 0), bool),
            np.zeros((n_t, 0), bool),
        )
    return np.concatenate(img), np.concatenate(sc), np.hstack(tp), np.hstack(ok)


def _linear_ap_contrib(
    ref_scores: FloatArray,
    ref_tp: NDArray[np.bool_],
    ref_ok: NDArray[np.bool_],
    scores: FloatArray,
    tp: NDArray[np.bool_],
    ok: NDArray[np.bool_],
) -> FloatArray:
    """First-order change of (non-interpolated) AP x n_gt when each detection is inserted into
    the reference ranking, summed over the IoU rows: shape (D,).

    With ``k_j / r_j`` the precision of the reference's j-th counted detection: a true positive
    at score ``s`` adds its own precision ``(k + 1) / (r + 1)`` and lifts every reference true
    positive ranked below it by ``(1 - p_j) / r_j``; a false positive lowers each of them by
    ``p_j / r_j``.
    """
    order = np.argsort(-ref_scores, kind="mergesort")
    rs = ref_scores[order]
    pos = np.searchsorted(-rs, -scores, side="right")  # reference entries scoring >= s
    out = np.zeros(scores.shape[0])
    for t in range(ref_tp.shape[0]):
        keep = ref_ok[t, order]
        tpt = (ref_tp[t, order] & keep).astype(np.float64)
        r = np.cumsum(keep.astype(np.float64))
        k = np.cumsum(tpt)
        safe_r = np.maximum(r, 1.0)
        p = k / safe_r
        lift = np.where(tpt > 0, (1.0 - p) / safe_r, 0.0)
        drop = np.where(tpt > 0, p / safe_r, 0.0)
        # sums over the reference entries strictly below position pos (suffix sums)
        lift_below = np.concatenate([np.cumsum(lift[::-1])[::-1], [0.0]])[pos]
        drop_below = np.concatenate([np.cumsum(drop[::-1])[::-1], [0.0]])[pos]
        k_at = np.concatenate([[0.0], k])[pos]
        r_at = np.concatenate([[0.0], r])[pos]
        is_tp = tp[t] & ok[t]
        val = np.where(is_tp, (k_at + 1.0) / (r_at + 1.0) + lift_below, -drop_below)
        out += np.where(ok[t], val, 0.0)
    return out


def detection_oracle_gains(
    evaluator: CocoMAP,
    student: MatchedDetections | Sequence[Mapping[str, Any] | Detections],
    teacher: MatchedDetections | Sequence[Mapping[str, Any] | Detections],
    *,
    metric: str = "map",
    reference: str = "both",
) -> FloatArray:
    """Per image, an estimate (in mAP units) of how much answering it with the teacher helps.

    mAP couples the images through the ranking of all detections of a class, so no per-image
    gain is exact. This is the first-order (linearised) change of the COCO AP of each class and
    IoU threshold when image ``i``'s student detections are taken out of a *reference ranking*
    and its teacher detections put in, from the cached per-image matchings (no re-matching):
    a true positive at score ``s`` adds the precision it would have there plus the precision it
    lends to every true positive ranked below it, a false positive costs the precision it takes
    from them (non-interpolated AP; COCO's 101-point interpolation is ignored). The reference
    is the all-student ranking (``"student"``), the all-teacher one (``"teacher"``) or the mean
    of both (``"both"``). Their sum over images is close to ``mAP_T - mAP_S`` when the
    detectors differ little; it is a ranking device for :func:`oracle_detection_curve`.

    Examples
    --------
    >>> import numpy as np
    >>> gt = [{"boxes": [[0, 0, 8, 8]], "labels": [0]}, {"boxes": [[2, 2, 9, 9]], "labels": [0]}]
    >>> s = [{"boxes": [[0, 0, 8, 8]], "labels": [0], "scores": [0.9]},
    ...      {"boxes": [[20, 20, 29, 29]], "labels": [0], "scores": [0.8]}]
    >>> t = [{"boxes": [[0, 0, 8, 8]], "labels": [0], "scores": [0.9]},
    ...      {"boxes": [[2, 2, 9, 9]], "labels": [0], "scores": [0.8]}]
    >>> g = detection_oracle_gains(CocoMAP(gt), s, t)
    >>> bool(g[1] > 0 == g[0])   # only the second image gains from the teacher
    True
    """
    key = _metric(metric)
    if reference not in ("student", "teacher", "both"):
        raise ParameterError(
            f"Expected reference 'student', 'teacher' or 'both'; got {reference!r}."
        )
    ms, mt = evaluator.as_matched(student), evaluator.as_matched(teacher)
    n = evaluator.n_images
    rows = _T_ROWS[key]
    n_rows = 10 if rows is None else len(rows)
    n_cls = len(ms.eval_imgs) // n
    gains = np.zeros(n)
    n_valid = 0
    refs = ("student", "teacher") if reference == "both" else (reference,)
    for c in range(n_cls):
        es, et = ms.eval_imgs[c * n : (c + 1) * n], mt.eval_imgs[c * n : (c + 1) * n]
        n_gt = sum(
            int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)) for e in es if e is not None
        )
        if n_gt == 0:
            continue
        n_valid += 1
        fs, ft = _flatten_class(es, rows), _flatten_class(et, rows)
        for ref in refs:
            rf = fs if ref == "student" else ft
            for sign, (img, sc, tp, ok) in ((-1.0, fs), (1.0, ft)):
                if img.size:
                    v = _linear_ap_contrib(rf[1], rf[2], rf[3], sc, tp, ok)
                    np.add.at(gains, img, sign * v / (n_gt * n_rows * len(refs)))
    out: FloatArray = gains / max(n_valid, 1)
    return out


def oracle_detection_curve(
    evaluator: CocoMAP,
    student: MatchedDetections | Sequence[Mapping[str, Any] | Detections],
    teacher: MatchedDetections | Sequence[Mapping[str, Any] | Detections],
    costs: ArrayLike | None = None,
    *,
    n_points: int = 21,
    shares: ArrayLike | None = None,
    metric: str = "map",
    reference: str = "best",
) -> Curve:
    """The hindsight router for mAP: at each share, the images the teacher helps most.

    Images go to the teacher in decreasing order of :func:`detection_oracle_gains` (computed
    with the true boxes); every point is the exact mAP (one pycocotools accumulation) of sending
    the first ``round(share * n)`` images of that order. Unlike the classification oracle it
    ends at the teacher (share 1 sends every image, also those the teacher makes worse), so both
    endpoints are the single detectors; the share where the gains turn non-positive is added as
    a point. With ``reference="best"`` (default) the orders of the three references
    (``"student"``, ``"teacher"``, ``"both"``) are all evaluated and each point keeps the best:
    still a hindsight routing of that many images, not necessarily the best one (finding it is
    combinatorial), so this is a **lower bound on the true oracle** and "gap captured" against
    it an upper bound on the true share.

    Parameters
    ----------
    evaluator, student, teacher, costs, metric
        As for :func:`detection_cascade_curve`.
    n_points : int, default=21
        Evenly spaced shares ``0, 1/(n_points-1), ..., 1``.
    shares : array-like, optional
        Evaluate at these teacher shares instead (rounded to whole images; 0 and 1 are added).
    reference : {"best", "both", "student", "teacher"}

    Returns
    -------
    Curve
        ``accuracy`` holds the mAP; thresholds are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> gt = [{"boxes": [[0, 0, 8, 8]], "labels": [0]}, {"boxes": [[2, 2, 9, 9]], "labels": [0]}]
    >>> s = [{"boxes": [[0, 0, 8, 8]], "labels": [0], "scores": [0.9]},
    ...      {"boxes": [[20, 20, 29, 29]], "labels": [0], "scores": [0.8]}]
    >>> t = [{"boxes": [[9, 9, 15, 15]], "labels": [0], "scores": [0.9]},
    ...      {"boxes": [[2, 2, 9, 9]], "labels": [0], "scores": [0.8]}]
    >>> c = oracle_detection_curve(CocoMAP(gt), s, t, n_points=3)
    >>> c.teacher_share, c.accuracy.round(3)   # image 2 first: both boxes right at share 1/2
    (array([0. , 0.5, 1. ]), array([0.505, 1.   , 0.252]))
    """
    key = _metric(metric)
    if reference not in _ORACLE_REFERENCES:
        raise ParameterError(
            f"Expected reference in {list(_ORACLE_REFERENCES)}; got {reference!r}."
        )
    c = check_costs(costs, 2)
    ms, mt = evaluator.as_matched(student), evaluator.as_matched(teacher)
    n = evaluator.n_images
    if shares is None:
        if (
            isinstance(n_points, bool)
            or not isinstance(n_points, (int, np.integer))
            or n_points < 2
        ):
            raise ParameterError(f"Expected n_points to be an integer >= 2; got {n_points!r}.")
        want = np.linspace(0.0, 1.0, int(n_points))
    else:
        want = np.asarray(shares, dtype=np.float64).ravel()
        if want.size == 0 or not np.all((want >= 0.0) & (want <= 1.0)):
            raise ParameterError(
                "Expected shares in [0, 1] (fractions of images sent to the teacher); got "
                f"{want[:5].tolist()}."
            )
    refs = ("student", "teacher", "both") if reference == "best" else (reference,)
    orders, n_pos = [], []
    for ref in refs:
        g = detection_oracle_gains(evaluator, ms, mt, metric=key, reference=ref)
        orders.append(np.argsort(-g, kind="stable"))
        n_pos.append(int(np.count_nonzero(g > 0)))
    counts = np.unique(np.concatenate([[0, n], np.rint(want * n), n_pos]).astype(np.int64))
    maps = np.empty(counts.shape[0])
    for j, k in enumerate(counts.tolist()):
        best = -math.inf
        for order in orders:
            to_teacher = np.zeros(n, dtype=bool)
            to_teacher[order[:k]] = True
            best = max(best, evaluator.mixed([ms, mt], to_teacher)[key])
            if k in (0, n):
                break
        maps[j] = best
    share = counts / n
    return Curve(
        thresholds=np.full(share.shape[0], np.nan),
        teacher_share=share,
        accuracy=maps,
        relative_cost=_relative_cost(share, c),
        costs=c,
    )


def detection_gap_captured(curve: Curve, random: Curve, oracle: Curve) -> float:
    """Share of the random-to-oracle gap in area under mAP over teacher share.

    ``(AUC - AUC_random) / (AUC_oracle - AUC_random)`` with the measured random and oracle
    curves (:func:`random_detection_curve`, :func:`oracle_detection_curve`); NaN when the
    oracle is no better than random.

    Examples
    --------
    >>> from cascadekit.curves import Curve
    >>> def line(*acc):
    ...     x = np.linspace(0, 1, len(acc))
    ...     return Curve(np.full(len(acc), np.nan), x, np.array(acc), x)
    >>> g = detection_gap_captured(line(0.3, 0.5, 0.6), line(0.3, 0.45, 0.6), line(0.3, 0.6, 0.6))
    >>> round(g, 4)
    0.3333
    """
    a, r, o = (float(np.trapezoid(x.accuracy, x.teacher_share)) for x in (curve, random, oracle))
    den = o - r
    return (a - r) / den if abs(den) > 1e-12 else math.nan


def speedup_at_map_fraction(curve: Curve, fraction: float = 0.97) -> float:
    """Teacher cost / cascade cost at the cheapest point reaching ``fraction`` of the teacher's
    mAP (the curve's last point); ``nan`` when no point reaches it.

    Examples
    --------
    >>> from cascadekit.curves import Curve
    >>> c = Curve([-np.inf, 0.5, np.inf], [0.0, 0.4, 1.0], [0.3, 0.5, 0.5], [0.1, 0.5, 1.1])
    >>> speedup_at_map_fraction(c, 0.97)
    2.0
    """
    f = float(fraction)
    if not 0.0 < f <= 1.5:
        raise ParameterError(
            f"Expected a fraction of the teacher's mAP in (0, 1.5]; got {fraction!r}."
        )
    try:
        return speedup_at_teacher_accuracy(curve, f * float(curve.accuracy[-1]))
    except InfeasibleTargetError:
        return math.nan


def threshold_at_map(curve: Curve, target_map: float) -> float:
    """Threshold of the cheapest point of ``curve`` whose mAP reaches ``target_map``.

    Pick it on held-out images (a ``val`` split), then apply it with :func:`route_images` to
    the test images. Raises :class:`~cascadekit.errors.InfeasibleTargetError` if no point does.

    Examples
    --------
    >>> from cascadekit.curves import Curve
    >>> c = Curve([-np.inf, 0.5, np.inf], [0.0, 0.4, 1.0], [0.3, 0.5, 0.5], [0.1, 0.5, 1.1])
    >>> threshold_at_map(c, 0.45)
    0.5
    """
    target = float(target_map)
    ok = np.flatnonzero(curve.accuracy >= target - 1e-12)
    if ok.size == 0:
        raise InfeasibleTargetError(
            f"No threshold reaches mAP {target:.4g}; the best is {float(curve.accuracy.max()):.4g}."
            " Lower the target.",
            best=float(curve.accuracy.max()),
        )
    return float(curve.thresholds[ok[np.argmin(curve.relative_cost[ok])], 0])


@dataclass(eq=False)
class DetectionComparison:
    """mAP-vs-cost curves of several routers on one set of images.

    Attributes
    ----------
    student_map, teacher_map : dict of str to float
        ``{"map", "map_50", "map_75"}`` of each detector alone.
    costs : ndarray of shape (2,)
        ``[F_S, F_T]``.
    curves : dict of str to Curve
        One per router name, plus ``"random"`` and (unless ``oracle=False``) ``"oracle"``.
    scores : dict of str to ndarray
        Per-image routing scores of each router.
    """

    student_map: dict[str, float]
    teacher_map: dict[str, float]
    costs: FloatArray
    curves: dict[str, Curve] = field(default_factory=dict)
    scores: dict[str, FloatArray] = field(default_factory=dict)

    def speedups(self, fraction: float = 0.97) -> dict[str, float]:
        """Per router: speed-up over the teacher at ``fraction`` of its mAP (nan: never)."""
        return {k: speedup_at_map_fraction(c, fraction) for k, c in self.curves.items()}

    def gaps_captured(self) -> dict[str, float]:
        """Per curve: share of the random-to-oracle AUC gap (:func:`detection_gap_captured`)."""
        if "oracle" not in self.curves or "random" not in self.curves:
            raise ParameterError(
                "gaps_captured needs the 'random' and 'oracle' curves; run "
                "compare_detection_routers with oracle=True."
            )
        r, o = self.curves["random"], self.curves["oracle"]
        return {k: detection_gap_captured(c, r, o) for k, c in self.curves.items()}


def compare_detection_routers(
    student_outputs: Sequence[Mapping[str, Any] | Detections],
    teacher_outputs: Sequence[Mapping[str, Any] | Detections],
    targets: Sequence[Mapping[str, Any]],
    costs: ArrayLike,
    routers: Mapping[str, DetectionScorer] | None = None,
    *,
    n_classes: int | None = None,
    n_thresholds: int = 20,
    random_repeats: int = 5,
    random_state: int = 0,
    metric: str = "map",
    oracle: bool = True,
) -> DetectionComparison:
    """Curves of every router (default: one :class:`DetectionScorer` per score name), random
    and the hindsight oracle (:func:`oracle_detection_curve`, unless ``oracle=False``).

    Examples
    --------
    >>> gt = [{"boxes": [[0, 0, 8, 8]], "labels": [0]}] * 2
    >>> out = [{"boxes": [[0, 0, 8, 8]], "labels": [0], "scores": [0.9], "logits": [[2.0, 0.0]]}]
    >>> cmp = compare_detection_routers(out * 2, out * 2, gt, costs=[1, 10])
    >>> cmp.teacher_map["map"], sorted(cmp.curves)[:3]
    (1.0, ['box_energy', 'class_energy', 'energy'])
    """
    from .energy import DETECTION_SCORES

    evaluator = CocoMAP(targets, n_classes)
    ms, mt = evaluator.evaluate(student_outputs), evaluator.evaluate(teacher_outputs)
    c = check_costs(costs, 2)
    if routers is None:
        routers = {name: DetectionScorer(name) for name in DETECTION_SCORES}
    out = DetectionComparison(evaluator.compute(ms), evaluator.compute(mt), c)
    for name, scorer in routers.items():
        s = scorer(student_outputs)
        out.scores[name] = s
        out.curves[name] = detection_cascade_curve(
            s, evaluator, ms, mt, c, n_thresholds=n_thresholds, metric=metric
        )
    out.curves["random"] = random_detection_curve(
        evaluator,
        ms,
        mt,
        c,
        n_points=n_thresholds + 1,
        n_repeats=random_repeats,
        random_state=random_state,
        metric=metric,
    )
    if oracle:
        out.curves["oracle"] = oracle_detection_curve(
            evaluator, ms, mt, c, n_points=n_thresholds + 1, metric=metric
        )
    return out
