"""One shape for every benchmark's saved outputs: :class:`LogitPool`.

A pool is a few models' logits on the same splits of one data set, with the labels and each
model's cost. The digits pair, the Fashion-MNIST zoo and the tweet pool are pools (with their own
extras: trained networks, texts, latency measurements); the demo, the benchmarks and the score
comparison read them through this one interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ParameterError, UnknownNameError

__all__ = ["LogitPool"]


@dataclass(kw_only=True)
class LogitPool:
    """Logits of several models on the splits of one data set, with labels and costs.

    Attributes
    ----------
    names : tuple of str
        Models in cascade order, cheapest first: the first is the student, the last the teacher.
    logits : dict
        ``logits[split][name]``: array of shape ``(n_split, n_classes)``.
    labels : dict
        ``labels[split]``: int64 array of shape ``(n_split,)``.
    flops : dict
        ``flops[name]``: FLOPs (or any cost unit) per input.
    latency : dict
        Optional: ``latency[name][batch_size]``, seconds per input, where it was measured.
    title : str
        One line saying what the pool is, for reports.
    extra : dict
        Anything else a report carries along (e.g. the zoo a pool came from, a quantized
        teacher); not copied by :meth:`subset`.

    Examples
    --------
    >>> import numpy as np
    >>> pool = LogitPool(names=("s", "t"),
    ...                  logits={"test": {"s": np.eye(3), "t": np.eye(3)[[0, 1, 1]]}},
    ...                  labels={"test": np.array([0, 1, 1])}, flops={"s": 1.0, "t": 9.0})
    >>> pool.accuracy("test", "s"), pool.accuracy("test", "t"), pool.costs()
    (0.6666666666666666, 1.0, [1.0, 9.0])
    >>> pool.accuracy("test", "u")
    Traceback (most recent call last):
    ...
    cascadekit.errors.UnknownNameError: Expected a model in ['s', 't']; got 'u'.
    """

    names: tuple[str, ...] = ()
    logits: dict[str, dict[str, NDArray[Any]]] = field(default_factory=dict)
    labels: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    flops: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, dict[int, float]] = field(default_factory=dict)
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits that have logits, in the order they were added."""
        return tuple(self.logits)

    def check(self, split: str | None = None, name: str | None = None) -> None:
        """Raise :class:`~cascadekit.errors.UnknownNameError` for an unknown split or model."""
        if split is not None and split not in self.logits:
            raise UnknownNameError(f"Expected a split in {list(self.logits)}; got {split!r}.")
        if name is not None and name not in self.names:
            raise UnknownNameError(f"Expected a model in {list(self.names)}; got {name!r}.")

    def correct(self, split: str, name: str) -> NDArray[np.bool_]:
        """Top-1 correctness of model ``name`` on ``split``, shape ``(n_split,)``."""
        self.check(split, name)
        pred = np.asarray(self.logits[split][name]).argmax(axis=1)
        out: NDArray[np.bool_] = pred == self.labels[split]
        return out

    def accuracy(self, split: str, name: str) -> float:
        """Top-1 accuracy of model ``name`` on ``split``."""
        return float(np.mean(self.correct(split, name)))

    def costs(self, kind: str = "flops", batch_size: int = 1) -> list[float]:
        """Per-model costs in cascade order: ``"flops"`` or ``"latency"`` (at ``batch_size``).

        Ready to pass as ``costs=`` to a cascade.
        """
        if kind == "flops":
            return [float(self.flops[n]) for n in self.names]
        if kind == "latency":
            measured = self.latency.get(self.names[0], {}) if self.names else {}
            if batch_size not in measured:
                raise ParameterError(
                    f"Expected batch_size in {sorted(measured)} (the measured ones); got "
                    f"{batch_size!r}."
                )
            return [float(self.latency[n][batch_size]) for n in self.names]
        raise UnknownNameError(f"Expected kind 'flops' or 'latency'; got {kind!r}.")

    def subset(
        self, names: tuple[str, ...] | list[str], splits: tuple[str, ...] | list[str] | None = None
    ) -> LogitPool:
        """A plain pool of some models (in the given order) on some splits.

        Examples
        --------
        >>> import numpy as np
        >>> pool = LogitPool(names=("a", "b", "c"), logits={"x": {k: np.eye(2) for k in "abc"}},
        ...                  labels={"x": np.array([0, 1])}, flops={"a": 1, "b": 2, "c": 3})
        >>> sub = pool.subset(["a", "c"])
        >>> sub.names, sub.costs()
        (('a', 'c'), [1.0, 3.0])
        """
        for n in names:
            self.check(name=n)
        keep = tuple(self.splits if splits is None else splits)
        for s in keep:
            self.check(split=s)
        return LogitPool(
            names=tuple(names),
            logits={s: {n: self.logits[s][n] for n in names} for s in keep},
            labels={s: self.labels[s] for s in keep},
            flops={n: self.flops[n] for n in names},
            latency={n: dict(self.latency[n]) for n in names if n in self.latency},
            title=self.title,
        )
