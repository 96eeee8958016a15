"""Adapter for saved logits: the inputs are integer indices into the rows."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import as_logits
from ..errors import InputShapeError
from ._base import ModelAdapter, check_batch_size

__all__ = ["PrecomputedModel"]


class PrecomputedModel(ModelAdapter):
    """Saved logits as a model: ``model(idx)`` returns ``logits[idx]``.

    Useful to replay a cascade on saved outputs through :meth:`cascadekit.Cascade.predict`,
    and in tests.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
    batch_size : int or None, optional
    name : str, optional

    Examples
    --------
    >>> m = PrecomputedModel(np.eye(3))
    >>> m([2, 0])
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """

    def __init__(
        self, logits: ArrayLike, batch_size: int | None = None, name: str | None = None
    ) -> None:
        self.logits = as_logits(logits, "precomputed logits")
        self.batch_size = check_batch_size(batch_size, "PrecomputedModel")
        self.n_classes = int(self.logits.shape[1])
        self.name = name or "precomputed"

    def forward(self, batch: Any) -> NDArray[np.floating[Any]]:
        """Rows ``batch`` (integer indices) of the saved logits."""
        if hasattr(batch, "detach") and hasattr(batch, "cpu"):
            batch = batch.detach().cpu().numpy()
        idx = np.asarray(batch)
        n = self.logits.shape[0]
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise InputShapeError(
                f"PrecomputedModel {self.name!r} expects a 1-D array of integer row indices; "
                f"got dtype {idx.dtype} and shape {idx.shape}. Pass np.arange(n) to replay all."
            )
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise InputShapeError(
                f"PrecomputedModel {self.name!r} holds {n} rows; got indices from "
                f"{int(idx.min())} to {int(idx.max())}. Pass indices in [0, {n})."
            )
        out: NDArray[np.floating[Any]] = self.logits[idx]
        return out
