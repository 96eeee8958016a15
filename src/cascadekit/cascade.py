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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import (
    as_labels,
    as_logits,
    check_costs,
    check_same_classes,
    check_same_samples,
    check_temperature,
)
from .errors import (
    ClassCountError,
    InputShapeError,
    NotCalibratedError,
    ParameterError,
)
from .scores import ScoreFn, get_score

__all__ = ["Cascade", "RouteResult", "Stage", "StageDecision", "assign_stages"]

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
        A live model (see :mod:`cascadekit.adapters`) used by :meth:`Cascade.predict`.
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

    def score_fn(self) -> ScoreFn:
        """The score function of this stage (raises for an unknown name)."""
        return get_score(self.score)

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
            local = np.argmax(z, axis=1)
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


@dataclass
class RouteResult:
    """Per-input outcome of routing through a cascade.

    Attributes
    ----------
    predictions : ndarray of shape (n_samples,)
        Final predicted label of each input.
    stage : ndarray of shape (n_samples,), int32
        Index of the stage that answered (0 = first stage, N-1 = last).
    scores : ndarray of shape (n_samples, N-1)
        Routing score of each non-final stage that ran on the input; NaN where it did not run.
    costs : ndarray of shape (N,)
        Cost of each stage.
    """

    predictions: NDArray[np.int64]
    stage: NDArray[np.int32]
    scores: FloatArray
    costs: FloatArray
    fallback: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        if self.fallback.shape[0] != self.stage.shape[0]:
            self.fallback = np.zeros(self.stage.shape[0], dtype=bool)

    @property
    def n_stages(self) -> int:
        """Number of stages."""
        return int(self.costs.shape[0])

    @property
    def score(self) -> FloatArray:
        """The first stage's routing score of every input."""
        out: FloatArray = self.scores[:, 0]
        return out

    @property
    def stage_shares(self) -> FloatArray:
        """Share of inputs answered by each stage."""
        n = max(self.stage.shape[0], 1)
        out: FloatArray = np.bincount(self.stage, minlength=self.n_stages) / n
        return out

    @property
    def teacher_share(self) -> float:
        """Share of inputs answered by the last stage."""
        return float(self.stage_shares[-1]) if self.stage.shape[0] else 0.0

    @property
    def cost_per_input(self) -> FloatArray:
        """Cost of each input: the sum of the costs of every stage it ran (EBJR)."""
        out: FloatArray = np.cumsum(self.costs)[self.stage]
        return out

    @property
    def relative_cost(self) -> float:
        """Mean cost per input divided by the cost of the last stage alone."""
        if self.stage.shape[0] == 0:
            return 0.0
        return float(self.cost_per_input.mean() / self.costs[-1])

    def accuracy(self, labels: ArrayLike) -> float:
        """Share of inputs whose prediction equals ``labels``."""
        y = as_labels(labels, n_samples=self.stage.shape[0])
        return float(np.mean(self.predictions == y))


class Cascade:
    """A cascade of N >= 2 stages with a live threshold knob.

    Parameters
    ----------
    stages : sequence of Stage
        In cascade order: the cheapest first, the last stage answers everything left.
    thresholds : sequence of N-1 floats, or a float for 2 stages, optional
        An input stays at stage k when its score is ``>= thresholds[k]``. ``-inf`` keeps every
        input at that stage, ``+inf`` sends every input on. Can be set later (also on a live
        cascade) or found with :mod:`cascadekit.calibration`.

    Examples
    --------
    >>> import numpy as np
    >>> c = Cascade.from_outputs([np.eye(3) * 4, np.eye(3)], costs=[1, 10], score="margin")
    >>> c.route()
    Traceback (most recent call last):
    ...
    cascadekit.errors.NotCalibratedError: This Cascade has no threshold yet. Pass ...
    >>> c.thresholds = 3.0
    >>> c.route().teacher_share
    0.0
    """

    def __init__(
        self, stages: Sequence[Stage], thresholds: Sequence[float] | float | None = None
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
        self._thresholds: tuple[float, ...] | None = None
        if thresholds is not None:
            self.thresholds = thresholds

    @classmethod
    def from_outputs(
        cls,
        outputs: Sequence[ArrayLike],
        *,
        costs: Sequence[float] | None = None,
        score: str | Callable[..., Any] = "energy",
        temperature: float = 1.0,
        thresholds: Sequence[float] | float | None = None,
        names: Sequence[str] | None = None,
    ) -> Cascade:
        """Build a cascade from saved outputs, one array per stage, in cascade order."""
        cost_arr = check_costs(costs, len(outputs))
        stages = [
            Stage(
                outputs=o,
                cost=float(cost_arr[i]),
                score=score,
                temperature=temperature,
                name=None if names is None else names[i],
            )
            for i, o in enumerate(outputs)
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

    def _resolve_thresholds(self, thresholds: Sequence[float] | float | None) -> tuple[float, ...]:
        if thresholds is not None:
            return self._check_thresholds(thresholds)
        if self._thresholds is None:
            raise NotCalibratedError(
                "This Cascade has no threshold yet. Pass thresholds=... or calibrate it first "
                "(cascadekit.calibration or `cascadekit calibrate`)."
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
            arr = np.asarray(raw)
            if i == self.n_stages - 1 and arr.ndim == 1:
                outs.append(as_labels(arr, name=f"labels of the last stage {st.name!r}"))
            else:
                outs.append(as_logits(arr, f"logits of stage {st.name!r}"))
        check_same_samples(
            [(repr(s.name), o.shape[0]) for s, o in zip(self.stages, outs, strict=True)]
        )
        self._check_class_spaces(outs)
        return outs

    def _check_class_spaces(self, outs: Sequence[np.ndarray]) -> None:
        last = outs[-1]
        final_c = last.shape[1] if last.ndim == 2 else None
        named = []
        for st, o in zip(self.stages, outs, strict=True):
            if o.ndim != 2:
                continue
            if st.class_map is not None:
                cmap = np.asarray(st.class_map)
                if cmap.ndim != 1 or cmap.shape[0] != o.shape[1]:
                    raise ClassCountError(
                        f"Expected class_map of stage {st.name!r} to have one entry per class "
                        f"({o.shape[1]}); got shape {cmap.shape}."
                    )
                if final_c is not None and cmap.max() >= final_c:
                    raise ClassCountError(
                        f"class_map of stage {st.name!r} maps to label {int(cmap.max())}, but the "
                        f"last stage has {final_c} classes. Fix the mapping."
                    )
            else:
                named.append((f"Stage {st.name!r}", o.shape[1]))
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
        ths = self._resolve_thresholds(thresholds)
        outs = self.stage_outputs(outputs)
        n = outs[0].shape[0]
        predictions = np.full(n, -1, dtype=np.int64)
        stage = np.full(n, self.n_stages - 1, dtype=np.int32)
        scores = np.full((n, self.n_stages - 1), np.nan, dtype=np.float64)
        undecided = np.arange(n)
        for k in range(self.n_stages - 1):
            if undecided.size == 0:
                break
            d = self.stages[k].decide(outs[k][undecided], ths[k])
            scores[undecided, k] = d.scores
            kept = undecided[d.keep]
            predictions[kept] = d.predictions[d.keep]
            stage[kept] = k
            undecided = undecided[~d.keep]
        if undecided.size:
            last = outs[-1][undecided]
            local = last if last.ndim == 1 else np.argmax(last, axis=1)
            predictions[undecided] = self.stages[-1].map_classes(local)
        return RouteResult(predictions=predictions, stage=stage, scores=scores, costs=self.costs)

    def __repr__(self) -> str:
        names = ", ".join(str(s.name) for s in self.stages)
        return f"Cascade([{names}], thresholds={self._thresholds})"
