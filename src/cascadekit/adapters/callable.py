"""Adapter for any function ``inputs -> logits``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._validation import OUTPUT_KINDS, proba_to_logits
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
    outputs : {"logits", "probabilities", "log_probabilities"}, default="logits"
        What ``fn`` returns. Probabilities are turned into their logs (so that a softmax gives
        them back); with either normalized kind energy is refused. Declared here, once, rather
        than guessed from each batch: a guess could differ between batches and so make an
        input's answer depend on the batch it arrives in.

    Examples
    --------
    >>> m = CallableModel(lambda x: np.stack([x, -x], axis=1), batch_size=2)
    >>> m(np.array([1.0, 2.0, 3.0]))[:, 0]
    array([1., 2., 3.])
    >>> p = CallableModel(lambda x: np.array([[0.5, 0.5]]), outputs="probabilities")
    >>> p(np.zeros(1)).round(3), p.output_kind
    (array([[-0.693, -0.693]]), 'log_probabilities')
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        batch_size: int | None = None,
        n_classes: int | None = None,
        name: str | None = None,
        outputs: str = "logits",
    ) -> None:
        if outputs not in OUTPUT_KINDS:
            raise ParameterError(
                f"Expected outputs to be one of {', '.join(OUTPUT_KINDS)}; got {outputs!r}."
            )
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
        self.convert = outputs == "probabilities"
        self.output_kind = "logits" if outputs == "logits" else "log_probabilities"

    def forward(self, batch: Any) -> NDArray[np.floating[Any]]:
        """Logits of one chunk of inputs."""
        out: NDArray[np.floating[Any]] = self.fn(batch)
        if self.convert:
            out = proba_to_logits(np.asarray(out))
        return out
