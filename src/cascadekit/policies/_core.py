"""Learned routing policies: the reduction of ``E[loss] + lambda * E[cost]`` to weighted binary
classification, node by node from the last one backwards (Bolukbasi et al. 2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import as_correct, check_finite
from ..curves import Curve
from ..errors import InputShapeError, ParameterError, SampleCountError
from ._classifiers import Decider, fit_decider
from ._graph import PolicyGraph

__all__ = [
    "LearnedPolicy",
    "PolicyRoute",
    "default_lambdas",
    "lambda_sweep",
    "oracle_route",
    "policy_curve",
    "wbc_targets",
]

Float64Array = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def wbc_targets(cost_take: ArrayLike, cost_rest: ArrayLike) -> tuple[BoolArray, Float64Array]:
    """Labels and weights of one weighted binary classification (WBC) problem.

    The label says "take this option" when taking it costs no more than the alternative; the
    weight is what a wrong decision costs, ``|cost_take - cost_rest|``. Minimising the
    weighted 0/1 error of a classifier on these targets minimises the node's contribution to
    ``E[loss] + lambda * E[cost]`` exactly, because
    ``g * cost_take + (1 - g) * cost_rest = min(cost_take, cost_rest) + weight * [g != label]``.

    Examples
    --------
    >>> wbc_targets([0.0, 1.0, 1.0], [0.3, 0.3, 1.3])   # exit if exiting costs no more
    (array([ True, False,  True]), array([0.3, 0.7, 0.3]))
    """
    a = np.asarray(cost_take, dtype=np.float64)
    b = np.asarray(cost_rest, dtype=np.float64)
    label: BoolArray = a <= b
    weight: Float64Array = np.abs(a - b)
    return label, weight


# ----------------------------------------------------------------------------------------------
# per-input outcome


@dataclass
class PolicyRoute:
    """Where each input exits and what it cost.

    Attributes
    ----------
    exit_node : ndarray of shape (n_samples,), int32
        The node whose prediction answers the input (for a chain: the stage index, as in
        :class:`cascadekit.RouteResult`).
    visited : ndarray of shape (n_samples, n_nodes), bool
        The nodes the input ran.
    graph : PolicyGraph
    """

    exit_node: NDArray[np.int32]
    visited: BoolArray
    graph: PolicyGraph

    @property
    def cost_per_input(self) -> Float64Array:
        """Sum of the costs of the nodes each input ran."""
        return self.graph.path_costs(self.exit_node, self.visited)

    @property
    def relative_cost(self) -> float:
        """Mean cost per input divided by the graph's reference cost (the teacher alone)."""
        assert self.graph.reference_cost is not None
        return float(self.cost_per_input.mean() / self.graph.reference_cost)

    @property
    def node_shares(self) -> Float64Array:
        """Share of inputs answered by each node."""
        n = max(self.exit_node.shape[0], 1)
        out: Float64Array = np.bincount(self.exit_node, minlength=self.graph.n_nodes) / n
        return out

    @property
    def teacher_share(self) -> float:
        """Share of inputs answered by the last node."""
        return float(self.node_shares[-1])

    def value(self, correct: ArrayLike) -> Float64Array:
        """Per-input value (correctness) of the answering node; ``correct`` is (n_nodes, n)."""
        c = np.asarray(correct, dtype=np.float64)
        if c.shape != (self.graph.n_nodes, self.exit_node.shape[0]):
            raise InputShapeError(
                f"Expected correct of shape ({self.graph.n_nodes}, {self.exit_node.shape[0]}), "
                f"one row per node; got {c.shape}."
            )
        out: Float64Array = c[self.exit_node, np.arange(self.exit_node.shape[0])]
        return out

    def accuracy(self, correct: ArrayLike) -> float:
        """Mean value of the answering node (accuracy for 0/1 correctness)."""
        return float(self.value(correct).mean())

    def predictions(self, node_predictions: ArrayLike) -> NDArray[np.int64]:
        """The answering node's prediction; ``node_predictions`` is (n_nodes, n)."""
        p = np.asarray(node_predictions)
        out: NDArray[np.int64] = p[self.exit_node, np.arange(self.exit_node.shape[0])].astype(
            np.int64
        )
        return out


def _follow(
    graph: PolicyGraph, n: int, choose: Callable[[int, NDArray[np.intp]], NDArray[np.intp]]
) -> PolicyRoute:
    """Route ``n`` inputs from node 0; ``choose(k, rows)`` gives 0 (exit) or 1 + child index."""
    exit_node = np.full(n, -1, dtype=np.int32)
    visited = np.zeros((n, graph.n_nodes), dtype=bool)
    at: list[NDArray[np.intp]] = [np.zeros(0, dtype=np.intp) for _ in range(graph.n_nodes)]
    at[0] = np.arange(n, dtype=np.intp)
    for k in range(graph.n_nodes):
        rows = at[k]
        if rows.size == 0:
            continue
        visited[rows, k] = True
        ch = graph.children[k]
        if not ch:
            exit_node[rows] = k
            continue
        opt = choose(k, rows)
        exit_node[rows[opt == 0]] = k
        for j, c in enumerate(ch):
            moving = rows[opt == j + 1]
            if moving.size:
                at[c] = np.concatenate([at[c], moving])
    return PolicyRoute(exit_node=exit_node, visited=visited, graph=graph)


# ----------------------------------------------------------------------------------------------
# inputs


def _as_graph(graph: PolicyGraph | ArrayLike) -> PolicyGraph:
    if isinstance(graph, PolicyGraph):
        return graph
    return PolicyGraph.chain(graph)


def _as_correct_matrix(correct: Any, graph: PolicyGraph) -> Float64Array:
    rows = [correct[k] for k in range(len(correct))]
    if len(rows) != graph.n_nodes:
        raise ParameterError(
            f"Expected the correctness of every node ({graph.n_nodes}); got {len(rows)}. Pass "
            "one array per node, in node order."
        )
    out = []
    for k, r in enumerate(rows):
        a = np.asarray(r)
        if a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer):
            out.append(as_correct(a, f"correct[{k}]").astype(np.float64))
        else:
            a = np.asarray(a, dtype=np.float64)
            if a.ndim != 1:
                raise InputShapeError(
                    f"Expected correct[{k}] of shape (n_samples,); got {a.shape}."
                )
            check_finite(a, f"correct[{k}]")
            if a.min() < 0 or a.max() > 1:
                raise ParameterError(
                    f"Expected correct[{k}] in [0, 1] (1 = right, loss = 1 - correct); got values "
                    f"from {a.min():g} to {a.max():g}."
                )
            out.append(a)
    n = {r.shape[0] for r in out}
    if len(n) != 1:
        raise SampleCountError(
            f"Expected every node's correctness to cover the same samples; got sizes {sorted(n)}."
        )
    return np.vstack(out)


def _as_features(features: Any, graph: PolicyGraph, n: int | None) -> list[Float64Array | None]:
    if isinstance(features, np.ndarray) and graph.n_nodes == 2:
        features = [features, None]
    feats = list(features)
    if len(feats) == graph.n_nodes - 1 and graph.terminal[-1]:
        feats = [*feats, None]
    if len(feats) != graph.n_nodes:
        raise ParameterError(
            f"Expected features for each of the {graph.n_nodes} nodes (None for nodes without "
            f"children); got {len(feats)}."
        )
    out: list[Float64Array | None] = []
    for k, f in enumerate(feats):
        if graph.terminal[k]:
            out.append(None)
            continue
        if f is None:
            raise ParameterError(
                f"Node {k} ({graph.names[k]!r}) decides where inputs go, so it needs features; "
                "got None. Pass e.g. logit_features(logits of that node)."
            )
        a = np.asarray(f, dtype=np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise InputShapeError(
                f"Expected features of node {k} of shape (n_samples, n_features); got {a.shape}."
            )
        check_finite(a, f"features of node {k}")
        if n is not None and a.shape[0] != n:
            raise SampleCountError(
                f"Expected {n} rows of features for node {k} (one per sample); got {a.shape[0]}."
            )
        n = a.shape[0]
        out.append(a)
    return out


def _check_lam(lam: float) -> float:
    v = float(lam)
    if not math.isfinite(v) or v < 0:
        raise ParameterError(
            f"Expected lam (the price of one unit of reference cost, in errors) to be a finite "
            f"number >= 0; got {lam!r}. lam=0 ignores cost; larger lam routes more cheaply."
        )
    return v


# ----------------------------------------------------------------------------------------------
# the oracle


def oracle_route(graph: PolicyGraph | ArrayLike, correct: Any, lam: float = 0.0) -> PolicyRoute:
    """The hindsight policy: each input takes the path minimising ``loss + lam * cost``.

    Ties go to the earlier option (exit before moving on, cheaper child first), so at
    ``lam=0`` each input exits at the first node on the cheapest path that answers it right,
    and at the first node if none does (Bolukbasi et al.'s oracle). This is what
    :class:`LearnedPolicy` gives with a perfect classifier.

    Examples
    --------
    >>> correct = [[1, 0, 0, 0], [1, 1, 0, 1], [1, 1, 1, 0]]
    >>> oracle_route([1, 3, 10], correct).exit_node
    array([0, 1, 2, 1], dtype=int32)
    """
    g = _as_graph(graph)
    c = _as_correct_matrix(correct, g)
    lam_v = _check_lam(lam)
    n = c.shape[1]
    ref = g.reference_cost or 1.0
    cost = np.asarray(g.costs) / ref
    value: dict[int, Float64Array] = {}
    choice: dict[int, NDArray[np.intp]] = {}
    for k in range(g.n_nodes - 1, -1, -1):
        loss = 1.0 - c[k]
        ch = g.children[k]
        if not ch:
            value[k] = loss
            continue
        opts = np.vstack([loss] + [lam_v * cost[j] + value[j] for j in ch])
        best = np.argmin(opts, axis=0)  # first minimum: the earlier option on ties
        choice[k] = best.astype(np.intp)
        value[k] = opts[best, np.arange(n)]
    return _follow(g, n, lambda k, rows: choice[k][rows])


# ----------------------------------------------------------------------------------------------
# the learned policy


class LearnedPolicy:
    """A routing policy learned by weighted binary classification (Bolukbasi et al. 2017).

    It minimises ``E[loss] + lam * E[cost] / reference_cost`` over policies that, at each node
    with children, choose to exit or to move to one child. Nodes are trained from the last one
    backwards, each with the later nodes' policies frozen. At a node with options
    ``exit, child_1, ..., child_m`` (costs ``C_0 = loss_k``, ``C_j = lam * c_j + V_j`` with
    ``V_j`` the loss and later cost under the trained downstream policy), a decision list of
    binary classifiers is trained from its end: "child_{m-1} or child_m?", then
    "child_{m-2} or the rest?", ..., "exit or the rest?". Each is a weighted binary
    classification (:func:`wbc_targets`): label = taking the option costs no more, weight =
    the cost difference. For a 2-stage cascade this gives the paper's special case: both models
    right or both wrong -> exit with weight ``lam * c``; student wrong, teacher right ->
    continue with weight ``1 - lam * c``; student right, teacher wrong -> exit, ``1 + lam * c``.

    Parameters
    ----------
    graph : PolicyGraph or array-like of costs
        The routing graph; a sequence of costs means a chain (a cascade).
    lam : float, default=0.05
        Price of one reference cost (the teacher alone) in errors; 0 ignores cost.
    classifier : "logistic", "hgb" or a scikit-learn classifier, default="logistic"
        Any classifier whose ``fit`` takes ``sample_weight`` (copied for every decision).
    random_state : int, default=0

    Attributes
    ----------
    graph_ : PolicyGraph
    deciders_ : list of list of Decider
        Per node, the decision list (empty for nodes without children).
    n_features_ : list of int or None
        Features each node was trained with.
    train_objective_ : float
        ``mean(loss) + lam * mean(cost) / reference_cost`` on the training data.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(size=400)                       # a confidence feature
    >>> correct = [rng.uniform(size=400) < x, np.ones(400, bool)]   # student right if x high
    >>> p = LearnedPolicy([1.0, 10.0], lam=0.3).fit([x[:, None]], correct)
    >>> route = p.route([x[:, None]])
    >>> bool(x[route.exit_node == 0].min() > x[route.exit_node == 1].max())   # a threshold on x
    True
    """

    def __init__(
        self,
        graph: PolicyGraph | ArrayLike,
        *,
        lam: float = 0.05,
        classifier: Any = "logistic",
        random_state: int = 0,
    ) -> None:
        self.graph = graph
        self.lam = lam
        self.classifier = classifier
        self.random_state = random_state

    # -- fitting ------------------------------------------------------------------------------

    def fit(self, features: Any, correct: Any) -> LearnedPolicy:
        """Learn the policy from per-node features and per-node correctness.

        Parameters
        ----------
        features : sequence of arrays (n_samples, d_k), one per node (None for nodes without
            children; the last node may be left out). A single array for a 2-node graph.
        correct : sequence of arrays (n_samples,), one per node
            1 (or True) where the node's answer is right; floats in [0, 1] are allowed
            (loss = 1 - correct).

        Returns
        -------
        self
        """
        g = _as_graph(self.graph)
        lam = _check_lam(self.lam)
        c = _as_correct_matrix(correct, g)
        n = c.shape[1]
        feats = _as_features(features, g, n)
        cost = np.asarray(g.costs) / (g.reference_cost or 1.0)
        value: dict[int, Float64Array] = {}
        deciders: list[list[Decider]] = [[] for _ in range(g.n_nodes)]
        for k in range(g.n_nodes - 1, -1, -1):
            loss = 1.0 - c[k]
            ch = g.children[k]
            if not ch:
                value[k] = loss
                continue
            X = feats[k]
            assert X is not None
            opts = [loss] + [lam * cost[j] + value[j] for j in ch]
            rest = opts[-1]
            lst: list[Decider] = [Decider("constant")] * (len(opts) - 1)
            for j in range(len(opts) - 2, -1, -1):
                take, weight = wbc_targets(opts[j], rest)
                d = fit_decider(self.classifier, X, take, weight, self.random_state)
                lst[j] = d
                rest = np.where(d.decision(X) >= 0, opts[j], rest)
            deciders[k] = lst
            value[k] = rest
        self.graph_ = g
        self.deciders_ = deciders
        self.n_features_ = [None if f is None else int(f.shape[1]) for f in feats]
        self.thresholds_ = [0.0] * g.n_nodes
        self.train_objective_ = float(value[0].mean() + lam * cost[0])
        return self

    def check_fitted(self) -> None:
        """Raise :class:`~cascadekit.errors.NotCalibratedError` unless :meth:`fit` has run."""
        if not hasattr(self, "deciders_"):
            from ..errors import NotCalibratedError

            raise NotCalibratedError(
                "This LearnedPolicy is not fitted yet. Call fit(features, correct) first."
            )

    # -- applying -----------------------------------------------------------------------------

    def _options(self, k: int, X: Float64Array, offset: float) -> NDArray[np.intp]:
        lst = self.deciders_[k]
        opt = np.full(X.shape[0], len(lst), dtype=np.intp)
        undecided = np.ones(X.shape[0], dtype=bool)
        for j, d in enumerate(lst):
            if not undecided.any():
                break
            dv = d.decision(X[undecided])
            take = dv >= (offset if j == 0 else 0.0)
            idx = np.flatnonzero(undecided)[take]
            opt[idx] = j
            undecided[idx] = False
        return opt

    def _check_widths(self, feats: list[Float64Array | None]) -> None:
        for k, (f, d) in enumerate(zip(feats, self.n_features_, strict=True)):
            if f is not None and d is not None and f.shape[1] != d:
                raise InputShapeError(
                    f"Node {k} was trained on {d} features; got {f.shape[1]}. Build the features "
                    "the same way as for fit (same logit features and extras, same order)."
                )

    def route(self, features: Any, thresholds: Sequence[float] | None = None) -> PolicyRoute:
        """Apply the policy: the node each input exits at, and the nodes it ran.

        Parameters
        ----------
        features : as in :meth:`fit`
        thresholds : sequence of float, optional
            Per node, an offset on the exit decision: an input exits at node k when the
            exit decider's value is ``>= thresholds[k]`` (default 0 = the trained policy; a
            larger value sends more inputs on). Defaults to ``thresholds_``.
        """
        self.check_fitted()
        g = self.graph_
        feats = _as_features(features, g, None)
        self._check_widths(feats)
        n = next(f.shape[0] for f in feats if f is not None)
        ths = list(self.thresholds_ if thresholds is None else thresholds)
        if len(ths) == g.n_nodes - 1:
            ths.append(0.0)
        if len(ths) != g.n_nodes:
            raise ParameterError(
                f"Expected one threshold per node with children ({g.n_nodes - 1}); got {len(ths)}."
            )

        def choose(k: int, rows: NDArray[np.intp]) -> NDArray[np.intp]:
            X = feats[k]
            assert X is not None
            return self._options(k, X[rows], float(ths[k]))

        return _follow(g, n, choose)

    def exit_score(self, features: ArrayLike, node: int = 0) -> Float64Array:
        """The exit decider's value at ``node``: higher = exit here (= keep on this stage).

        For a 2-stage cascade this is a *learned routing score* in the library's direction, so
        every curve and calibration function applies to it (``score >= threshold`` stays).

        Examples
        --------
        >>> x = np.linspace(0, 1, 200)[:, None]
        >>> correct = [x[:, 0] > 0.5, np.ones(200, bool)]
        >>> p = LearnedPolicy([1, 4], lam=0.5).fit([x], correct)
        >>> s = p.exit_score(x)
        >>> bool(s[-1] > s[0])
        True
        """
        self.check_fitted()
        X = np.asarray(features, dtype=np.float64)
        if X.ndim == 1:
            X = X[:, None]
        check_finite(X, "features")
        d = self.n_features_[node]
        if d is None or not self.deciders_[node]:
            raise ParameterError(f"Node {node} has no children, so it has no exit decision.")
        if X.ndim != 2 or X.shape[1] != d:
            raise InputShapeError(f"Node {node} was trained on {d} features; got shape {X.shape}.")
        return self.deciders_[node][0].decision(X)

    @property
    def portable(self) -> bool:
        """True when every decider is arrays only (saved without pickle)."""
        self.check_fitted()
        return all(d.portable for lst in self.deciders_ for d in lst)

    def __repr__(self) -> str:
        return f"LearnedPolicy(lam={self.lam!r}, classifier={self.classifier!r})"


# ----------------------------------------------------------------------------------------------
# sweeping lambda


def default_lambdas(n: int = 16, low: float = 1e-3, high: float = 1.0) -> Float64Array:
    """``0`` and ``n - 1`` values spaced geometrically in ``[low, high]``.

    With costs divided by the teacher's cost, a 2-stage policy calls the teacher only where
    it expects to fix more than ``lam`` errors per call, so ``[0, 1]`` spans every policy.

    Examples
    --------
    >>> default_lambdas(4, 0.01, 1.0)
    array([0.  , 0.01, 0.1 , 1.  ])
    """
    if n < 2:
        raise ParameterError(f"Expected n >= 2 lambdas; got {n}.")
    return np.concatenate([[0.0], np.geomspace(low, high, n - 1)])


def lambda_sweep(
    graph: PolicyGraph | ArrayLike,
    features: Any,
    correct: Any,
    lams: ArrayLike | None = None,
    *,
    classifier: Any = "logistic",
    random_state: int = 0,
) -> list[LearnedPolicy]:
    """Fit one policy per ``lam``: sweeping the trade-off parameter traces the curve.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x = rng.uniform(size=300)
    >>> correct = [rng.uniform(size=300) < x, np.ones(300, bool)]
    >>> ps = lambda_sweep([1, 10], [x[:, None]], correct, [0.05, 0.5])
    >>> [round(p.route([x[:, None]]).teacher_share, 2) for p in ps]
    [1.0, 0.52]
    """
    grid = default_lambdas() if lams is None else np.asarray(lams, dtype=np.float64).reshape(-1)
    return [
        LearnedPolicy(graph, lam=float(lam), classifier=classifier, random_state=random_state).fit(
            features, correct
        )
        for lam in grid
    ]


def policy_curve(routes: Sequence[PolicyRoute], correct: Any, *, add_ends: bool = True) -> Curve:
    """A :class:`cascadekit.curves.Curve` through the operating points of several routes.

    With ``add_ends`` the two trivial policies are added: every input exits at node 0, and
    every input takes the cheapest path to the last node. The points are sorted by relative
    cost (and teacher share). For a 2-node chain the curve is a 2-stage curve (its
    ``teacher_share`` axis is what :func:`cascadekit.curves.summarize` integrates over); for
    larger graphs ``stage_shares`` holds the share of inputs answered by each node.

    Examples
    --------
    >>> correct = [[1, 0, 1, 0], [1, 1, 0, 1]]
    >>> r = oracle_route([1, 4], correct)
    >>> policy_curve([r], correct).accuracy
    array([0.5 , 1.  , 0.75])
    """
    if not routes:
        raise ParameterError("Expected at least one route.")
    g = routes[0].graph
    c = _as_correct_matrix(correct, g)
    n = c.shape[1]
    pts: list[tuple[float, float, float, Float64Array]] = []
    for r in routes:
        pts.append((r.relative_cost, r.teacher_share, r.accuracy(c), r.node_shares))
    if add_ends:
        for r in (
            _follow(g, n, lambda k, rows: np.zeros(rows.size, dtype=np.intp)),
            _cheapest_to_last(g, n),
        ):
            pts.append((r.relative_cost, r.teacher_share, r.accuracy(c), r.node_shares))
    pts.sort(key=lambda p: (p[0], p[1], -p[2]))
    two = g.n_nodes == 2
    return Curve(
        thresholds=np.full(len(pts), np.nan),
        teacher_share=np.array([p[1] for p in pts]),
        accuracy=np.array([p[2] for p in pts]),
        relative_cost=np.array([p[0] for p in pts]),
        stage_shares=None if two else np.vstack([p[3] for p in pts]),
        costs=np.asarray(g.costs) if two else None,
    )


def _cheapest_to_last(g: PolicyGraph, n: int) -> PolicyRoute:
    """Every input takes the cheapest path to the last node."""
    last = g.n_nodes - 1
    to_last = [math.inf] * g.n_nodes
    to_last[last] = 0.0
    nxt = [0] * g.n_nodes
    for k in range(last - 1, -1, -1):
        for j, c in enumerate(g.children[k]):
            v = g.costs[c] + to_last[c]
            if v < to_last[k]:
                to_last[k], nxt[k] = v, j + 1
    return _follow(g, n, lambda k, rows: np.full(rows.size, nxt[k], dtype=np.intp))
