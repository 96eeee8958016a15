"""Cascades of N >= 2 stages: routing by score thresholds.

An input stays at stage ``k`` when ``score_k >= threshold_k`` (higher = more confident = keep);
otherwise it moves on to stage ``k + 1``. The last stage answers everything left. A specialized
stage (EBJR section 2.4) has an extra "other" class: its score is computed over the real classes
only and an input whose argmax is "other" always moves on, whatever the threshold.

Examples
--------
>>> import numpy as np
>>> from cascadekit import Cascade, Stage
>>> student = np.array([[5.0, 0.0], [0.2, 0.1], [0.0, 4.0]])
>>> teacher = np.array([[3.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
>>> cascade = Cascade([Stage(student, cost=1), Stage(teacher, cost=7)], thresholds=[2.0])
>>> result = cascade.route()
>>> result.stage
array([0, 1, 0], dtype=int32)
>>> result.predictions
array([0, 1, 1])
>>> round(result.relative_cost, 4)   # (1 + 8 + 1) / 3 / 7
0.4762
>>> cascade.thresholds = [-np.inf]   # turn the knob on a live cascade: all on the student
>>> cascade.route().teacher_share
0.0
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import (
    as_labels,
    as_logits,
    as_stage_output,
    check_costs,
    check_same_classes,
    check_same_samples,
    check_score_suits,
    check_temperature,
    encode_labels,
)
from .adapters import align_classes, as_model, n_inputs, take, take_slice
from .errors import (
    CascadeError,
    ClassCountError,
    InputShapeError,
    NonFiniteError,
    NotCalibratedError,
    ParameterError,
    SampleCountError,
    StageError,
    StageUnavailableError,
)
from .routing import PredictResult, RouteResult, RoutingState
from .scores import ScoreFn, get_score

__all__ = ["Cascade", "Stage", "StageDecision", "assign_stages"]

FloatArray = NDArray[np.floating[Any]]
IntArray = NDArray[np.integer[Any]]
BoolArray = NDArray[np.bool_]


def assign_stages(
    stage_scores: Sequence[ArrayLike],
    thresholds: Sequence[float],
    forced: Sequence[ArrayLike | None] | None = None,
) -> NDArray[np.int32]:
    """Index of the stage that answers each input, from precomputed scores.

    Parameters
    ----------
    stage_scores : sequence of N-1 arrays of shape (n_samples,)
        Routing score of every non-final stage for every input (higher = keep).
    thresholds : sequence of N-1 floats
        An input stays at stage k when ``stage_scores[k] >= thresholds[k]``.
    forced : sequence of N-1 boolean arrays or None, optional
        True where an input must move on regardless of its score (the "other" gate).

    Returns
    -------
    ndarray of shape (n_samples,), dtype int32
        0 for the first stage, ..., N-1 for the last.

    Examples
    --------
    >>> assign_stages([np.array([3.0, 1.0, 0.0]), np.array([0.0, 5.0, 0.0])], [2.0, 4.0])
    array([0, 1, 2], dtype=int32)
    """
    if len(stage_scores) != len(thresholds):
        raise ParameterError(
            f"Expected one threshold per non-final stage ({len(stage_scores)}); got "
            f"{len(thresholds)}."
        )
    n = np.asarray(stage_scores[0]).shape[0]
    stage = np.full(n, len(stage_scores), dtype=np.int32)
    undecided = np.ones(n, dtype=bool)
    for k, (s, t) in enumerate(zip(stage_scores, thresholds, strict=True)):
        keep = np.asarray(s) >= t
        if forced is not None and forced[k] is not None:
            keep &= ~np.asarray(forced[k], dtype=bool)
        now = undecided & keep
        stage[now] = k
        undecided &= ~now
    return stage


@dataclass
class StageDecision:
    """What one stage decided for the inputs it saw.

    Attributes
    ----------
    predictions : ndarray of shape (m,)
        Predicted label in the final label space (after ``class_map``); -1 if "other".
    scores : ndarray of shape (m,)
        Routing score (higher = keep).
    keep : ndarray of shape (m,), bool
        True where the input stays at this stage for the given threshold.
    """

    predictions: NDArray[np.int64]
    scores: FloatArray
    keep: BoolArray


@dataclass
class Stage:
    """One stage of a cascade: its outputs (or model), cost and routing score.

    Parameters
    ----------
    outputs : array-like of shape (n_samples, n_classes), or (n_samples,) int, optional
        Saved logits of this stage. The last stage may give labels only (1-D integers).
    model : object, optional
        A live model used by :meth:`Cascade.predict`: a torch module, ONNX file or session,
        fitted scikit-learn classifier, function ``inputs -> logits``, or any
        :mod:`cascadekit.adapters` adapter. It is wrapped with
        :func:`cascadekit.adapters.as_model` when the stage is built.
    cost : float, default=1.0
        Cost of running this stage on one input (FLOPs, seconds, or "stage calls").
    name : str, optional
        Shown in reports and errors; defaults to ``stage0``, ``stage1``, ...
    score : str or callable, default="energy"
        Routing score of this stage (see :mod:`cascadekit.scores`); higher = keep.
    temperature : float, default=1.0
        Temperature of the score.
    class_map : array-like of int, optional
        ``class_map[j]`` is the final label of this stage's class ``j`` (-1 for "other").
        Needed when this stage's classes differ from the last stage's.
    other_class : int, optional
        Column of the "other" class of a specialized student. Its score ignores that column, and
        inputs whose argmax is "other" always move on.
    """

    outputs: ArrayLike | None = None
    model: Any = None
    cost: float = 1.0
    name: str | None = None
    score: str | Callable[..., Any] = "energy"
    temperature: float = 1.0
    class_map: ArrayLike | None = None
    other_class: int | None = None

    def __post_init__(self) -> None:
        if self.model is not None:
            self.model = as_model(self.model)

    def score_fn(self) -> ScoreFn:
        """The score function of this stage (raises for an unknown name)."""
        return get_score(self.score)

    @property
    def routing_columns(self) -> int:
        """Trailing output columns that carry a routing signal, not a class (0 for the scores
        of :mod:`cascadekit.scores`; 1 for ``deferral`` and ``agreement`` of
        :mod:`cascadekit.training.scores`, whose models emit their signal in a last column).
        The score reads the whole row; predictions and probabilities use the class columns."""
        return int(getattr(self.score_fn(), "routing_columns", 0))

    def decide(self, logits: ArrayLike, threshold: float) -> StageDecision:
        """Score ``logits`` of this stage and decide which inputs stay at ``threshold``.

        Examples
        --------
        >>> d = Stage(score="max_logit").decide(np.array([[3.0, 0.0], [0.0, 1.0]]), 2.0)
        >>> d.keep, d.predictions
        (array([ True, False]), array([0, 1]))
        """
        z = as_logits(logits, f"logits of stage {self.name or ''}".replace("  ", " "))
        temperature = check_temperature(self.temperature)
        fn = self.score_fn()
        if self.other_class is not None:
            c = z.shape[1]
            if not -c <= self.other_class < c:
                raise InputShapeError(
                    f"Expected other_class in [{-c}, {c - 1}] for stage {self.name!r} with {c} "
                    f"classes; got {self.other_class}."
                )
            k = self.other_class % c
            real = np.delete(z, k, axis=1)
            gate = np.argmax(z, axis=1) == k
            scores = np.asarray(fn(real, temperature), dtype=np.float64)
            real_cols = np.delete(np.arange(c), k)
            local = real_cols[np.argmax(real, axis=1)]
            keep = (scores >= threshold) & ~gate
        else:
            scores = np.asarray(fn(z, temperature), dtype=np.float64)
            local = np.argmax(z[:, : z.shape[1] - self.routing_columns], axis=1)
            keep = scores >= threshold
        if scores.shape != (z.shape[0],):
            raise InputShapeError(
                f"Expected the score of stage {self.name!r} to return shape ({z.shape[0]},); got "
                f"{scores.shape}. A score maps (n, C) logits to one number per input."
            )
        preds = self.map_classes(local)
        return StageDecision(predictions=preds, scores=scores, keep=keep)

    def map_classes(self, local: ArrayLike) -> NDArray[np.int64]:
        """Map this stage's class indices to the final label space through ``class_map``."""
        idx = np.asarray(local, dtype=np.int64)
        if self.class_map is None:
            return idx
        cmap = np.asarray(self.class_map, dtype=np.int64)
        out: NDArray[np.int64] = cmap[idx]
        return out


class Cascade:
    """A cascade of N >= 2 stages with a live threshold knob.

    Parameters
    ----------
    stages : sequence of Stage
        In cascade order: the cheapest first, the last stage answers everything left.
    thresholds : sequence of N-1 floats, or a float for 2 stages, optional
        An input stays at stage k when its score is ``>= thresholds[k]``. ``-inf`` keeps every
        input at that stage, ``+inf`` sends every input on. Can be set later (also on a live
        cascade) or chosen with :meth:`calibrate`. A finite threshold outside the
        range of the scores it meets in :meth:`route` raises a
        :class:`~cascadekit.errors.ThresholdRangeWarning`.
    classes : array-like, optional
        The class labels, in the order of the last stage's columns; results then give
        ``predicted_labels`` and ``accuracy`` takes labels. :meth:`from_models` sets it from
        scikit-learn stages' ``classes_``.

    Examples
    --------
    >>> import numpy as np
    >>> c = Cascade.from_outputs([np.eye(3) * 4, np.eye(3)], costs=[1, 10], score="margin")
    >>> c.route()
    Traceback (most recent call last):
    ...
    cascadekit.errors.NotCalibratedError: This Cascade has no threshold yet. Pass ... or call ...
    >>> c.thresholds = 4.0
    >>> c.route().teacher_share
    0.0
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        thresholds: Sequence[float] | float | None = None,
        classes: ArrayLike | None = None,
    ) -> None:
        stages = list(stages)
        if len(stages) < 2:
            raise ParameterError(
                f"Expected a cascade of at least 2 stages; got {len(stages)}. "
                "Add a teacher stage after the student."
            )
        for i, st in enumerate(stages):
            if not isinstance(st, Stage):
                raise ParameterError(
                    f"Expected Stage objects; stage {i} is {type(st).__name__}. Wrap saved "
                    "logits with Stage(outputs=...) or use Cascade.from_outputs([...])."
                )
            if st.name is None:
                st.name = f"stage{i}"
        self.stages: list[Stage] = stages
        self.costs = check_costs([s.cost for s in stages], len(stages))
        for st in stages[:-1]:
            st.score_fn()  # unknown score names fail at construction
            check_temperature(st.temperature)
            if st.model is not None:  # e.g. energy on a model that returns log-probabilities
                kind = str(getattr(st.model, "output_kind", "logits"))
                check_score_suits(kind, st.score, f"the outputs of stage {st.name!r}")
        self._thresholds: tuple[float, ...] | None = None
        if thresholds is not None:
            self.thresholds = thresholds
        self.classes: NDArray[Any] | None = None if classes is None else np.asarray(classes)

    @classmethod
    def from_outputs(
        cls,
        outputs: Sequence[ArrayLike],
        *,
        costs: ArrayLike | None = None,
        score: str | Callable[..., Any] = "energy",
        temperature: float = 1.0,
        thresholds: Sequence[float] | float | None = None,
        names: Sequence[str] | None = None,
    ) -> Cascade:
        """Build a cascade from saved outputs, one array per stage, in cascade order."""
        return cls._build("outputs", outputs, costs, score, temperature, thresholds, names)

    @classmethod
    def _build(
        cls,
        field: str,
        items: Sequence[Any],
        costs: ArrayLike | None,
        score: str | Callable[..., Any],
        temperature: float,
        thresholds: Sequence[float] | float | None,
        names: Sequence[str] | None,
    ) -> Cascade:
        """One stage per item (saved outputs or a model), with shared score settings."""
        cost_arr = check_costs(costs, len(items))
        stages = [
            Stage(
                **{field: item},
                cost=float(cost_arr[i]),
                score=score,
                temperature=temperature,
                name=None if names is None else names[i],
            )
            for i, item in enumerate(items)
        ]
        return cls(stages, thresholds=thresholds)

    @property
    def n_stages(self) -> int:
        """Number of stages."""
        return len(self.stages)

    @property
    def thresholds(self) -> tuple[float, ...] | None:
        """Current thresholds (N-1 floats) or None when not set yet."""
        return self._thresholds

    @thresholds.setter
    def thresholds(self, value: Sequence[float] | float | None) -> None:
        self._thresholds = None if value is None else self._check_thresholds(value)

    def _check_thresholds(self, value: Sequence[float] | float) -> tuple[float, ...]:
        arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
        if arr.ndim != 1 or arr.shape[0] != self.n_stages - 1:
            raise ParameterError(
                f"Expected {self.n_stages - 1} threshold(s) for a {self.n_stages}-stage cascade; "
                f"got {np.asarray(value).tolist()}."
            )
        if np.isnan(arr).any():
            raise ParameterError(
                f"Expected numeric thresholds; got NaN in {arr.tolist()}. Use -inf to keep "
                "every input at a stage or +inf to send every input on."
            )
        return tuple(float(v) for v in arr)

    def resolve_thresholds(
        self, thresholds: Sequence[float] | float | None = None
    ) -> tuple[float, ...]:
        """``thresholds`` checked, or the cascade's own; raises when neither is set."""
        if thresholds is not None:
            return self._check_thresholds(thresholds)
        if self._thresholds is None:
            raise NotCalibratedError(
                "This Cascade has no threshold yet. Pass thresholds=... or call "
                "cascade.calibrate(target, labels) first (e.g. target=0.3 sends 30% to the "
                "last stage, or {'accuracy': 0.95})."
            )
        return self._thresholds

    def stage_outputs(self, outputs: Sequence[ArrayLike] | None = None) -> list[np.ndarray]:
        """Validated outputs of every stage (logits, or labels for a labels-only last stage).

        ``outputs`` defaults to the stages' saved outputs.
        """
        if outputs is not None and len(outputs) != self.n_stages:
            raise ParameterError(
                f"Expected outputs for {self.n_stages} stages; got {len(outputs)}."
            )
        given = [s.outputs for s in self.stages] if outputs is None else list(outputs)
        outs: list[np.ndarray] = []
        for i, (st, raw) in enumerate(zip(self.stages, given, strict=True)):
            if raw is None:
                raise ParameterError(
                    f"Stage {st.name!r} has no saved outputs. Pass Stage(outputs=...) to route "
                    "saved logits, or use Cascade.predict(X) with live models."
                )
            outs.append(
                as_stage_output(
                    raw, f"stage {st.name!r}", last=i == self.n_stages - 1, score=st.score
                )
            )
        check_same_samples(
            [(repr(s.name), o.shape[0]) for s, o in zip(self.stages, outs, strict=True)]
        )
        self._check_class_spaces(outs)
        return outs

    def _check_class_spaces(self, outs: Sequence[np.ndarray]) -> None:
        last = outs[-1]
        final_c = last.shape[1] if last.ndim == 2 else None
        named = []
        for k, (st, o) in enumerate(zip(self.stages, outs, strict=True)):
            if o.ndim != 2:
                continue
            width = o.shape[1] - (st.routing_columns if k < self.n_stages - 1 else 0)
            if st.class_map is not None:
                cmap = np.asarray(st.class_map)
                if cmap.ndim != 1 or cmap.shape[0] != width:
                    raise ClassCountError(
                        f"Expected class_map of stage {st.name!r} to have one entry per class "
                        f"({width}); got shape {cmap.shape}."
                    )
                if final_c is not None and cmap.max() >= final_c:
                    raise ClassCountError(
                        f"class_map of stage {st.name!r} maps to label {int(cmap.max())}, but the "
                        f"last stage has {final_c} classes. Fix the mapping."
                    )
            else:
                named.append((f"Stage {st.name!r}", width))
        check_same_classes(named)

    def route(
        self,
        outputs: Sequence[ArrayLike] | None = None,
        thresholds: Sequence[float] | float | None = None,
    ) -> RouteResult:
        """Route saved outputs through the cascade.

        Parameters
        ----------
        outputs : sequence of arrays, optional
            One array per stage; defaults to the stages' own ``outputs``.
        thresholds : optional
            Override the cascade's thresholds for this call only.

        Returns
        -------
        RouteResult
        """
        ths = self.resolve_thresholds(thresholds)
        outs = self.stage_outputs(outputs)
        state = self.routing_state(outs[0].shape[0], ths, warn_range=True)
        rows = np.arange(outs[0].shape[0], dtype=np.int64)
        for k in range(self.n_stages):
            if rows.size == 0:
                break
            rows = state.update(k, rows, outs[k][rows])
        return state.compute()

    def routing_state(
        self,
        n_rows: int,
        thresholds: Sequence[float] | float | None = None,
        *,
        probabilities: bool = False,
        warn_range: bool = False,
    ) -> RoutingState:
        """A :class:`~cascadekit.routing.RoutingState` for ``n_rows`` inputs of this cascade.

        ``thresholds`` default to the cascade's own. Every driver (:meth:`route`,
        :meth:`predict`, the server, Ray Data evaluation) feeds its stages' outputs to one.
        """
        return RoutingState(
            self.stages,
            self.resolve_thresholds(thresholds),
            n_rows,
            costs=self.costs,
            classes=self.classes,
            probabilities=probabilities,
            warn_range=warn_range,
        )

    def calibrate(
        self,
        target: Any,
        labels: ArrayLike | None = None,
        *,
        outputs: Sequence[ArrayLike] | None = None,
        X: Any = None,
        n_thresholds: int | None = None,
    ) -> Cascade:
        """Choose the thresholds for ``target`` on calibration data; returns ``self``.

        The stages' outputs on the calibration inputs come from ``outputs`` (one array per
        stage), from running the live models on ``X``, or by default from the stages' saved
        outputs. Each non-final stage is scored with its own score and temperature; correctness
        is measured against ``labels`` (class labels when the cascade has ``classes``, else
        class indices), or, with ``labels=None``, as agreement with the last stage (label-free).
        Then :func:`cascadekit.calibration.calibrate_cascade` chooses the thresholds.

        Sets ``thresholds`` (the live knob) and the learned attributes ``thresholds_`` (what
        calibration chose, shape (N-1,); the knob may be turned later), ``calibration_`` (the
        :class:`~cascadekit.calibration.CalibrationResult`) and ``curve_`` (the trade-off
        curve on the calibration data: exact for 2 stages, the Pareto front of
        :func:`cascadekit.curves.grid_curve` for more).

        Parameters
        ----------
        target : Target, float, dict, str or (kind, value)
            Anything :meth:`cascadekit.calibration.Target.parse` accepts: ``0.3`` (teacher
            share), ``{"accuracy": 0.95}``, ``{"relative_cost": 0.5}``,
            ``{"accuracy_drop": 0.01, "delta": 0.1}`` (guaranteed), ``"crossing"``.
        labels : array-like of shape (n_samples,), optional
            True labels of the calibration inputs; None for label-free calibration.
        outputs : sequence of arrays, optional
            Calibration outputs of every stage.
        X : inputs, optional
            Calibration inputs for the stages' live models.
        n_thresholds : int, optional
            Grid size of N-stage searches and of the guarantee (see ``calibrate_cascade``).

        Returns
        -------
        Cascade
            ``self``, calibrated.

        Examples
        --------
        >>> student = np.array([[3.0, 0.0], [0.2, 0.0], [0.0, 2.5], [0.1, 0.0]])
        >>> teacher = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 1.0]])
        >>> c = Cascade.from_outputs([student, teacher], costs=[1, 5], score="margin")
        >>> c.calibrate(0.5, labels=[0, 1, 1, 1]).thresholds_
        array([1.35])
        >>> c.calibration_.accuracy, c.route().teacher_share
        (1.0, 0.5)
        """
        from . import calibration, curves

        if outputs is not None and X is not None:
            raise ParameterError(
                "Expected calibration outputs or inputs X, not both. Pass outputs=[...] "
                "(saved logits per stage) or X (run the stages' models)."
            )
        if X is not None:
            n = n_inputs(X)
            outs = [
                self.check_stage_output(k, self.call_stage(k, m, X, n), n)
                for k, m in enumerate(self.live_models())
            ]
        else:
            outs = self.stage_outputs(outputs)
        n = outs[0].shape[0]
        scores: list[np.ndarray] = []
        preds: list[np.ndarray] = []
        for k, (st, out) in enumerate(zip(self.stages, outs, strict=True)):
            if k < self.n_stages - 1 and st.other_class is not None:
                raise ParameterError(
                    f"Stage {st.name!r} is specialized (other_class={st.other_class}); "
                    "Cascade.calibrate does not model its 'other' gate. Calibrate it with "
                    "cascadekit.specialized, then set thresholds=..."
                )
            if out.ndim == 1:  # a labels-only last stage
                preds.append(np.asarray(out, dtype=np.int64))
                continue
            d = st.decide(out, math.inf)
            preds.append(d.predictions)
            if k < self.n_stages - 1:
                scores.append(d.scores)
        label_free = labels is None
        if labels is None:
            correct = [p == preds[-1] for p in preds]
        else:
            y = as_labels(encode_labels(labels, self.classes), n_samples=n)
            correct = [p == y for p in preds]
        result = calibration.calibrate_cascade(
            scores,
            correct,
            target,
            costs=self.costs,
            n_thresholds=n_thresholds,
            label_free=label_free,
        )
        self.calibration_ = result
        self.thresholds_ = np.asarray(result.thresholds, dtype=np.float64)
        self.thresholds = result.thresholds
        if self.n_stages == 2:
            self.curve_ = curves.cascade_curve(scores[0], correct[0], correct[1], costs=self.costs)
        else:
            self.curve_ = curves.grid_curve(scores, correct, self.costs)
        return self

    @classmethod
    def from_models(
        cls,
        models: Sequence[Any],
        *,
        costs: ArrayLike | None = None,
        score: str | Callable[..., Any] = "energy",
        temperature: float = 1.0,
        thresholds: Sequence[float] | float | None = None,
        names: Sequence[str] | None = None,
        classes: ArrayLike | None = None,
    ) -> Cascade:
        """Build a cascade from live models, in cascade order (cheapest first).

        Each model is wrapped with :func:`cascadekit.adapters.as_model` (torch modules, ONNX
        files or sessions, fitted scikit-learn classifiers, functions, adapters). The columns of
        fitted scikit-learn classifiers are put in one class order through their ``classes_``
        (:func:`cascadekit.adapters.align_classes`, as :class:`~cascadekit.CascadeClassifier`
        does), so stages trained on text or non-0..K-1 labels agree; the results' ``classes``
        and ``predicted_labels`` give the labels, and ``accuracy`` takes them.

        Parameters
        ----------
        classes : array-like, optional
            The class order; by default the sorted union of the scikit-learn stages'
            ``classes_``. Needed when other stages (whose columns carry no names) are mixed
            with classifiers trained on labels other than ``0..K-1``.

        Examples
        --------
        >>> student = lambda x: np.stack([x, -x], axis=1)
        >>> teacher = lambda x: np.stack([x, -x], axis=1) * 10
        >>> c = Cascade.from_models([student, teacher], costs=[1, 10], score="margin",
        ...                         thresholds=[1.0])
        >>> c.predict(np.array([2.0, 0.1, -3.0])).stage
        array([0, 1, 0], dtype=int32)
        >>> from sklearn.linear_model import LogisticRegression
        >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
        >>> y = np.array(["cat", "cat", "dog", "dog"])
        >>> lr = LogisticRegression().fit(X, y)
        >>> r = Cascade.from_models([lr, lr], score="margin", thresholds=[0.5]).predict(X)
        >>> r.predicted_labels.tolist(), r.accuracy(y)
        (['cat', 'cat', 'dog', 'dog'], 1.0)
        """
        aligned, found = align_classes(list(models), classes)
        cascade = cls._build("model", aligned, costs, score, temperature, thresholds, names)
        cascade.classes = found
        return cascade

    def live_models(self) -> list[Any]:
        """Every stage's model (wrapped as an adapter); raises for a stage without one."""
        models = []
        for st in self.stages:
            if st.model is None:
                raise ParameterError(
                    f"Stage {st.name!r} has no model. Pass Stage(model=...) (a torch module, "
                    "ONNX file, fitted classifier or function) to use Cascade.predict, or "
                    "route saved logits with Cascade.route()."
                )
            st.model = as_model(st.model)
            models.append(st.model)
        return models

    def call_stage(self, k: int, model: Any, batch: Any, m: int) -> np.ndarray:
        """Run stage k's ``model`` on one chunk of ``m`` inputs and check its logits
        (:meth:`check_stage_output`); a model's exception becomes a
        :class:`~cascadekit.errors.StageError` naming the stage."""
        st = self.stages[k]
        label = f"Stage {st.name!r} ({getattr(model, 'name', type(model).__name__)})"
        try:
            out = model(batch)
        except CascadeError as exc:
            msg = f"{label}: {exc}"
            try:
                new = type(exc)(msg)
            except TypeError:  # pragma: no cover - an error class with a custom signature
                new = StageError(msg)
            raise new from exc
        except Exception as exc:
            raise StageError(
                f"{label} raised {type(exc).__name__}: {exc}. Check that the inputs suit this "
                "model (the cause is chained below)."
            ) from exc
        return self.check_stage_output(k, out, m, getattr(model, "name", type(model).__name__))

    def check_stage_output(self, k: int, out: Any, m: int, model_name: str = "") -> np.ndarray:
        """Stage k's output for ``m`` inputs as a float array, checked: numeric, shape
        ``(m, n_classes >= 2)``, finite. Raises an error naming the stage otherwise."""
        st = self.stages[k]
        label = f"Stage {st.name!r}" + (f" ({model_name})" if model_name else "")
        arr = out if type(out) is np.ndarray else np.asarray(out)
        if arr.dtype.kind not in "fiu":
            raise StageError(
                f"{label} returned dtype {arr.dtype}; expected numeric logits of shape "
                "(n_inputs, n_classes)."
            )
        if arr.ndim != 2:
            hint = (
                " A binary classifier's one number per input becomes two columns with "
                "cascadekit.binary_logits(d, 'decision') or binary_logits(p, 'probability'); "
                "return those from the model."
                if arr.ndim == 1
                else ""
            )
            raise InputShapeError(
                f"{label} returned shape {arr.shape}; expected logits of shape "
                f"({m}, n_classes), one row per input.{hint}"
            )
        if arr.shape[0] != m:
            raise SampleCountError(
                f"{label} returned {arr.shape[0]} rows for {m} inputs; expected one row of "
                "logits per input, in order."
            )
        if arr.shape[1] < 2:
            raise ClassCountError(
                f"{label} returned {arr.shape[1]} class column(s); expected at least 2 "
                "(one logit per class)."
            )
        if not np.isfinite(arr).all():
            bad = ~np.isfinite(arr)
            rows = np.flatnonzero(bad.any(axis=1))
            raise NonFiniteError(
                f"{label} returned {int(bad.sum())} non-finite logits (NaN or inf) in "
                f"{rows.size} of {m} inputs. Fix the model or its inputs."
            )
        return arr

    def _check_stage_classes(self, k: int, c: int, seen: dict[int, int]) -> None:
        """Check stage k's class count against the other stages (as route() does)."""
        st = self.stages[k]
        if k < self.n_stages - 1:
            c -= st.routing_columns
        if st.class_map is not None:
            cmap = np.asarray(st.class_map)
            if cmap.ndim != 1 or cmap.shape[0] != c:
                raise ClassCountError(
                    f"Expected class_map of stage {st.name!r} to have one entry per class "
                    f"({c}); got shape {cmap.shape}."
                )
            return
        for j, cj in seen.items():
            if cj != c:
                raise ClassCountError(
                    f"Stage {self.stages[j].name!r} and stage {st.name!r} disagree on the number "
                    f"of classes: {cj} vs {c}. Map the student's classes with class_map=... or "
                    "check the models."
                )
        seen[k] = c

    def predict(
        self,
        X: Any,
        thresholds: Sequence[float] | float | None = None,
        *,
        probabilities: bool = True,
    ) -> PredictResult:
        """Run the live models: each stage only on the inputs the earlier stages passed on.

        Stage 1 runs on the whole batch in chunks of its model's ``batch_size``. The inputs it
        is not confident about (``score < threshold``) are gathered into dense sub-batches of
        the next stage's ``batch_size``, and so on; results are scattered back in input order.
        An input stays at stage k when its score is ``>= thresholds[k]`` (higher = keep).
        When a later stage raises :class:`~cascadekit.errors.StageUnavailableError` (a remote
        teacher timed out, for instance), the inputs it should have answered keep the previous
        stage's answer, flagged in ``fallback``.

        Parameters
        ----------
        X : array, torch tensor, list of str or any indexable sequence
            A batch of inputs; an empty batch gives empty results.
        thresholds : optional
            Override the cascade's thresholds for this call only.
        probabilities : bool, default=True
            Also return the softmax of the answering stage's logits.

        Returns
        -------
        PredictResult
            Same fields as :meth:`route` on the same logits, plus ``probabilities`` and timings.

        Raises
        ------
        StageError
            A model raised (the cause is chained) or returned non-numeric output.
        NonFiniteError, SampleCountError, ClassCountError, InputShapeError
            A model returned NaN/inf, the wrong number of rows or classes, or got inputs it
            cannot take; the message names the stage.

        Examples
        --------
        >>> student = lambda x: np.stack([x, -x], axis=1)        # confident when |x| is large
        >>> teacher = lambda x: np.stack([x - 1, 1 - x], axis=1)
        >>> c = Cascade([Stage(model=student), Stage(model=teacher, cost=5)], thresholds=[1.0])
        >>> r = c.predict(np.array([3.0, 0.2, -2.0, 0.5]))
        >>> r.stage, r.predictions, r.stage_inputs
        (array([0, 1, 0, 1], dtype=int32), array([0, 1, 1, 1]), array([4, 2]))
        >>> c.predict(np.array([0.2]), thresholds=[-np.inf]).stage   # per-call knob
        array([0], dtype=int32)
        """
        t_start = time.perf_counter()
        ths = self.resolve_thresholds(thresholds)
        models = self.live_models()
        n_stages = self.n_stages
        n = n_inputs(X)
        state = self.routing_state(n, ths, probabilities=probabilities)
        stage_inputs = np.zeros(n_stages, dtype=np.int64)
        stage_seconds = np.zeros(n_stages, dtype=np.float64)
        seen: dict[int, int] = {}
        rows = np.arange(n, dtype=np.int64)
        for k in range(n_stages):
            if rows.size == 0:
                break
            model = models[k]
            m = int(rows.size)
            bs = getattr(model, "batch_size", None) or m
            chunks: list[np.ndarray] = []
            for lo in range(0, m, bs):
                hi = min(lo + bs, m)
                batch = take_slice(X, lo, hi) if k == 0 else take(X, rows[lo:hi])
                t0 = time.perf_counter()
                try:
                    out = self.call_stage(k, model, batch, hi - lo)
                except StageUnavailableError:
                    if k == 0:
                        raise
                    # the previous stage answers inputs lo: of this stage, flagged fallback
                    stage_seconds[k] += time.perf_counter() - t0
                    state.fall_back(k, rows[lo:])
                    rows, m = rows[:lo], lo
                    break
                stage_seconds[k] += time.perf_counter() - t0
                if not chunks:
                    self._check_stage_classes(k, out.shape[1], seen)
                elif out.shape[1] != chunks[0].shape[1]:
                    raise ClassCountError(
                        f"Stage {self.stages[k].name!r} returned {chunks[0].shape[1]} classes for "
                        f"one chunk and {out.shape[1]} for another; a model must give a fixed "
                        "number."
                    )
                chunks.append(out)
            stage_inputs[k] = m
            if not chunks:
                break
            logits = chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=0)
            rows = state.update(k, rows, logits)
        routed = state.compute()
        last_c = getattr(models[-1], "n_classes", None)
        return PredictResult(
            predictions=routed.predictions,
            stage=routed.stage,
            stage_scores=routed.stage_scores,
            costs=routed.costs,
            fallback=routed.fallback,
            classes=routed.classes,
            probabilities=state.probabilities(last_c),
            stage_inputs=stage_inputs,
            stage_seconds=stage_seconds,
            total_seconds=time.perf_counter() - t_start,
        )

    def __repr__(self) -> str:
        names = ", ".join(str(s.name) for s in self.stages)
        return f"Cascade([{names}], thresholds={self._thresholds})"
