"""ONNX Runtime adapter, and an exporter from PyTorch that checks the exported outputs match.

onnxruntime (and torch, for :func:`export_onnx`) are imported when used, never at import time.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._optional import require
from ..errors import CascadeError, InputShapeError, ParameterError
from ._base import ModelAdapter, check_batch_size, n_inputs

__all__ = ["ExportMismatchError", "OnnxModel", "export_onnx"]

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


class ExportMismatchError(CascadeError):
    """An exported model's outputs differ from the original model's beyond the tolerance."""


def _ort() -> Any:
    return require("onnxruntime", "onnx", "OnnxModel")


class OnnxModel(ModelAdapter):
    """Run an ONNX model with onnxruntime (CPU by default).

    Parameters
    ----------
    path_or_session : str, path or onnxruntime.InferenceSession
    input_name : str, optional
        Needed only when the graph has several inputs.
    output_name : str, optional
        The logits output; defaults to the first output.
    batch_size : int or None, default=256
        Inputs per run. A graph with a fixed batch dimension uses that size.
    providers : sequence of str, optional
        Execution providers; default ``["CPUExecutionProvider"]``.
    name : str, optional

    Attributes
    ----------
    path : pathlib.Path or None
        The ``.onnx`` file, when built from a path.
    fixed_batch_size : int or None
        The batch size fixed in the graph (exported without a dynamic batch axis), or None.
        Smaller batches are padded to it; larger ones are run in chunks of it.

    Examples
    --------
    >>> import torch, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    >>> _ = export_onnx(torch.nn.Linear(3, 2), torch.ones(1, 3), path)
    >>> OnnxModel(path)(np.ones((4, 3))).shape
    (4, 2)
    """

    def __init__(
        self,
        path_or_session: Any,
        input_name: str | None = None,
        output_name: str | None = None,
        batch_size: int | None = 256,
        providers: list[str] | None = None,
        name: str | None = None,
    ) -> None:
        ort = _ort()
        if isinstance(path_or_session, (str, os.PathLike)):
            path = Path(path_or_session)
            if not path.is_file():
                raise ParameterError(
                    f"Expected a path to an .onnx file; {str(path)!r} does not exist."
                )
            self.session = ort.InferenceSession(
                str(path), providers=providers or ["CPUExecutionProvider"]
            )
            default_name = path.stem
            self.path: Path | None = path
        elif isinstance(path_or_session, ort.InferenceSession):
            self.session = path_or_session
            default_name = "onnx"
            self.path = None
        else:
            raise ParameterError(
                f"OnnxModel expects a path to an .onnx file or an onnxruntime.InferenceSession; "
                f"got {type(path_or_session).__name__}."
            )
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if input_name is None:
            if len(inputs) != 1:
                raise ParameterError(
                    f"This ONNX graph has {len(inputs)} inputs ({', '.join(inputs)}); pass "
                    "input_name=... to say which one takes the batch."
                )
            input_name = next(iter(inputs))
        if input_name not in inputs:
            raise ParameterError(
                f"Unknown input_name {input_name!r}; the graph's inputs are {list(inputs)}."
            )
        if output_name is None:
            output_name = outputs[0]
        if output_name not in outputs:
            raise ParameterError(
                f"Unknown output_name {output_name!r}; the graph's outputs are {outputs}."
            )
        self.input_name = input_name
        self.output_name = output_name
        meta = inputs[input_name]
        self.input_shape: tuple[Any, ...] = tuple(meta.shape)
        self.input_dtype = np.dtype(_ORT_TYPES.get(meta.type, np.float32))
        self.batch_size = check_batch_size(batch_size, "OnnxModel")
        first = self.input_shape[0] if self.input_shape else None
        if isinstance(first, int) and first > 0:
            self.batch_size = first  # a fixed batch dimension
            self.fixed_batch_size: int | None = first
        else:
            self.fixed_batch_size = None
        self.name = name or default_name
        self.n_classes = None

    def _prepare(self, batch: Any) -> NDArray[Any]:
        if hasattr(batch, "detach") and hasattr(batch, "cpu"):
            batch = batch.detach().cpu().numpy()
        arr = np.asarray(batch)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InputShapeError(
                f"OnnxModel {self.name!r} expects numeric arrays; got dtype {arr.dtype}."
            )
        want_float = np.issubdtype(self.input_dtype, np.floating)
        if want_float != np.issubdtype(arr.dtype, np.floating) and arr.dtype != self.input_dtype:
            raise InputShapeError(
                f"OnnxModel {self.name!r} expects inputs of dtype {self.input_dtype}; got "
                f"{arr.dtype}. Convert them first (e.g. X.astype(np.{self.input_dtype}))."
            )
        arr = np.ascontiguousarray(arr, dtype=self.input_dtype)
        shape = self.input_shape
        ok = arr.ndim == len(shape) and all(
            not isinstance(s, int) or s <= 0 or s == g
            for s, g in zip(shape[1:], arr.shape[1:], strict=True)
        )
        if not ok:
            want = "(" + ", ".join(str(s) if isinstance(s, int) else "n" for s in shape) + ")"
            raise InputShapeError(
                f"OnnxModel {self.name!r} expects inputs of shape {want} (input "
                f"{self.input_name!r}); got {arr.shape}. Reshape the inputs to match."
            )
        return arr

    def forward(self, batch: Any) -> NDArray[np.floating[Any]]:
        """Logits of one chunk of inputs."""
        arr = self._prepare(batch)
        m = arr.shape[0]
        if self.fixed_batch_size is not None and m < self.fixed_batch_size:
            pad = np.zeros((self.fixed_batch_size - m, *arr.shape[1:]), dtype=arr.dtype)
            arr = np.concatenate([arr, pad])
        out = self.session.run([self.output_name], {self.input_name: arr})[0]
        result: NDArray[np.floating[Any]] = np.asarray(out)[:m]
        return result


def export_onnx(
    module: Any,
    example_input: Any,
    path: str | os.PathLike[str],
    *,
    input_name: str = "input",
    output_name: str = "logits",
    opset_version: int | None = None,
    dynamo: bool = False,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> Path:
    """Export a torch module to ONNX with a dynamic batch axis and check the outputs match.

    The module (in eval mode) and the exported graph (on onnxruntime) are both run on
    ``example_input`` and on a batch of a different size; a difference beyond
    ``rtol``/``atol`` raises :class:`ExportMismatchError`.

    Parameters
    ----------
    module : torch.nn.Module
    example_input : tensor or array of shape (n, ...)
        A real batch of inputs (the check runs on it).
    path : str or path
        Where to write the ``.onnx`` file.
    input_name, output_name : str
        Names of the graph's input and output.
    opset_version : int, optional
    dynamo : bool, default=False
        Use the ``torch.export``-based exporter (needs ``onnxscript``); the default is the
        TorchScript exporter, which works offline with torch and onnx alone.
    rtol, atol : float
        Tolerances of the output check.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import torch, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    >>> p = export_onnx(torch.nn.Linear(3, 2), torch.ones(2, 3), path)
    >>> p.suffix
    '.onnx'
    """
    torch = require("torch", "torch", "export_onnx")
    require("onnx", "onnx", "export_onnx")
    if not isinstance(module, torch.nn.Module):
        raise ParameterError(f"export_onnx expects a torch.nn.Module; got {type(module).__name__}.")
    x = (
        example_input
        if isinstance(example_input, torch.Tensor)
        else torch.as_tensor(np.asarray(example_input))
    )
    param = next((p for p in module.parameters() if p.is_floating_point()), None)
    if x.is_floating_point() and param is not None:
        x = x.to(param.dtype)
    if x.ndim == 0 or x.shape[0] == 0:
        raise InputShapeError(
            f"Expected example_input with a batch dimension and at least one input; got shape "
            f"{tuple(x.shape)}."
        )
    module = module.eval()
    out_path = Path(path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # the legacy exporter's deprecation notice and export chatter; torch.jit.TracerWarning
        # (a trace that may be wrong) still reaches the user
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch.onnx")
        if dynamo:
            batch = torch.export.Dim("batch")
            torch.onnx.export(
                module,
                (x,),
                str(out_path),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_shapes=({0: batch},),
                opset_version=opset_version,
                dynamo=True,
            )
        else:
            torch.onnx.export(
                module,
                (x,),
                str(out_path),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                opset_version=opset_version,
                dynamo=False,
            )
    onnx_model = OnnxModel(out_path, input_name=input_name, output_name=output_name)
    bigger = torch.cat([x, x[:1]]) if n_inputs(x) >= 1 else x
    for batch in (x, bigger):
        with torch.inference_mode():
            ref = module(batch)
        ref_np = ref.detach().float().cpu().numpy() if hasattr(ref, "detach") else np.asarray(ref)
        got = onnx_model(batch.cpu().numpy())
        if got.shape != ref_np.shape or not np.allclose(got, ref_np, rtol=rtol, atol=atol):
            diff = (
                float(np.max(np.abs(got - ref_np))) if got.shape == ref_np.shape else float("nan")
            )
            raise ExportMismatchError(
                f"The ONNX export at {str(out_path)!r} does not reproduce the torch module: "
                f"shapes {got.shape} vs {ref_np.shape}, max abs difference {diff:.3g} "
                f"(rtol={rtol}, atol={atol}). Check for data-dependent control flow or raise "
                "the tolerances."
            )
    return out_path
