"""PyTorch adapter: a ``torch.nn.Module`` as a cascade stage.

torch is imported when a :class:`TorchModel` is built, never when cascadekit is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._optional import require
from ..errors import InputShapeError, ParameterError
from ._base import ModelAdapter, check_batch_size

__all__ = ["TorchModel", "expected_input"]

_SHAPE_WORDS = (
    "shape",
    "size",
    "dtype",
    "mat1",
    "mat2",
    "channels",
    "dimension",
    "expected",
    "out of range",
)


def _torch() -> Any:
    return require("torch", "torch", "TorchModel")


def expected_input(module: Any) -> str | None:
    """Describe the per-sample input the first layer of ``module`` expects, if it can be told.

    Examples
    --------
    >>> import torch
    >>> expected_input(torch.nn.Sequential(torch.nn.Linear(4, 2)))
    'float inputs of shape (n, ..., 4)'
    >>> expected_input(torch.nn.Conv2d(1, 8, 3))
    'float inputs of shape (n, 1, H, W)'
    """
    torch = _torch()
    nn = torch.nn
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return f"float inputs of shape (n, ..., {m.in_features})"
        if isinstance(m, nn.Conv1d):
            return f"float inputs of shape (n, {m.in_channels}, L)"
        if isinstance(m, nn.Conv2d):
            return f"float inputs of shape (n, {m.in_channels}, H, W)"
        if isinstance(m, nn.Conv3d):
            return f"float inputs of shape (n, {m.in_channels}, D, H, W)"
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
            return f"integer token ids in [0, {m.num_embeddings})"
    return None


def _resolve_dtype(dtype: Any) -> Any:
    torch = _torch()
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        name = np.dtype(dtype).name
    except TypeError as exc:
        raise ParameterError(
            f"Expected dtype to be a torch or numpy dtype (e.g. torch.float32); got {dtype!r}."
        ) from exc
    out = getattr(torch, name, None)
    if not isinstance(out, torch.dtype):
        raise ParameterError(f"numpy dtype {name} has no torch equivalent; pass a torch dtype.")
    return out


class TorchModel(ModelAdapter):
    """Wrap a ``torch.nn.Module`` returning logits, run in eval mode under ``inference_mode``.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a batch tensor to logits of shape (n, C). A tuple/list output uses its first
        element; a dict (or Hugging Face output) its ``"logits"``.
    device : str, default="cpu"
    batch_size : int or None, default=256
        Inputs per forward pass.
    dtype : torch or numpy dtype, optional
        Inputs are cast to it. By default, floating inputs are cast to the dtype of the module's
        first floating parameter (float32 for most models) and other inputs (token ids) are
        passed unchanged.
    input_shape : sequence of int or None, optional
        Per-sample shape (e.g. ``(1, 28, 28)``; ``None`` entries match any size). When given,
        inputs are checked before the forward pass.
    name : str, optional

    Examples
    --------
    >>> import torch
    >>> m = TorchModel(torch.nn.Linear(3, 2), batch_size=2)
    >>> m(np.ones((5, 3))).shape
    (5, 2)
    """

    def __init__(
        self,
        module: Any,
        device: str = "cpu",
        batch_size: int | None = 256,
        dtype: Any = None,
        input_shape: Sequence[int | None] | None = None,
        name: str | None = None,
    ) -> None:
        torch = _torch()
        if not isinstance(module, torch.nn.Module):
            raise ParameterError(
                f"TorchModel expects a torch.nn.Module; got {type(module).__name__}. Use "
                "cascadekit.adapters.as_model(...) to pick the right adapter."
            )
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.batch_size = check_batch_size(batch_size, "TorchModel")
        self.dtype = _resolve_dtype(dtype)
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.name = name or type(module).__name__
        self.n_classes = None
        self._param_dtype = next(
            (p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32
        )

    def to_tensor(self, batch: Any) -> Any:
        """``batch`` as a tensor of the module's floating dtype on its device (numbers only)."""
        torch = _torch()
        if isinstance(batch, torch.Tensor):
            x = batch
        else:
            arr = np.asarray(batch)
            if arr.dtype == object or not (
                np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
            ):
                raise InputShapeError(
                    f"TorchModel {self.name!r} expects numeric arrays or tensors; got dtype "
                    f"{arr.dtype} ({type(batch).__name__}). Encode the inputs first (for text, "
                    "use HFModel or a tokenizer)."
                )
            if not arr.flags.writeable:  # e.g. a request decoded with np.frombuffer
                arr = arr.copy()  # torch.from_numpy warns on read-only memory
            x = torch.from_numpy(np.ascontiguousarray(arr))
        if self.input_shape is not None:
            got = tuple(x.shape[1:])
            want = self.input_shape
            if len(got) != len(want) or any(
                w is not None and g != w for g, w in zip(got, want, strict=False)
            ):
                raise InputShapeError(
                    f"TorchModel {self.name!r} expects inputs of per-sample shape "
                    f"{_fmt_shape(want)}; got a batch of shape {tuple(x.shape)}, i.e. per-sample "
                    f"{got}. Reshape the inputs (e.g. X.reshape(-1, *{want}))."
                )
        if self.dtype is not None:
            x = x.to(self.dtype)
        elif x.is_floating_point() and x.dtype != self._param_dtype:
            x = x.to(self._param_dtype)
        return x.to(self.device)

    def forward(self, batch: Any) -> NDArray[np.floating[Any]]:
        """Logits of one chunk of inputs."""
        torch = _torch()
        x = self.to_tensor(batch)
        with torch.inference_mode():
            try:
                out = self.module(x)
            except (RuntimeError, TypeError, ValueError, IndexError) as exc:
                msg = str(exc)
                if any(w in msg.lower() for w in _SHAPE_WORDS):
                    want = expected_input(self.module) or "the inputs it was trained on"
                    raise InputShapeError(
                        f"TorchModel {self.name!r} could not run on inputs of shape "
                        f"{tuple(x.shape)} and dtype {x.dtype}: expected {want}. Torch said: "
                        f"{msg.splitlines()[0] if msg else type(exc).__name__}"
                    ) from exc
                raise
        if isinstance(out, dict) or hasattr(out, "logits"):
            out = out["logits"] if isinstance(out, dict) else out.logits
        elif isinstance(out, (tuple, list)):
            out = out[0]
        if out.dtype in (torch.float16, torch.bfloat16):
            out = out.float()
        result: NDArray[np.floating[Any]] = out.detach().cpu().numpy()
        return result


def _fmt_shape(shape: Sequence[int | None]) -> str:
    return (
        "("
        + ", ".join("*" if s is None else str(s) for s in shape)
        + ("," if len(shape) == 1 else "")
        + ")"
    )
