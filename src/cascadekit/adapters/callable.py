"""Adapter for any function ``inputs -> logits``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ParameterError
from ._base import ModelAdapter, check_batch_size

__all__ = ["CallableModel"]


class CallableModel(ModelAdapter):
    """Wrap a function (or any object with ``__call__``) that maps a batch to logits (n, C).

    The output may be a numpy array, a torch tensor or anything ``np.asarray`` accepts.
    ``batch_size``, ``n_classes`` and ``name`` default to the function's own attributes of
    those names, if it has them.

    Parameters
    ----------
    fn : callable
    batch_size : int or None, optional
    n_classes : int or None, optional
    name : str, optional

    Examples
    --------
    >>> m = CallableModel(lambda x: np.stack([x, -x], axis=1), batch_size=2)
    >>> m(np.array([1.0, 2.0, 3.0]))[:, 0]
    array([1., 2., 3.])
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        batch_size: int | None = None,
        n_classes: int | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ParameterError(
                f"CallableModel expects a function inputs -> logits; got {type(fn).__name__}."
            )
        self.fn = fn
        self.batch_size = check_batch_size(
            batch_size if batch_size is not None else getattr(fn, "batch_size", None),
            "CallableModel",
        )
        nc = n_classes if n_classes is not None else getattr(fn, "n_classes", None)
        self.n_classes = None if nc is None else int(nc)
        self.name = name or str(
            getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__
        )

    def forward(self, batch: Any) -> NDArray[np.floating[Any]]:
        """Logits of one chunk of inputs."""
        out: NDArray[np.floating[Any]] = self.fn(batch)
        return out
