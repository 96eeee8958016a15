"""The routing engine: one state that every way of running a cascade drives.

:class:`RoutingState` has the shape of a torchmetrics metric: ``update`` takes one stage's
outputs for the rows still undecided and returns the rows to forward to the next stage,
``fall_back`` records rows that keep an earlier stage's answer because a later stage failed,
and ``compute`` gives the :class:`RouteResult`. An input stays at stage ``k`` when
``score_k >= threshold_k`` (higher = more confident = keep); a specialized stage's "other"
answer always moves on (:meth:`cascadekit.Stage.decide`); the last stage answers the rest.

:meth:`cascadekit.Cascade.route` (saved outputs), :meth:`cascadekit.Cascade.predict` (live
models), the server (:mod:`cascadekit.serve`, its Ray Serve backend included) and offline
evaluation on Ray Data (:mod:`cascadekit.offline`) are thin drivers of it: they only decide
where the outputs come from.

Examples
--------
>>> import numpy as np
>>> from cascadekit import Cascade
>>> cascade = Cascade.from_outputs([np.zeros((3, 2)), np.zeros((3, 2))], score="margin",
...                                thresholds=[1.0])
>>> state = cascade.routing_state(3)
>>> forward = state.update(0, np.arange(3), np.array([[3.0, 0.0], [0.2, 0.1], [0.0, 4.0]]))
>>> forward
array([1])
>>> state.update(1, forward, np.array([[0.0, 2.0]])).size   # the last stage answers the rest
0
>>> r = state.compute()
>>> r.predictions, r.stage
(array([0, 1, 1]), array([0, 1, 0], dtype=int32))
>>> r.stage_scores[:, 0]
array([3. , 0.1, 4. ])
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import as_labels, encode_labels
from .errors import ParameterError, ThresholdRangeWarning

if TYPE_CHECKING:
    from .cascade import Stage, StageDecision

__all__ = ["PredictResult", "RouteResult", "RoutingState", "stage_probabilities"]

FloatArray = NDArray[np.floating[Any]]
BoolArray = NDArray[np.bool_]


@dataclass
class RouteResult:
    """Per-input outcome of routing through a cascade.

    Attributes
    ----------
    predictions : ndarray of shape (n_samples,)
        Final predicted label of each input.
    stage : ndarray of shape (n_samples,), int32
        Index of the stage that answered (0 = first stage, N-1 = last).
    stage_scores : ndarray of shape (n_samples, N-1)
        Routing score of each non-final stage that ran on the input (higher = keep); NaN where
        the stage did not run.
    costs : ndarray of shape (N,)
        Cost of each stage.
    fallback : ndarray of shape (n_samples,), bool
        True where a later stage should have answered but could not (it raised
        :class:`~cascadekit.errors.StageUnavailableError`): ``predictions`` and ``stage`` then
        come from the last stage that did answer.
    classes : ndarray of shape (n_classes,) or None
        The class labels when the stages know them (scikit-learn classifiers' ``classes_``, or
        ``classes=`` of :meth:`Cascade.from_models`): ``predictions`` are indices into it, and
        :attr:`predicted_labels` are the labels themselves.
    """

    predictions: NDArray[np.int64]
    stage: NDArray[np.int32]
    stage_scores: FloatArray
    costs: FloatArray
    fallback: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    classes: NDArray[Any] | None = None

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
        out: FloatArray = self.stage_scores[:, 0]
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

    @property
    def predicted_labels(self) -> NDArray[Any]:
        """Predicted labels: ``classes[predictions]``, or the class indices without ``classes``."""
        if self.classes is None:
            return self.predictions
        out: NDArray[Any] = np.asarray(self.classes)[self.predictions]
        return out

    def accuracy(self, labels: ArrayLike) -> float:
        """Share of inputs whose prediction equals ``labels``.

        With ``classes``, ``labels`` are class labels (``"cat"``) or class indices.
        """
        y = as_labels(encode_labels(labels, self.classes), n_samples=self.stage.shape[0])
        return float(np.mean(self.predictions == y))


@dataclass
class PredictResult(RouteResult):
    """Outcome of :meth:`Cascade.predict` on live models: a :class:`RouteResult` plus extras.

    Attributes
    ----------
    probabilities : ndarray of shape (n_samples, n_classes) or None
        Softmax of the answering stage's logits, in the final label space (through
        ``class_map``; an "other" column gets probability 0).
    stage_inputs : ndarray of shape (N,), int64
        How many inputs each stage's model ran on.
    stage_seconds : ndarray of shape (N,)
        Wall-clock time spent inside each stage's model.
    total_seconds : float
        Wall-clock time of the whole call.
    """

    probabilities: FloatArray | None = None
    stage_inputs: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    stage_seconds: FloatArray = field(default_factory=lambda: np.zeros(0))
    total_seconds: float = 0.0

    @property
    def overhead_seconds(self) -> float:
        """Time outside the models: scoring, gathering, scattering and checks."""
        return float(self.total_seconds - self.stage_seconds.sum())


def _warn_out_of_range(stage: Stage, threshold: float, d: StageDecision) -> None:
    """ThresholdRangeWarning when a finite threshold outside the scores sends all of >= 2
    inputs the same way (an "other" gate that still sends some on is not that)."""
    scores = d.scores
    if scores.shape[0] < 2 or not np.isfinite(threshold):
        return
    lo, hi = float(scores.min()), float(scores.max())
    if lo <= threshold <= hi or (threshold < lo and not d.keep.all()):
        return
    name = stage.score if isinstance(stage.score, str) else getattr(stage.score, "__name__", "")
    where, fate, inf = (
        ("above", "all of them move on to the next stage", "+inf")
        if threshold > hi
        else ("below", "all of them stay at this stage", "-inf")
    )
    warnings.warn(
        f"Threshold {threshold:g} of stage {stage.name!r} is {where} every {name} score of the "
        f"{scores.shape[0]} inputs it sees (they range from {lo:.4g} to {hi:.4g}): {fate}. Use "
        f"{inf} if that is meant, or a threshold on this score's scale (calibrate one).",
        ThresholdRangeWarning,
        stacklevel=4,
    )


def _softmax(z: FloatArray) -> FloatArray:
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    out: FloatArray = e / e.sum(axis=1, keepdims=True)
    return out


def stage_probabilities(stage: Stage, z: FloatArray, last: bool = False) -> FloatArray:
    """Softmax of a stage's logits in the final label space (see :class:`PredictResult`).

    The routing columns of a non-final stage are dropped, an "other" column gets probability 0
    and ``class_map`` sums the columns into the final classes.

    Examples
    --------
    >>> from cascadekit import Stage
    >>> p = stage_probabilities(Stage(class_map=[1, 0]), np.array([[0.0, 0.0]]))
    >>> p.tolist()
    [[0.5, 0.5]]
    """
    if not last and stage.routing_columns:
        z = z[:, : z.shape[1] - stage.routing_columns]
    if stage.other_class is not None:
        z = z.copy()
        z[:, stage.other_class % z.shape[1]] = -np.inf
    p = _softmax(z)
    if stage.class_map is None:
        return p
    cmap = np.asarray(stage.class_map, dtype=np.int64)
    valid = cmap >= 0
    width = int(cmap[valid].max()) + 1 if valid.any() else 0
    onehot = np.zeros((cmap.shape[0], width), dtype=p.dtype)
    onehot[np.flatnonzero(valid), cmap[valid]] = 1.0
    out: FloatArray = p @ onehot
    total = out.sum(axis=1, keepdims=True)
    np.divide(out, total, out=out, where=total > 0)
    return out


class RoutingState:
    """Routing of ``n_rows`` inputs through N stages, fed one stage's outputs at a time.

    Parameters
    ----------
    stages : sequence of Stage
        The cascade's stages (their score, temperature, class map and "other" gate).
    thresholds : sequence of N-1 floats
        An input stays at stage k when its score is ``>= thresholds[k]``.
    n_rows : int
        Number of inputs.
    costs : array-like of shape (N,), optional
        Cost of each stage (default 1 each), copied to the result.
    classes : array-like, optional
        Class labels, copied to the result.
    probabilities : bool, default=False
        Also keep the softmax of each answering stage's logits (:meth:`probabilities`).
    warn_range : bool, default=False
        Warn (:class:`~cascadekit.errors.ThresholdRangeWarning`) when a finite threshold is
        outside every score a stage sees.

    Attributes
    ----------
    predictions, stage, stage_scores, fallback : ndarray
        The fields of :class:`RouteResult`, filled in as stages report.
    decided : ndarray of shape (n_rows,), bool
        True once a stage answered the row.
    stage_predictions : ndarray of shape (n_rows, N-1), int64
        Each non-final stage's own answer for the rows it saw (-1 where it did not run), e.g.
        the student's answer on every input, which monitoring compares with the teacher's.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        thresholds: Sequence[float],
        n_rows: int,
        *,
        costs: ArrayLike | None = None,
        classes: ArrayLike | None = None,
        probabilities: bool = False,
        warn_range: bool = False,
    ) -> None:
        self.stages = list(stages)
        n_stages = len(self.stages)
        self.thresholds = tuple(float(t) for t in thresholds)
        if len(self.thresholds) != n_stages - 1:
            raise ParameterError(
                f"Expected {n_stages - 1} threshold(s) for {n_stages} stages; got "
                f"{list(self.thresholds)}."
            )
        n = int(n_rows)
        self.costs = np.ones(n_stages) if costs is None else np.asarray(costs, dtype=np.float64)
        self.classes = None if classes is None else np.asarray(classes)
        self.predictions = np.full(n, -1, dtype=np.int64)
        self.stage = np.full(n, n_stages - 1, dtype=np.int32)
        self.stage_scores = np.full((n, n_stages - 1), np.nan, dtype=np.float64)
        self.stage_predictions = np.full((n, n_stages - 1), -1, dtype=np.int64)
        self.fallback = np.zeros(n, dtype=bool)
        self.decided = np.zeros(n, dtype=bool)
        self.keep_probabilities = bool(probabilities)
        self.warn_range = bool(warn_range)
        self._parts: list[tuple[NDArray[np.int64], FloatArray]] = []
        # per stage: the rows it forwarded, their answers and logits (what a fallback keeps)
        self._forwarded: dict[int, tuple[NDArray[np.int64], NDArray[np.int64], FloatArray]] = {}

    @property
    def n_stages(self) -> int:
        """Number of stages."""
        return len(self.stages)

    @property
    def n_rows(self) -> int:
        """Number of inputs."""
        return int(self.stage.shape[0])

    def pending(self) -> NDArray[np.int64]:
        """Rows no stage has answered yet, in order."""
        return np.flatnonzero(~self.decided).astype(np.int64)

    def update(self, k: int, rows: ArrayLike, outputs: ArrayLike) -> NDArray[np.int64]:
        """Stage ``k``'s outputs for ``rows``; returns the rows to forward to stage ``k + 1``.

        Parameters
        ----------
        k : int
            Stage index.
        rows : array-like of int, shape (m,)
            The rows (indices into ``0..n_rows-1``) the outputs belong to, in output order.
        outputs : array-like of shape (m, n_classes)
            The stage's logits for those rows (the last stage may give labels, shape (m,)).

        Returns
        -------
        ndarray of int64
            The rows whose score is below the threshold (or whose answer is "other"), in
            order; empty for the last stage.
        """
        idx = self._rows(rows)
        if not 0 <= k < self.n_stages:
            raise ParameterError(f"Expected a stage index in [0, {self.n_stages - 1}]; got {k}.")
        st = self.stages[k]
        z = np.asarray(outputs)
        if z.shape[0] != idx.size:
            raise ParameterError(
                f"Expected outputs of stage {st.name!r} for {idx.size} rows; got {z.shape[0]}."
            )
        if k == self.n_stages - 1:
            local = z if z.ndim == 1 else np.argmax(z, axis=1)
            self._answer(idx, st.map_classes(local), k)
            if self.keep_probabilities and idx.size:
                self._parts.append((idx, stage_probabilities(st, z, last=True)))
            return np.zeros(0, dtype=np.int64)
        if idx.size == 0:
            self._forwarded[k] = (idx, idx, np.zeros((0, 0)))
            return idx
        d = st.decide(z, self.thresholds[k])
        if self.warn_range:
            _warn_out_of_range(st, self.thresholds[k], d)
        self.stage_scores[idx, k] = d.scores
        self.stage_predictions[idx, k] = d.predictions
        kept = idx[d.keep]
        self._answer(kept, d.predictions[d.keep], k)
        if self.keep_probabilities and kept.size:
            self._parts.append((kept, stage_probabilities(st, z[d.keep])))
        move = ~d.keep
        forward = idx[move]
        self._forwarded[k] = (forward, d.predictions[move], z[move])
        return forward

    def fall_back(self, k: int, rows: ArrayLike) -> None:
        """Stage ``k`` could not answer ``rows``: they keep the answer of the stage before it.

        The rows must have been forwarded to stage ``k`` by stage ``k - 1``; they get that
        stage's prediction (and probabilities) with ``fallback = True``.
        """
        idx = self._rows(rows)
        if not 1 <= k < self.n_stages or (k - 1) not in self._forwarded:
            raise ParameterError(
                f"Stage {k} can fall back only to a stage before it that forwarded rows to it "
                "(update(k - 1, ...) first); the first stage has nothing to fall back to."
            )
        fwd, preds, logits = self._forwarded[k - 1]
        if idx.size == 0:
            return
        order = np.argsort(fwd, kind="stable")
        pos = order[np.clip(np.searchsorted(fwd, idx, sorter=order), 0, max(fwd.size - 1, 0))]
        if fwd.size == 0 or not np.array_equal(fwd[pos], idx):
            raise ParameterError(
                f"Rows given to fall_back({k}, ...) were not forwarded to stage {k} by stage "
                f"{k - 1}."
            )
        self._answer(idx, preds[pos], k - 1)
        self.fallback[idx] = True
        if self.keep_probabilities:
            self._parts.append((idx, stage_probabilities(self.stages[k - 1], logits[pos])))

    def probabilities(
        self, n_classes: int | None = None, dtype: Any = np.float64
    ) -> FloatArray | None:
        """Softmax of each row's answering stage, in the final label space (None unless the
        state was made with ``probabilities=True``); at least ``n_classes`` columns."""
        if not self.keep_probabilities:
            return None
        width = max([p.shape[1] for _, p in self._parts] + [int(n_classes or 0)])
        out: FloatArray = np.zeros((self.n_rows, width), dtype=dtype)
        for idx, p in self._parts:
            out[idx, : p.shape[1]] = p
        return out

    def compute(self) -> RouteResult:
        """The result: predictions, answering stage, every stage's score, fallback flags."""
        return RouteResult(
            predictions=self.predictions.copy(),
            stage=self.stage.copy(),
            stage_scores=self.stage_scores.copy(),
            costs=self.costs,
            fallback=self.fallback.copy(),
            classes=self.classes,
        )

    def to_columns(self) -> dict[str, NDArray[Any]]:
        """The state as per-row columns (``stage`` is -1 where undecided), to carry it between
        processes; :meth:`from_columns` reads it back."""
        cols: dict[str, NDArray[Any]] = {
            "prediction": self.predictions,
            "stage": np.where(self.decided, self.stage, -1).astype(np.int32),
            "fallback": self.fallback,
        }
        for j in range(self.n_stages - 1):
            cols[f"score_{j}"] = self.stage_scores[:, j]
        return cols

    @classmethod
    def from_columns(
        cls,
        stages: Sequence[Stage],
        thresholds: Sequence[float],
        columns: Mapping[str, ArrayLike],
        **kwargs: Any,
    ) -> RoutingState:
        """A state carried as per-row columns by :meth:`to_columns`."""
        stage = np.asarray(columns["stage"], dtype=np.int32)
        state = cls(stages, thresholds, stage.shape[0], **kwargs)
        state.decided = stage >= 0
        state.stage = np.where(state.decided, stage, state.n_stages - 1).astype(np.int32)
        state.predictions = np.array(columns["prediction"], dtype=np.int64)
        state.fallback = np.array(columns.get("fallback", state.fallback), dtype=bool)
        for j in range(state.n_stages - 1):
            state.stage_scores[:, j] = np.asarray(columns[f"score_{j}"], dtype=np.float64)
        return state

    def _rows(self, rows: ArrayLike) -> NDArray[np.int64]:
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_rows):
            raise ParameterError(
                f"Expected row indices in [0, {self.n_rows - 1}]; got {int(idx.min())} to "
                f"{int(idx.max())}."
            )
        return idx

    def _answer(self, idx: NDArray[np.int64], preds: NDArray[np.int64], k: int) -> None:
        self.predictions[idx] = preds
        self.stage[idx] = k
        self.decided[idx] = True
