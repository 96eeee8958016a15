"""The shared base of every adapter, and batch helpers that work on any kind of input batch.

A *batch* is whatever a model takes: a numpy array, a torch tensor, a list of strings, a pandas
DataFrame, a scipy sparse matrix or any other indexable sequence. :func:`n_inputs`,
:func:`take` and :func:`take_slice` count, gather and slice such batches without importing any
heavy library (a torch tensor is only indexed with torch when the input already is one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputShapeError, ParameterError

__all__ = ["ModelAdapter", "n_inputs", "take", "take_slice"]


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "index_select")


def n_inputs(inputs: Any) -> int:
    """Number of inputs in a batch (its first dimension or length).

    Examples
    --------
    >>> n_inputs(np.zeros((5, 3))), n_inputs(["a", "b"])
    (5, 2)
    """
    if inputs is None:
        raise InputShapeError(
            "Expected a batch of inputs (an array, tensor, list or other sequence); got None."
        )
    if isinstance(inputs, (str, bytes)):
        raise InputShapeError(
            f"Expected a batch (sequence) of inputs; got a single {type(inputs).__name__}. "
            "Wrap one text in a list: [text]."
        )
    shape = getattr(inputs, "shape", None)
    if shape is not None and not hasattr(inputs, "iloc"):
        if len(shape) == 0:
            raise InputShapeError(
                "Expected a batch of inputs with a first (batch) dimension; got a 0-d array or "
                "tensor. Pass x[None] for a single input."
            )
        return int(shape[0])
    try:
        return len(inputs)
    except TypeError as exc:
        raise InputShapeError(
            f"Expected a batch of inputs (an array, tensor, list or other sequence); got "
            f"{type(inputs).__name__}, which has no length."
        ) from exc


def take(inputs: Any, idx: NDArray[np.integer[Any]]) -> Any:
    """Gather the inputs at positions ``idx`` into a dense batch of the same kind.

    numpy arrays, torch tensors, pandas objects and sparse matrices use fancy indexing; lists,
    tuples and other sequences a list comprehension.

    Examples
    --------
    >>> take(np.arange(10) * 2, np.array([1, 3]))
    array([2, 6])
    >>> take(["a", "b", "c"], np.array([2, 0]))
    ['c', 'a']
    """
    if isinstance(inputs, np.ndarray):
        return inputs[idx]
    if _is_torch_tensor(inputs):
        import torch

        return inputs[torch.as_tensor(idx, dtype=torch.long, device=inputs.device)]
    if hasattr(inputs, "iloc"):
        return inputs.iloc[idx]
    if hasattr(inputs, "tocsr") and hasattr(inputs, "shape"):
        return inputs.tocsr()[idx]
    if isinstance(inputs, tuple):
        return tuple(inputs[int(i)] for i in idx)
    return [inputs[int(i)] for i in idx]


def take_slice(inputs: Any, start: int, stop: int) -> Any:
    """Inputs ``start:stop`` of a batch (a view where the input kind allows it)."""
    if isinstance(inputs, (np.ndarray, list, tuple)) or _is_torch_tensor(inputs):
        return inputs[start:stop]
    if hasattr(inputs, "iloc"):
        return inputs.iloc[start:stop]
    if hasattr(inputs, "tocsr") and hasattr(inputs, "shape"):
        return inputs.tocsr()[start:stop]
    return take(inputs, np.arange(start, stop))


def check_batch_size(value: int | None, owner: str) -> int | None:
    """``None`` (no limit) or a positive int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(
            f"Expected batch_size of {owner} to be a positive integer or None; got {value!r}."
        )
    return int(value)


class ModelAdapter:
    """Base class of the adapters: ``__call__(inputs) -> logits (n, C)`` in chunks.

    Subclasses implement :meth:`forward` for one chunk of at most ``batch_size`` inputs;
    ``__call__`` splits a larger batch and concatenates the chunks.

    Attributes
    ----------
    batch_size : int or None
        Largest number of inputs per forward pass (None = the whole batch at once).
    n_classes : int or None
        Number of logit columns, when known.
    name : str
        Shown in errors and reports.
    output_kind : {"logits", "log_probabilities"}
        What the rows are: raw logits (the default), or log-probabilities (e.g. the logs of a
        scikit-learn ``predict_proba``), on which energy is refused.
    """

    batch_size: int | None = None
    n_classes: int | None = None
    name: str = "model"
    output_kind: str = "logits"

    def forward(self, batch: Any) -> NDArray[np.floating[Any]]:
        """Logits of one chunk of inputs."""
        raise NotImplementedError  # pragma: no cover

    def __call__(self, inputs: Any) -> NDArray[np.floating[Any]]:
        n = n_inputs(inputs)
        bs = self.batch_size
        if n == 0:
            return np.zeros((0, self.n_classes or 0), dtype=np.float32)
        if bs is None or n <= bs:
            out = _as_float_output(self.forward(inputs))
        else:
            parts: Sequence[NDArray[np.floating[Any]]] = [
                _as_float_output(self.forward(take_slice(inputs, i, min(i + bs, n))))
                for i in range(0, n, bs)
            ]
            out = np.concatenate(parts, axis=0)
        if out.ndim == 2 and self.n_classes is None:
            self.n_classes = int(out.shape[1])
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, batch_size={self.batch_size})"


def _as_float_output(out: Any) -> NDArray[np.floating[Any]]:
    if type(out) is np.ndarray and out.dtype.kind == "f" and out.dtype != np.float16:
        return out  # the common case, checked first: it runs once per batch
    if hasattr(out, "detach") and hasattr(out, "cpu"):
        out = out.detach().cpu()
        if str(out.dtype) in ("torch.float16", "torch.bfloat16"):
            out = out.float()
        out = out.numpy()
    arr = np.asarray(out)
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if not np.issubdtype(arr.dtype, np.floating):
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise InputShapeError(
                f"Expected a model to return numeric logits of shape (n_samples, n_classes); "
                f"got dtype {arr.dtype}. Return raw scores per class."
            )
        arr = arr.astype(np.float32)
    return arr
