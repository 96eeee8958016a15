"""N-stage cascades: one threshold grid per stage, :func:`grid_curve` evaluated with
histograms, reduced to the Pareto front."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from .._validation import (
    as_scores,
    check_costs,
    check_same_samples,
)
from ..errors import InputShapeError, ParameterError
from ..scores import (
    separating_threshold_of,
)
from ._common import ACCURACY_TOL, Float64Array, IntArray, as_values, direction_sign
from .exact import Curve

__all__ = ["grid_curve", "pareto_front", "threshold_grid"]


#: Largest number of threshold combinations :func:`grid_curve` evaluates.
MAX_GRID_CELLS = 4_000_000


def pareto_front(
    costs: ArrayLike,
    accuracies: ArrayLike,
    *,
    higher_is_better: bool = True,
    atol: float = ACCURACY_TOL,
) -> IntArray:
    """Indices of the Pareto-optimal points, sorted by cost ascending.

    Points are ordered by cost ascending (then best accuracy first, then index); a point is kept
    when its accuracy exceeds that of every point before it by more than ``atol``. So a point is
    dropped when another one costs no more and is at least as good (the first of exact
    duplicates survives).

    Examples
    --------
    >>> pareto_front([1, 2, 2, 3, 4], [0.5, 0.7, 0.6, 0.7, 0.9])
    array([0, 1, 4])
    """
    c = np.asarray(costs, dtype=np.float64)
    a = np.asarray(accuracies, dtype=np.float64)
    if c.ndim != 1 or a.ndim != 1 or c.shape[0] != a.shape[0]:
        raise InputShapeError(
            f"Expected costs and accuracies as two 1-D arrays of equal length; got shapes "
            f"{c.shape} and {a.shape}."
        )
    if c.shape[0] == 0:
        return np.empty(0, dtype=np.intp)
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(a))):
        raise ParameterError("Expected finite costs and accuracies; got NaN or inf.")
    sa = direction_sign(higher_is_better) * a
    order = np.lexsort((np.arange(c.shape[0]), -sa, c))
    sorted_acc = sa[order]
    best_before = np.maximum.accumulate(np.concatenate([[-np.inf], sorted_acc[:-1]]))
    keep = sorted_acc > best_before + atol
    keep[0] = True
    out: IntArray = order[keep]
    return out


def threshold_grid(
    scores: ArrayLike, n_thresholds: int = 50, *, unique: bool = True
) -> Float64Array:
    """Candidate thresholds for one stage, at evenly spaced shares of inputs sent on, ascending.

    The one threshold grid of cascadekit (N-stage curves, calibration's N-stage search and
    every guarantee use it). For each level ``k / n_thresholds``, ``k = 0, ..., n_thresholds -
    1``, it takes the score at position ``floor(k * n / n_thresholds)`` of the ``n`` sorted
    scores and moves it to the separating threshold below its block of tied scores
    (:func:`~cascadekit.scores.separating_threshold_of`: the same inputs kept, no threshold on
    a score), so at most that share of the inputs is sent on; the last value is ``+inf``
    (level 1: every input sent on). Level 0 gives ``-inf`` (every input kept). It uses the
    scores only, never labels, so a grid computed on another split is fixed in advance.

    The guarantees (:func:`cascadekit.calibration.guaranteed_threshold`) test a grid safest
    first: they take this grid (or the one passed as ``grid=``) without ``+inf``, descending.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
    n_thresholds : int, default=50
        Number of levels below 1; the grid has at most ``n_thresholds + 1`` values.
    unique : bool, default=True
        Drop repeated thresholds (from ties or fewer scores than levels). With False the grid
        has exactly ``n_thresholds + 1`` values, value ``k`` at level ``k / n_thresholds``, so
        grids of several stages line up level by level (the N-stage guarantee's path).

    Returns
    -------
    ndarray of shape (n_grid,)
        Ascending, from ``-inf`` to ``+inf``.

    Examples
    --------
    >>> threshold_grid([5.0, 1.0, 3.0, 3.0], n_thresholds=4)
    array([-inf,   2.,   4.,  inf])
    >>> threshold_grid([5.0, 1.0, 3.0, 3.0], n_thresholds=4, unique=False)
    array([-inf,   2.,   2.,   4.,  inf])
    """
    s = as_scores(scores, "scores")
    if isinstance(n_thresholds, bool) or not isinstance(n_thresholds, (int, np.integer)):
        raise ParameterError(f"Expected n_thresholds to be an integer >= 1; got {n_thresholds!r}.")
    if n_thresholds < 1:
        raise ParameterError(
            f"Expected n_thresholds >= 1; got {n_thresholds}. Try n_thresholds=50."
        )
    srt = np.sort(s)
    n = srt.shape[0]
    levels = np.arange(int(n_thresholds), dtype=np.float64) / int(n_thresholds)
    idx = np.minimum(np.floor(levels * n).astype(np.int64), n - 1)
    out: Float64Array = np.append(separating_threshold_of(srt, srt[idx]), np.inf)
    if unique:
        out = np.unique(out)
    return out


def _explicit_grid(grid: ArrayLike, k: int) -> Float64Array:
    g = np.asarray(grid, dtype=np.float64).reshape(-1)
    if np.isnan(g).any():
        raise ParameterError(
            f"Expected the thresholds of grids[{k}] to be numbers or +-inf; got NaN. Remove it."
        )
    out: Float64Array = np.unique(np.concatenate([[-np.inf], g, [np.inf]]))
    return out


def _grid_sums(
    bins: Sequence[IntArray], lens: Sequence[int], values: Sequence[Float64Array]
) -> tuple[Float64Array, Float64Array]:
    """Per stage, the count and value sum of the inputs it answers, for every grid cell.

    ``bins[k][i]`` is how many thresholds of stage ``k`` are ``<= score_k[i]``; input ``i`` stays
    at stage ``k`` under threshold index ``j`` iff ``j < bins[k][i]``. Returns arrays of shape
    ``(N, *lens)``.
    """
    n_scores = len(lens)
    full = tuple(lens)
    counts = np.zeros((n_scores + 1, *full), dtype=np.float64)
    sums = np.zeros((n_scores + 1, *full), dtype=np.float64)
    for k in range(n_scores + 1):
        dims = min(k + 1, n_scores)  # score dimensions that decide stage k
        shape = tuple(lens[m] + 1 for m in range(dims))
        flat = np.ravel_multi_index(tuple(bins[m] for m in range(dims)), shape)
        size = int(np.prod(shape))
        for out, w in ((counts, None), (sums, values[k])):
            h = np.bincount(flat, weights=w, minlength=size).astype(np.float64).reshape(shape)
            for m in range(dims):
                h = np.cumsum(h, axis=m)
                if m < k:  # moved on from stage m: bins <= j
                    h = np.take(h, np.arange(lens[m]), axis=m)
                else:  # stays at stage k: bins > j
                    total = np.take(h, [lens[m]], axis=m)
                    h = total - np.take(h, np.arange(lens[m]), axis=m)
            out[k] = h.reshape(h.shape + (1,) * (n_scores - dims))
    return counts, sums


def grid_curve(
    stage_scores: Sequence[ArrayLike],
    stage_values: Sequence[ArrayLike],
    costs: ArrayLike | None = None,
    *,
    n_thresholds: int = 50,
    higher_is_better: bool = True,
    pareto: bool = True,
    grids: Sequence[ArrayLike] | None = None,
) -> Curve:
    """Curve of an N-stage cascade over a grid of thresholds, reduced to its Pareto front.

    Each non-final stage gets the thresholds :func:`threshold_grid` (``n_thresholds`` evenly
    spaced shares of its scores sent on, from ``-inf`` to ``+inf``); every combination is
    evaluated exactly (the same routing as :func:`cascadekit.cascade.assign_stages`) from one
    multi-dimensional histogram per stage and cumulative sums, in O(n N + N G^(N-1)) for G
    thresholds per stage.

    Parameters
    ----------
    stage_scores : sequence of N-1 arrays of shape (n_samples,)
        Routing score of each non-final stage (higher = keep at that stage).
    stage_values : sequence of N arrays of shape (n_samples,)
        Per-sample value (e.g. correctness) of each stage's answer.
    costs : array-like of shape (N,), optional
        Cost per input of each stage; default all 1.
    n_thresholds : int, default=50
        Levels per stage (:func:`threshold_grid`).
    higher_is_better : bool, default=True
    pareto : bool, default=True
        Keep only the Pareto set of ``(relative_cost, accuracy)``, plus the all-first-stage and
        the all-last-stage points. With False every grid point is returned.
    grids : sequence of N-1 array-likes, optional
        Each stage's thresholds instead of :func:`threshold_grid` (``n_thresholds`` is then
        unused); ``-inf`` and ``+inf`` are added when missing. Calibration evaluates its
        search grid this way.

    Returns
    -------
    Curve
        Sorted by relative cost; the first point is the all-first-stage one, the last the
        all-last-stage one (accuracies exactly the means of the first and last values).
        ``thresholds`` has shape (n_points, N-1), ``stage_shares`` (n_points, N).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> s0, s1 = rng.random(200), rng.random(200)
    >>> values = [s0 > 0.3, s1 > 0.2, rng.random(200) < 0.9]
    >>> c = grid_curve([s0, s1], values, costs=[1, 2, 4], n_thresholds=20)
    >>> c.stage_shares[0], c.stage_shares[-1]
    (array([1., 0., 0.]), array([0., 0., 1.]))
    >>> bool(np.all(np.diff(c.accuracy[:-1]) > 0))
    True
    """
    if isinstance(stage_scores, np.ndarray) and stage_scores.ndim == 1:
        stage_scores = [stage_scores]
    scores_l = list(stage_scores)
    values_l = list(stage_values)
    n_stages = len(values_l)
    if n_stages < 2 or len(scores_l) != n_stages - 1:
        raise ParameterError(
            f"Expected N >= 2 stage_values and N-1 stage_scores (the last stage needs no "
            f"score); got {len(values_l)} values and {len(scores_l)} scores."
        )
    ss = [as_scores(s, f"stage_scores[{k}]") for k, s in enumerate(scores_l)]
    vv = [as_values(v, f"stage_values[{k}]") for k, v in enumerate(values_l)]
    check_same_samples(
        [(f"stage_scores[{k}]", s.shape[0]) for k, s in enumerate(ss)]
        + [(f"stage_values[{k}]", v.shape[0]) for k, v in enumerate(vv)]
    )
    c = check_costs(costs, n_stages)
    if grids is None:
        grid_l = [threshold_grid(s, n_thresholds) for s in ss]
    else:
        grid_l = [_explicit_grid(g, k) for k, g in enumerate(grids)]
        if len(grid_l) != len(ss):
            raise ParameterError(
                f"Expected one threshold grid per non-final stage ({len(ss)}); got {len(grid_l)}."
            )
    lens = [g.shape[0] for g in grid_l]
    cells = int(np.prod(lens))
    if cells > MAX_GRID_CELLS:
        raise ParameterError(
            f"A grid of {' x '.join(map(str, lens))} = {cells:,} threshold combinations is "
            f"too large (limit {MAX_GRID_CELLS:,}). Lower n_thresholds."
        )
    n = ss[0].shape[0]
    bins = [np.searchsorted(g, s, side="right") for g, s in zip(grid_l, ss, strict=True)]
    counts, sums = _grid_sums(bins, lens, vv)
    shares = counts.reshape(n_stages, cells).T / n
    acc = sums.reshape(n_stages, cells).sum(axis=0) / n
    rel = shares @ np.cumsum(c) / c[-1]
    first, last = 0, cells - 1  # all thresholds -inf / all +inf
    if pareto:
        idx = pareto_front(rel, acc, higher_is_better=higher_is_better)
        idx = np.unique(np.concatenate([[first], idx, [last]]))
    else:
        idx = np.arange(cells)
    sign = direction_sign(higher_is_better)
    idx = idx[np.lexsort((sign * acc[idx], idx == last, idx != first, rel[idx]))]
    mesh = np.stack(np.meshgrid(*grid_l, indexing="ij"), axis=-1).reshape(cells, -1)
    accuracy = acc[idx]
    accuracy[idx == first] = float(np.mean(vv[0]))
    accuracy[idx == last] = float(np.mean(vv[-1]))
    sh = shares[idx]
    return Curve(
        thresholds=mesh[idx],
        teacher_share=sh[:, -1].copy(),
        accuracy=accuracy,
        relative_cost=rel[idx],
        stage_shares=sh,
        costs=c,
        higher_is_better=higher_is_better,
    )
