"""Pools of models: every 2- and 3-model cascade, their Pareto front against the single models
and the compute saving at equal accuracy (Lebovitz et al. 2023)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._validation import (
    as_labels,
    as_logits,
    check_same_samples,
    check_temperature,
)
from ..errors import InfeasibleTargetError, InputShapeError, ParameterError
from ..scores import (
    get_score,
)
from ._common import ACCURACY_TOL, Float64Array, accuracy_tol
from .exact import Curve, cascade_curve, correctness
from .grid import grid_curve, pareto_front

__all__ = [
    "FrontierPoint",
    "PoolFrontier",
    "SavingAtEqualAccuracy",
    "compute_saving_at_equal_accuracy",
    "pool_frontier",
]


@dataclass(frozen=True)
class FrontierPoint:
    """One operating point of a model pool: a single model or a cascade of models.

    Attributes
    ----------
    models : tuple of str
        The models run, cheapest first (one name for a single model).
    thresholds : tuple of float
        One threshold per non-final model (empty for a single model).
    cost : float
        Mean absolute cost per input (the sum of the costs of the models run).
    accuracy : float
    stage_shares : tuple of float
        Share of inputs answered by each model.
    """

    models: tuple[str, ...]
    thresholds: tuple[float, ...]
    cost: float
    accuracy: float
    stage_shares: tuple[float, ...]

    def to_dict(self, json_safe: bool = False) -> dict[str, Any]:
        """The point as a plain dict (non-finite thresholds as None when ``json_safe``)."""
        ths = [None if json_safe and not math.isfinite(t) else t for t in self.thresholds]
        return {
            "models": list(self.models),
            "thresholds": ths,
            "cost": self.cost,
            "accuracy": self.accuracy,
            "stage_shares": list(self.stage_shares),
        }


@dataclass(eq=False)
class SavingAtEqualAccuracy:
    """Compute saving of a cascade front over a reference front at equal accuracy.

    Attributes
    ----------
    levels : ndarray
        Accuracy levels, evenly spaced over the reference front's range.
    ratio : ndarray
        ``C_ref(a) / C_cascade(a)`` at each level, with ``C_X(a) = min{cost : acc >= a}``.
    mean, max : float
        Mean and maximum of ``ratio``.
    per_model : dict
        For each reference front point (by name): its cost over the cheapest cascade cost
        reaching its accuracy.
    """

    levels: Float64Array
    ratio: Float64Array
    mean: float
    max: float
    per_model: dict[str, float] = field(default_factory=dict)


def _front_arrays(costs: ArrayLike, accs: ArrayLike, name: str) -> tuple[Float64Array, ...]:
    c = np.asarray(costs, dtype=np.float64)
    a = np.asarray(accs, dtype=np.float64)
    if c.ndim != 1 or c.shape != a.shape or c.shape[0] == 0:
        raise InputShapeError(
            f"Expected the {name} costs and accuracies as non-empty 1-D arrays of equal length; "
            f"got shapes {c.shape} and {a.shape}."
        )
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(a))) or np.any(c <= 0):
        raise ParameterError(
            f"Expected positive finite costs and finite accuracies on the {name} front."
        )
    idx = pareto_front(c, a)
    return c[idx], a[idx]


def _min_cost_reaching(front_c: Float64Array, front_a: Float64Array, a: Float64Array) -> Any:
    """Step interpolation: cost of the cheapest front point with accuracy >= a (inf if none)."""
    j = np.searchsorted(front_a, a - ACCURACY_TOL * np.maximum(1.0, np.abs(a)), side="left")
    padded = np.append(front_c, np.inf)
    return padded[j]


def compute_saving_at_equal_accuracy(
    reference_costs: ArrayLike,
    reference_accuracies: ArrayLike,
    cascade_costs: ArrayLike,
    cascade_accuracies: ArrayLike,
    *,
    n_levels: int = 1001,
    names: Sequence[str] | None = None,
) -> SavingAtEqualAccuracy:
    """How much cheaper the cascade front is than the reference front at equal accuracy.

    Both inputs are reduced to their Pareto fronts. For ``n_levels`` accuracy levels ``a``
    evenly spaced between the lowest and highest accuracy of the reference front,
    ``r(a) = C_ref(a) / C_cascade(a)`` with ``C_X(a) = min{cost : acc >= a}`` (step
    interpolation). ``names`` labels the reference points for ``per_model``.

    Examples
    --------
    >>> s = compute_saving_at_equal_accuracy([1, 10], [0.7, 0.9], [1, 4, 10], [0.7, 0.9, 0.91])
    >>> round(s.mean, 2), s.max, s.per_model
    (2.5, 2.5, {'0': 1.0, '1': 2.5})
    """
    if isinstance(n_levels, bool) or not isinstance(n_levels, (int, np.integer)) or n_levels < 2:
        raise ParameterError(f"Expected n_levels to be an integer >= 2; got {n_levels!r}.")
    rc_all = np.asarray(reference_costs, dtype=np.float64)
    if names is not None and len(names) != rc_all.reshape(-1).shape[0]:
        raise ParameterError(
            f"Expected one name per reference point ({rc_all.size}); got {len(names)}."
        )
    ref_c, ref_a = _front_arrays(reference_costs, reference_accuracies, "reference")
    cas_c, cas_a = _front_arrays(cascade_costs, cascade_accuracies, "cascade")
    if cas_a[-1] < ref_a[-1] - accuracy_tol(float(ref_a[-1])):
        raise InfeasibleTargetError(
            f"The cascade front reaches accuracy {cas_a[-1]:.6g} at most, below the reference "
            f"front's {ref_a[-1]:.6g}. Include the single models among the cascade points.",
            best=float(cas_a[-1]),
        )
    levels = np.linspace(ref_a[0], ref_a[-1], int(n_levels))
    ratio = _min_cost_reaching(ref_c, ref_a, levels) / _min_cost_reaching(cas_c, cas_a, levels)
    per_model: dict[str, float] = {}
    ref_idx = pareto_front(rc_all, np.asarray(reference_accuracies, dtype=np.float64))
    labels = [str(i) for i in range(rc_all.size)] if names is None else list(names)
    for i in ref_idx:
        a_i = np.asarray([float(np.asarray(reference_accuracies, dtype=np.float64)[i])])
        per_model[labels[i]] = float(rc_all[i] / _min_cost_reaching(cas_c, cas_a, a_i)[0])
    return SavingAtEqualAccuracy(
        levels=levels,
        ratio=ratio,
        mean=float(np.mean(ratio)),
        max=float(np.max(ratio)),
        per_model=per_model,
    )


@dataclass(eq=False)
class PoolFrontier:
    """Single models and every cascade of a pool, their Pareto fronts and the saving.

    Attributes
    ----------
    names : list of str
        Model names sorted by cost (cheapest first); the order of every cascade.
    costs, accuracies : ndarray
        Per-model absolute cost and accuracy, in that order.
    singles : list of FrontierPoint
        Every single model.
    curves : dict
        ``curves[(name_i, name_j, ...)]``: each cascade's :class:`Curve` (costs relative to its
        last model; absolute cost = ``relative_cost * curve.costs[-1]``). Exact for 2 models,
        the Pareto set of a threshold grid for 3 or more.
    single_front : list of FrontierPoint
        Pareto front of the single models, by cost.
    cascade_front : list of FrontierPoint
        Pareto front of all cascade points together with the single models, by cost.
    saving : SavingAtEqualAccuracy
        :func:`compute_saving_at_equal_accuracy` of the cascade front over the single front.
    """

    names: list[str]
    costs: Float64Array
    accuracies: Float64Array
    singles: list[FrontierPoint]
    curves: dict[tuple[str, ...], Curve]
    single_front: list[FrontierPoint]
    cascade_front: list[FrontierPoint]
    saving: SavingAtEqualAccuracy

    def compute_saving_at_equal_accuracy(self, n_levels: int = 1001) -> SavingAtEqualAccuracy:
        """Recompute :attr:`saving` on ``n_levels`` accuracy levels."""
        return compute_saving_at_equal_accuracy(
            self.costs,
            self.accuracies,
            [p.cost for p in self.cascade_front],
            [p.accuracy for p in self.cascade_front],
            n_levels=n_levels,
            names=self.names,
        )

    def to_dict(self, json_safe: bool = False) -> dict[str, Any]:
        """Plain-dict summary: singles, both fronts and the saving (curves left out)."""
        return {
            "singles": [p.to_dict(json_safe) for p in self.singles],
            "single_front": [p.to_dict(json_safe) for p in self.single_front],
            "cascade_front": [p.to_dict(json_safe) for p in self.cascade_front],
            "saving": {
                "mean": self.saving.mean,
                "max": self.saving.max,
                "per_model": dict(self.saving.per_model),
            },
        }


def pool_frontier(
    outputs: Sequence[ArrayLike],
    labels: ArrayLike,
    costs: ArrayLike,
    names: Sequence[str] | None = None,
    *,
    score: str | Callable[..., Any] = "max_softmax",
    temperature: float = 1.0,
    max_depth: int = 3,
    n_thresholds: int = 50,
    top_k: int = 1,
    n_levels: int = 1001,
) -> PoolFrontier:
    """Every cascade of a pool of models against the single models (Lebovitz et al. 2023).

    Models are sorted by cost. Every 2-model cascade ``i < j`` gets its exact curve
    (:func:`cascade_curve`), every cascade of 3 (up to ``max_depth``) models a grid curve
    (:func:`grid_curve`). An input stays at a model when its ``score`` (higher = more confident
    = keep) is ``>= threshold``. A cascade's cost per input is the sum of the costs of the
    models it ran.

    Parameters
    ----------
    outputs : sequence of K arrays of shape (n_samples, n_classes)
        Logits of every model on the same inputs.
    labels : array-like of shape (n_samples,)
    costs : array-like of shape (K,)
        Absolute cost per input of each model (e.g. FLOPs), positive.
    names : sequence of K str, optional
        Default ``model0``, ``model1``, ...
    score : str or callable, default="max_softmax"
        Routing score (see :mod:`cascadekit.scores`).
    temperature : float, default=1.0
    max_depth : int, default=3
        Longest cascade considered (1 = single models only); capped at the number of models.
    n_thresholds : int, default=50
        Thresholds per stage for cascades of 3 or more models.
    top_k : int, default=1
        Correctness is top-k.
    n_levels : int, default=1001
        Accuracy levels of the saving.

    Returns
    -------
    PoolFrontier

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 300)
    >>> outs = [np.eye(3)[y] * k + rng.normal(size=(300, 3)) for k in (0.5, 1.5, 3.0)]
    >>> pf = pool_frontier(outs, y, costs=[1, 4, 16], names=["s", "m", "l"])
    >>> sorted(pf.curves)
    [('m', 'l'), ('s', 'l'), ('s', 'm'), ('s', 'm', 'l')]
    >>> pf.cascade_front[0].models, pf.single_front[-1].models
    (('s',), ('l',))
    >>> pf.saving.mean >= 1.0
    True
    """
    outs = list(outputs)
    k_models = len(outs)
    if k_models < 2:
        raise ParameterError(
            f"Expected outputs of at least 2 models; got {k_models}. A pool needs a choice."
        )
    cost_arr = np.asarray(costs, dtype=np.float64).reshape(-1)
    if cost_arr.shape[0] != k_models or not np.all(np.isfinite(cost_arr)) or np.any(cost_arr <= 0):
        raise ParameterError(
            f"Expected one positive, finite cost per model ({k_models}); got "
            f"{cost_arr.tolist()}. Pass each model's FLOPs (or seconds) per input."
        )
    nm = [f"model{i}" for i in range(k_models)] if names is None else [str(x) for x in names]
    if len(nm) != k_models or len(set(nm)) != k_models:
        raise ParameterError(f"Expected {k_models} distinct model names; got {list(names or [])}.")
    if isinstance(max_depth, bool) or not isinstance(max_depth, (int, np.integer)):
        raise ParameterError(f"Expected max_depth to be an integer; got {max_depth!r}.")
    if max_depth < 1:
        raise ParameterError(
            f"Expected max_depth >= 1 (1 = single models only); got {max_depth}. Lebovitz et "
            "al. find little gain beyond 3."
        )
    max_depth = min(int(max_depth), k_models)
    check_temperature(temperature)
    score_fn = get_score(score)
    logits = [as_logits(o, f"outputs[{i}]") for i, o in enumerate(outs)]
    check_same_samples([(f"outputs[{i}]", z.shape[0]) for i, z in enumerate(logits)])
    y = as_labels(labels, n_samples=logits[0].shape[0])

    order = np.argsort(cost_arr, kind="stable")
    logits = [logits[i] for i in order]
    cost_arr = cost_arr[order]
    nm = [nm[i] for i in order]
    values = [correctness(z, y, top_k=top_k).astype(np.float64) for z in logits]
    accs = np.array([float(np.mean(v)) for v in values])
    stage_scores = [np.asarray(score_fn(z, temperature), dtype=np.float64) for z in logits[:-1]]

    singles = [
        FrontierPoint((nm[i],), (), float(cost_arr[i]), float(accs[i]), (1.0,))
        for i in range(k_models)
    ]
    curves: dict[tuple[str, ...], Curve] = {}
    # candidate points: singles first, so that a duplicate point keeps its single-model label
    cand_cost = [cost_arr]
    cand_acc = [accs]
    cand_src: list[tuple[tuple[int, ...], Curve | None]] = [((i,), None) for i in range(k_models)]
    cand_row = [np.arange(k_models)]
    cand_id = [np.arange(k_models)]
    for depth in range(2, int(max_depth) + 1):
        for combo in itertools.combinations(range(k_models), depth):
            cc = cost_arr[list(combo)]
            if depth == 2:
                i, j = combo
                curve = cascade_curve(stage_scores[i], values[i], values[j], costs=cc)
            else:
                curve = grid_curve(
                    [stage_scores[m] for m in combo[:-1]],
                    [values[m] for m in combo],
                    costs=cc,
                    n_thresholds=n_thresholds,
                )
            curves[tuple(nm[m] for m in combo)] = curve
            src = len(cand_src)
            cand_src.append((combo, curve))
            cand_cost.append(curve.relative_cost * cc[-1])
            cand_acc.append(curve.accuracy)
            cand_row.append(np.arange(len(curve)))
            cand_id.append(np.full(len(curve), src))

    all_cost = np.concatenate(cand_cost)
    all_acc = np.concatenate(cand_acc)
    all_row = np.concatenate(cand_row)
    all_id = np.concatenate(cand_id)

    def point(ix: int) -> FrontierPoint:
        combo, curve = cand_src[int(all_id[ix])]
        if curve is None:
            return singles[combo[0]]
        r = int(all_row[ix])
        th = curve.thresholds[r]
        shares = (
            curve.stage_shares[r]
            if curve.stage_shares is not None
            else np.array([1.0 - curve.teacher_share[r], curve.teacher_share[r]])
        )
        return FrontierPoint(
            models=tuple(nm[m] for m in combo),
            thresholds=tuple(float(t) for t in th),
            cost=float(all_cost[ix]),
            accuracy=float(all_acc[ix]),
            stage_shares=tuple(float(s) for s in shares),
        )

    single_front = [singles[int(i)] for i in pareto_front(cost_arr, accs)]
    cascade_front = [point(int(i)) for i in pareto_front(all_cost, all_acc)]
    saving = compute_saving_at_equal_accuracy(
        cost_arr,
        accs,
        [p.cost for p in cascade_front],
        [p.accuracy for p in cascade_front],
        n_levels=n_levels,
        names=nm,
    )
    return PoolFrontier(
        names=nm,
        costs=cost_arr,
        accuracies=accs,
        singles=singles,
        curves=curves,
        single_front=single_front,
        cascade_front=cascade_front,
        saving=saving,
    )
