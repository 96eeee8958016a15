"""Routing graphs: the chain of a cascade, or a small DAG of networks (Bolukbasi et al. 2017)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import ParameterError

__all__ = ["PolicyGraph"]


@dataclass(frozen=True)
class PolicyGraph:
    """Nodes (models or exits) with costs, and the moves a policy may make from each node.

    Node ``0`` runs on every input. At a node with children, the policy chooses to *exit*
    (answer with this node's prediction) or to move to one of its children; a node without
    children always exits. Nodes are numbered in topological order: every child has a larger
    index than its parent, so the graph is a DAG. An input's cost is the sum of the costs of
    the nodes it ran (its path), which for a chain is ``cumsum(costs)[exit_node]``.

    Parameters
    ----------
    names : sequence of str
        One name per node.
    costs : sequence of float
        Cost of running each node once (FLOPs, seconds, ...), non-negative.
    children : sequence of sequences of int
        ``children[k]``: the nodes reachable from node ``k`` in one move, cheapest first.
    reference_cost : float, optional
        What relative costs are divided by; defaults to the cost of the last node alone (the
        teacher), the convention of :mod:`cascadekit.curves`. For early exits inside one
        network pass the cost of the whole network.

    Examples
    --------
    >>> g = PolicyGraph.chain([1.0, 10.0], names=["student", "teacher"])
    >>> g.children, g.terminal
    (((1,), ()), (False, True))
    >>> dag = PolicyGraph.skip_dag([1.0, 4.0, 10.0])   # A -> {exit, B, C}, B -> {exit, C}
    >>> dag.children
    ((1, 2), (2,), ())
    >>> dag.path_costs(np.array([0, 2]), np.array([[True, False, False], [True, False, True]]))
    array([ 1., 11.])
    """

    names: tuple[str, ...]
    costs: tuple[float, ...]
    children: tuple[tuple[int, ...], ...]
    reference_cost: float | None = None

    def __post_init__(self) -> None:
        n = len(self.names)
        object.__setattr__(self, "names", tuple(str(s) for s in self.names))
        object.__setattr__(self, "costs", tuple(float(c) for c in self.costs))
        object.__setattr__(
            self, "children", tuple(tuple(int(c) for c in ch) for ch in self.children)
        )
        if n < 2:
            raise ParameterError(f"Expected a graph of at least 2 nodes; got {n}.")
        if len(self.costs) != n or len(self.children) != n:
            raise ParameterError(
                f"Expected one cost and one list of children per node ({n} names); got "
                f"{len(self.costs)} costs and {len(self.children)} lists of children."
            )
        if not all(math.isfinite(c) and c >= 0 for c in self.costs):
            raise ParameterError(f"Expected finite, non-negative node costs; got {self.costs}.")
        for k, ch in enumerate(self.children):
            for c in ch:
                if not k < c < n:
                    raise ParameterError(
                        f"Expected the children of node {k} ({self.names[k]!r}) to be nodes "
                        f"with a larger index (a DAG numbered in topological order); got {c}. "
                        "Number the nodes so that every move goes to a later node."
                    )
            if len(set(ch)) != len(ch):
                raise ParameterError(f"Node {k} lists a child twice: {list(ch)}.")
        reach = self.reachable()
        if not all(reach):
            bad = [self.names[k] for k in range(n) if not reach[k]]
            raise ParameterError(
                f"Expected every node to be reachable from node 0; {bad} are not. Add an edge "
                "to them or drop them."
            )
        ref = self.reference_cost if self.reference_cost is not None else self.costs[-1]
        if not (math.isfinite(float(ref)) and float(ref) > 0):
            raise ParameterError(
                f"Expected a positive reference cost (relative costs are divided by it); got "
                f"{ref!r}. Give the last node a positive cost or pass reference_cost=..."
            )
        object.__setattr__(self, "reference_cost", float(ref))

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def chain(
        cls,
        costs: ArrayLike,
        names: Sequence[str] | None = None,
        reference_cost: float | None = None,
    ) -> PolicyGraph:
        """A cascade: node ``k`` may exit or move on to ``k + 1``.

        Examples
        --------
        >>> PolicyGraph.chain([1, 2, 3]).children
        ((1,), (2,), ())
        """
        c = [float(v) for v in np.asarray(costs, dtype=np.float64).reshape(-1)]
        n = len(c)
        nm = list(names) if names is not None else [f"stage{k}" for k in range(n)]
        ch = [(k + 1,) for k in range(n - 1)] + [()]
        return cls(tuple(nm), tuple(c), tuple(ch), reference_cost)

    @classmethod
    def skip_dag(cls, costs: ArrayLike, names: Sequence[str] | None = None) -> PolicyGraph:
        """The paper's network-selection DAG: from every node, exit or go to any later node.

        For three networks A, G, R: after A, exit, go to G, or jump straight to R; after G,
        exit or go to R.

        Examples
        --------
        >>> PolicyGraph.skip_dag([1, 2, 3, 4]).children
        ((1, 2, 3), (2, 3), (3,), ())
        """
        c = [float(v) for v in np.asarray(costs, dtype=np.float64).reshape(-1)]
        n = len(c)
        nm = list(names) if names is not None else [f"node{k}" for k in range(n)]
        ch = [tuple(range(k + 1, n)) for k in range(n)]
        return cls(tuple(nm), tuple(c), tuple(ch))

    # -- properties --------------------------------------------------------------------------

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return len(self.names)

    @property
    def terminal(self) -> tuple[bool, ...]:
        """True for nodes without children (they always exit)."""
        return tuple(len(ch) == 0 for ch in self.children)

    @property
    def is_chain(self) -> bool:
        """True when node ``k``'s only child is ``k + 1`` for every non-last node."""
        return all(
            ch == ((k + 1,) if k < self.n_nodes - 1 else ()) for k, ch in enumerate(self.children)
        )

    def reachable(self) -> list[bool]:
        """Which nodes some path from node 0 reaches."""
        seen = [False] * len(self.names)
        seen[0] = True
        for k in range(len(self.names)):
            if seen[k]:
                for c in self.children[k]:
                    seen[c] = True
        return seen

    def cheapest_cost_to(self, node: int) -> float:
        """Cost of the cheapest path from node 0 to ``node`` (both included)."""
        best = [math.inf] * self.n_nodes
        best[0] = self.costs[0]
        for k in range(self.n_nodes):
            for c in self.children[k]:
                best[c] = min(best[c], best[k] + self.costs[c])
        return best[node]

    def path_costs(self, exit_node: ArrayLike, visited: ArrayLike) -> NDArray[np.float64]:
        """Cost per input: the sum of the costs of the nodes it visited.

        ``visited`` is a boolean array of shape (n_samples, n_nodes); ``exit_node`` is only
        checked for shape.
        """
        v = np.asarray(visited, dtype=bool)
        e = np.asarray(exit_node)
        if v.ndim != 2 or v.shape[1] != self.n_nodes or v.shape[0] != e.shape[0]:
            raise ParameterError(
                f"Expected visited of shape ({e.shape[0]}, {self.n_nodes}); got {v.shape}."
            )
        out: NDArray[np.float64] = v.astype(np.float64) @ np.asarray(self.costs)
        return out

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON form (used inside router files)."""
        return {
            "names": list(self.names),
            "costs": list(self.costs),
            "children": [list(ch) for ch in self.children],
            "reference_cost": self.reference_cost,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> PolicyGraph:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                tuple(doc["names"]),
                tuple(doc["costs"]),
                tuple(tuple(ch) for ch in doc["children"]),
                doc.get("reference_cost"),
            )
        except (KeyError, TypeError) as exc:
            raise ParameterError(
                f"Expected a graph with 'names', 'costs' and 'children'; got {dict(doc)!r}."
            ) from exc
