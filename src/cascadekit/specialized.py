"""Specialized EBJR (paper section 2.4): a student for the C most frequent classes plus "other".

A *specialized* student predicts only the ``C`` classes that make up most of the traffic, plus
one extra "other" class for everything else. It answers an input only when

* its argmax is one of the ``C`` real classes (an input it calls "other" always goes on), and
* its energy **over the C real classes only** (EBJR eq. 17, :func:`cascadekit.scores.
  specialized_energy`) is ``>= threshold`` (higher = more confident = keep),

and its class ``j`` means the teacher's class ``classes[j]`` (``class_map``). This module holds
the recipe around that rule, reusing :class:`cascadekit.Stage` (``class_map``, ``other_class``)
and the router files of :mod:`cascadekit.router`:

* :class:`Specialization` -- the top-C classes (from label frequencies or given), the mapping of
  labels to the student's ``C + 1`` labels, the ``class_map`` into the teacher's label space;
* :func:`popular_stream` -- a skewed "popular classes" stream drawn from a labelled pool, with a
  chosen share of inputs from the top-C classes (the paper's test stream had 75%);
* :func:`specialized_stage`, :func:`specialized_cascade`, :func:`specialized_router` -- the
  student stage, a 2-stage cascade and a saveable router;
* :func:`specialized_curve` -- the exact accuracy/cost curve of the gated router, starting at the
  largest share the student can keep (every input whose argmax is "other" moves on).

Only numpy is imported. The cached trainer of specialized Fashion-MNIST students is
:func:`cascadekit.data.specialized.load_specialized_student` (needs torch).

Examples
--------
>>> import numpy as np
>>> from cascadekit.specialized import Specialization, specialized_cascade
>>> spec = Specialization.from_labels([3, 3, 3, 1, 1, 0, 2], n_top=2, n_classes=4)
>>> spec.classes, spec.class_map, spec.other_class
((3, 1), [3, 1, -1], 2)
>>> spec.encode([3, 1, 0, 2])                 # student labels: 0, 1 for the top classes, 2 other
array([0, 1, 2, 2])
>>> student = np.array([[4.0, 0.0, 0.0], [0.0, 0.0, 5.0]])        # second input: "other"
>>> teacher = np.array([[0.0, 0.0, 0.0, 9.0], [9.0, 0.0, 0.0, 0.0]])
>>> r = specialized_cascade(student, teacher, spec, threshold=1.0).route()
>>> r.stage, r.predictions                      # class 0 of the student is the teacher's 3
(array([0, 1], dtype=int32), array([3, 0]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import as_labels, as_logits, check_costs, check_temperature, check_unit
from .cascade import Cascade, Stage
from .curves import Curve, cascade_curve
from .errors import (
    ClassCountError,
    InsufficientDataError,
    LabelError,
    ParameterError,
    SampleCountError,
)
from .router import Router
from .scores import get_score

__all__ = [
    "Specialization",
    "popular_stream",
    "specialized_cascade",
    "specialized_curve",
    "specialized_router",
    "specialized_scores",
    "specialized_stage",
]

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]


def _check_n_classes(n_classes: Any) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise ParameterError(f"Expected n_classes to be an integer >= 2; got {n_classes!r}.")
    if n_classes < 2:
        raise ParameterError(f"Expected n_classes >= 2 (the teacher's classes); got {n_classes}.")
    return int(n_classes)


def _check_n_top(n_top: Any, n_classes: int) -> int:
    if isinstance(n_top, bool) or not isinstance(n_top, (int, np.integer)):
        raise ParameterError(f"Expected n_top (C) to be an integer; got {n_top!r}.")
    if not 2 <= n_top <= n_classes - 1:
        raise ParameterError(
            f"Expected n_top (C) in [2, {n_classes - 1}] for {n_classes} classes; got {n_top}. "
            "A specialized student keeps at least 2 but fewer classes than the teacher (its "
            "energy is over the real classes) and puts the rest in 'other'."
        )
    return int(n_top)


@dataclass(frozen=True)
class Specialization:
    """Which teacher classes a specialized student predicts; the rest is "other".

    Parameters
    ----------
    classes : sequence of int
        The teacher's labels of the student's real classes, in the student's column order
        (student class ``j`` is teacher class ``classes[j]``). Distinct, in ``[0, n_classes)``,
        at least 2 and at most ``n_classes - 1`` of them.
    n_classes : int
        Number of classes of the teacher (the final label space).

    Attributes
    ----------
    n_top : int
        ``C = len(classes)``.
    other_class : int
        The student's column of "other": ``C`` (the last of ``C + 1`` columns).
    class_map : list of int
        ``classes + [-1]``: the teacher's label of each student column, -1 for "other". Pass it
        as ``Stage(class_map=...)``; router files store it as is.

    Examples
    --------
    >>> s = Specialization((2, 0), n_classes=3)
    >>> s.n_top, s.other_class, s.class_map
    (2, 2, [2, 0, -1])
    >>> s.in_top([0, 1, 2]).tolist()
    [True, False, True]
    """

    classes: tuple[int, ...]
    n_classes: int

    def __post_init__(self) -> None:
        n = _check_n_classes(self.n_classes)
        raw = np.asarray(self.classes)
        if raw.ndim != 1 or not (np.issubdtype(raw.dtype, np.integer) or raw.size == 0):
            raise ParameterError(
                f"Expected classes to be a sequence of integer labels; got {self.classes!r}."
            )
        cls = tuple(int(c) for c in raw)
        _check_n_top(len(cls), n)
        bad = [c for c in cls if not 0 <= c < n]
        if bad:
            raise LabelError(
                f"Expected classes in [0, {n - 1}] (the teacher's labels); got unknown class(es) "
                f"{bad}. Check the label encoding."
            )
        if len(set(cls)) != len(cls):
            raise ParameterError(f"Expected distinct classes; got {list(cls)}.")
        object.__setattr__(self, "classes", cls)
        object.__setattr__(self, "n_classes", n)

    @classmethod
    def from_labels(
        cls, labels: ArrayLike, n_top: int, n_classes: int | None = None
    ) -> Specialization:
        """The ``n_top`` most frequent classes of ``labels`` (ties: the smaller label first).

        Parameters
        ----------
        labels : array-like of int, shape (n_samples,)
            Labels of the traffic the student will serve (or of its training stream).
        n_top : int
            ``C``, in ``[2, n_classes - 1]``.
        n_classes : int, optional
            The teacher's number of classes; defaults to ``max(labels) + 1``.

        Examples
        --------
        >>> Specialization.from_labels([1, 1, 2, 2, 2, 0], n_top=2).classes
        (2, 1)
        """
        y = as_labels(labels, n_classes=n_classes)
        n = int(y.max()) + 1 if n_classes is None else _check_n_classes(n_classes)
        k = _check_n_top(n_top, n)
        counts = np.bincount(y, minlength=n)
        order = np.lexsort((np.arange(n), -counts))  # most frequent first, then smaller label
        return cls(tuple(int(c) for c in order[:k]), n)

    @property
    def n_top(self) -> int:
        """``C``, the number of real classes of the student."""
        return len(self.classes)

    @property
    def other_class(self) -> int:
        """The student's column of "other" (the last one, ``C``)."""
        return len(self.classes)

    @property
    def class_map(self) -> list[int]:
        """Teacher label of each of the student's ``C + 1`` columns; -1 for "other"."""
        return [*self.classes, -1]

    def _labels(self, labels: ArrayLike) -> IntArray:
        try:
            y: IntArray = as_labels(labels, n_classes=self.n_classes).astype(np.int64)
        except LabelError as exc:
            raise LabelError(
                f"{exc} Got an unknown class: a specialization over {self.n_classes} classes "
                "maps labels 0..n_classes-1 only."
            ) from None
        return y

    def in_top(self, labels: ArrayLike) -> BoolArray:
        """True where a label is one of the top-C classes."""
        y = self._labels(labels)
        out: BoolArray = np.isin(y, np.asarray(self.classes))
        return out

    def encode(self, labels: ArrayLike) -> IntArray:
        """Teacher labels -> the student's labels: ``j`` for ``classes[j]``, ``C`` for "other".

        This is the training recipe's label mapping: train a network with ``C + 1`` outputs on
        ``encode(y)``.

        Raises
        ------
        LabelError
            A label outside ``[0, n_classes)`` (an unknown class).
        """
        y = self._labels(labels)
        lut = np.full(self.n_classes, self.other_class, dtype=np.int64)
        lut[np.asarray(self.classes)] = np.arange(self.n_top)
        out: IntArray = lut[y]
        return out

    def decode(self, student_labels: ArrayLike) -> IntArray:
        """The student's labels -> teacher labels (-1 for "other")."""
        z = as_labels(student_labels, n_classes=self.n_top + 1, name="student labels")
        lut = np.asarray(self.class_map, dtype=np.int64)
        out: IntArray = lut[np.asarray(z, dtype=np.intp)]
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-value form (for recipes and reports)."""
        return {"classes": list(self.classes), "n_classes": self.n_classes}


def popular_stream(
    labels: ArrayLike,
    classes: Sequence[int] | Specialization,
    share: float,
    n: int | None = None,
    *,
    random_state: int = 0,
) -> IntArray:
    """Indices of a skewed "popular classes" stream drawn from a labelled pool.

    A fraction ``share`` of the stream comes from the top classes (uniformly over the pool's
    inputs of those classes), the rest from the other classes; drawn without replacement, in
    random order, with a fixed seed. EBJR's specialized test stream had ``share = 0.75``.

    Parameters
    ----------
    labels : array-like of int, shape (n_pool,)
        Labels of the pool (e.g. a test split).
    classes : sequence of int or Specialization
        The popular (top-C) classes.
    share : float in [0, 1]
        Fraction of the stream from the popular classes.
    n : int, optional
        Stream length; defaults to the longest stream the pool allows at this share.
    random_state : int, default=0

    Returns
    -------
    ndarray of int64, shape (n,)
        Indices into the pool.

    Raises
    ------
    InsufficientDataError
        The pool has too few inputs of one group for ``n`` at ``share``; ``needed`` says how many.

    Examples
    --------
    >>> y = np.repeat(np.arange(4), 10)          # 10 inputs of each of 4 classes
    >>> idx = popular_stream(y, [0], share=0.75)
    >>> len(idx), float(np.mean(y[idx] == 0))
    (13, 0.769...)
    >>> idx = popular_stream(y, [0, 1], share=0.5, n=8)
    >>> float(np.mean(np.isin(y[idx], [0, 1])))
    0.5
    """
    y = as_labels(labels)
    top = classes.classes if isinstance(classes, Specialization) else tuple(classes)
    if not top:
        raise ParameterError("Expected at least one popular class; got none.")
    p = check_unit("share", share)
    mask = np.isin(y, np.asarray(top, dtype=np.int64))
    pool_top, pool_rest = np.flatnonzero(mask), np.flatnonzero(~mask)
    if n is None:
        limits = []
        if p > 0:
            limits.append(pool_top.size / p)
        if p < 1:
            limits.append(pool_rest.size / (1 - p))
        n_total = int(np.floor(min(limits) + 1e-9))
    else:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ParameterError(f"Expected n to be a positive integer; got {n!r}.")
        n_total = int(n)
    n_top = round(p * n_total)
    n_rest = n_total - n_top
    if n_top > pool_top.size or n_rest > pool_rest.size:
        group = "popular" if n_top > pool_top.size else "other"
        have = pool_top.size if group == "popular" else pool_rest.size
        need = n_top if group == "popular" else n_rest
        raise InsufficientDataError(
            f"Expected at least {need} {group}-class inputs in the pool for a stream of "
            f"{n_total} at share={p}; the pool has {have}. Lower n or use a larger pool.",
            needed=need,
        )
    if n_total < 1:
        raise InsufficientDataError(
            f"The pool cannot give a stream at share={p}: it has {pool_top.size} popular and "
            f"{pool_rest.size} other inputs.",
            needed=1,
        )
    rng = np.random.default_rng(random_state)
    picked = np.concatenate(
        [rng.choice(pool_top, n_top, replace=False), rng.choice(pool_rest, n_rest, replace=False)]
    )
    out: IntArray = rng.permutation(picked).astype(np.int64)
    return out


def specialized_stage(
    spec: Specialization,
    outputs: ArrayLike | None = None,
    *,
    model: Any = None,
    cost: float = 1.0,
    score: str | Callable[..., Any] = "energy",
    temperature: float = 1.0,
    name: str | None = "specialized student",
) -> Stage:
    """A cascade stage for a specialized student (``class_map`` and ``other_class`` set).

    Its score is computed over the ``C`` real classes only (``score="energy"`` gives EBJR
    eq. 17) and an input whose argmax is "other" always moves on (eq. 16).

    Examples
    --------
    >>> st = specialized_stage(Specialization((1, 0), 3), np.array([[2.0, 0.0, 0.0]]))
    >>> st.class_map, st.other_class
    ([1, 0, -1], 2)
    """
    if outputs is not None:
        z = as_logits(outputs, "specialized student logits")
        if z.shape[1] != spec.n_top + 1:
            raise ClassCountError(
                f"Expected specialized student logits with C + 1 = {spec.n_top + 1} columns "
                f"(the top classes and 'other'); got {z.shape[1]}. Check n_top or the model."
            )
    return Stage(
        outputs=outputs,
        model=model,
        cost=cost,
        name=name,
        score=score,
        temperature=temperature,
        class_map=spec.class_map,
        other_class=spec.other_class,
    )


def specialized_cascade(
    student: ArrayLike | None,
    teacher: ArrayLike | None,
    spec: Specialization,
    *,
    costs: ArrayLike | None = None,
    threshold: float | None = None,
    score: str | Callable[..., Any] = "energy",
    temperature: float = 1.0,
    student_model: Any = None,
    teacher_model: Any = None,
) -> Cascade:
    """A 2-stage cascade: specialized student, then the teacher over all ``n_classes``.

    ``student`` and ``teacher`` are saved logits (or None with ``*_model=`` for live models).

    Examples
    --------
    >>> spec = Specialization((0, 1), n_classes=3)
    >>> c = specialized_cascade(np.array([[3.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]), spec,
    ...                         costs=[1, 10], threshold=0.0)
    >>> c.route().predictions
    array([0])
    """
    c = check_costs(costs, 2)
    if teacher is not None:
        zt = np.asarray(teacher)
        if zt.ndim == 2 and zt.shape[1] != spec.n_classes:
            raise ClassCountError(
                f"Expected teacher logits with n_classes = {spec.n_classes} columns; got "
                f"{zt.shape[1]}. The specialization's n_classes is the teacher's label space."
            )
    stages = [
        specialized_stage(
            spec,
            student,
            model=student_model,
            cost=float(c[0]),
            score=score,
            temperature=temperature,
        ),
        Stage(outputs=teacher, model=teacher_model, cost=float(c[1]), name="teacher"),
    ]
    return Cascade(stages, thresholds=None if threshold is None else [threshold])


def specialized_router(
    spec: Specialization,
    threshold: float,
    *,
    costs: ArrayLike | None = None,
    score: str = "energy",
    temperature: float = 1.0,
    calibration: dict[str, Any] | None = None,
) -> Router:
    """A router file for a specialized student and its teacher (save with ``.save(path)``).

    The file stores the student's ``class_map`` and ``other_class``; :meth:`Router.load`
    followed by ``to_cascade([student_logits, teacher_logits])`` routes exactly like
    :func:`specialized_cascade`, and ``cascadekit route`` applies it to saved logits.

    Examples
    --------
    >>> r = specialized_router(Specialization((4, 2), 5), threshold=1.5, costs=[1, 9])
    >>> r.to_dict()["class_maps"], r.to_dict()["other_class"]
    ([[4, 2, -1], None], [2, None])
    """
    get_score(score)
    check_temperature(temperature)
    c = check_costs(costs, 2)
    return Router(
        score=score,
        thresholds=[float(threshold)],
        temperature=float(temperature),
        costs=[float(v) for v in c],
        stage_names=["specialized student", "teacher"],
        class_maps=[spec.class_map, None],
        other_class=[spec.other_class, None],
        calibration={"specialization": spec.to_dict(), **(calibration or {})},
    )


def specialized_scores(
    logits: ArrayLike,
    spec: Specialization,
    score: str | Callable[..., Any] = "energy",
    temperature: float = 1.0,
) -> tuple[FloatArray, BoolArray, IntArray]:
    """Score, "other" gate and teacher-space prediction of a specialized student's logits.

    Returns
    -------
    scores : ndarray (n,)
        ``score`` over the C real classes (higher = keep).
    forced : ndarray of bool (n,)
        True where the argmax is "other": the input always moves on.
    predictions : ndarray of int (n,)
        The best real class, mapped into the teacher's labels.

    Examples
    --------
    >>> s, forced, pred = specialized_scores(np.array([[1.0, 0.0, 3.0]]), Specialization((2, 0), 3))
    >>> forced, pred
    (array([ True]), array([2]))
    """
    d = specialized_stage(spec, logits, score=score, temperature=temperature).decide(
        logits, -np.inf
    )
    forced: BoolArray = ~d.keep
    return d.scores.astype(np.float64), forced, d.predictions


def specialized_curve(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    labels: ArrayLike,
    spec: Specialization,
    costs: ArrayLike | None = None,
    *,
    score: str | Callable[..., Any] = "energy",
    temperature: float = 1.0,
) -> Curve:
    """The exact accuracy/cost curve of the specialized router at every threshold.

    Inputs whose argmax is "other" never stay on the student, so the curve starts at the
    teacher share ``P(argmax = other)`` (threshold = the smallest real score) and ends with the
    teacher alone; in between, one point per distinct score over the real classes (higher =
    keep). Accuracy is in the teacher's label space.

    Examples
    --------
    >>> spec = Specialization((0, 1), 4)
    >>> s = np.array([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])   # last: "other"
    >>> t = np.array([[0.0, 0, 1, 0], [0.0, 0, 1, 0], [0.0, 0, 1, 0]])   # always class 2
    >>> c = specialized_curve(s, t, [0, 2, 2], spec, costs=[1, 4])
    >>> c.teacher_share.round(3), c.accuracy.round(3)
    (array([0.333, 0.667, 1.   ]), array([0.667, 1.   , 0.667]))
    """
    zs = as_logits(student_logits, "specialized student logits")
    zt = as_logits(teacher_logits, "teacher logits")
    if zs.shape[0] != zt.shape[0]:
        raise SampleCountError(
            f"Expected student and teacher logits for the same inputs; got {zs.shape[0]} and "
            f"{zt.shape[0]} rows."
        )
    if zt.shape[1] != spec.n_classes:
        raise ClassCountError(
            f"Expected teacher logits with n_classes = {spec.n_classes} columns; got {zt.shape[1]}."
        )
    y = spec._labels(labels)
    if y.shape[0] != zs.shape[0]:
        raise SampleCountError(f"Expected {zs.shape[0]} labels (one per input); got {y.shape[0]}.")
    s, forced, pred = specialized_scores(zs, spec, score, temperature)
    right_s = pred == y
    right_t = np.argmax(zt, axis=1) == y
    free = ~forced
    # forced inputs get a score below every real one; the first point (every input on the
    # student, forced ones included) is not reachable by the gated router and is dropped
    floor = float(s[free].min()) - 1.0 if free.any() else 0.0
    curve = cascade_curve(np.where(forced, floor, s), right_s, right_t, costs)
    if forced.any():
        curve = curve.take(np.arange(1, len(curve)))
    return curve
