"""Int8 post-training quantization of a torch model, on PyTorch's recommended CPU path.

What a user would try instead of a cascade is a compressed teacher. PyTorch's current
recommendation for CPU inference is *PT2E* static quantization with the x86 Inductor quantizer
(the "PyTorch 2 Export Quantization with X86 Backend through Inductor" recipe; the PT2E code
now lives in ``torchao.quantization.pt2e``; the older eager ``torch.ao.quantization`` flow is
deprecated):

1. ``torch.export`` the float model with a dynamic batch axis;
2. ``prepare_pt2e`` with ``X86InductorQuantizer`` (int8 weights per channel, uint8
   activations per tensor), run calibration inputs through it to set the activation ranges;
3. ``convert_pt2e``; the graph now holds int8 weights and quantize/dequantize pairs;
4. ``torch.compile`` it: Inductor fuses the pairs into oneDNN int8 convolutions and matmuls.
   Without step 4 the graph runs the reference (float) kernels and is *slower* than the float
   model; if compilation is unavailable (no C++ compiler) the result says so.

The FLOP counter reports 0 for quantized kernels, so the cost of an int8 model is counted
analytically with :func:`cascadekit.costs.count_macs` on the float model.

Needs the ``torch`` extra and ``torchao`` (``pip install "cascadekit[torch]"``).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._optional import require
from .costs import import_torch
from .errors import EmptyInputError, InputShapeError, ParameterError

__all__ = ["Int8Model", "quantize_int8"]

#: Human-readable name of the quantization recipe, recorded in reports.
RECIPE = "PT2E static int8 (torchao X86InductorQuantizer) + torch.compile (Inductor)"


@contextmanager
def quiet_torchao() -> Iterator[None]:
    """Silence torchao's import-time chatter (missing CUDA kernels, deprecations) on CPU."""
    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def _import_pt2e() -> tuple[Any, Any, Any]:
    with quiet_torchao():
        xiq = require(
            "torchao.quantization.pt2e.quantizer.x86_inductor_quantizer",
            "torch",
            "Int8 quantization",
        )
        pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "torch", "Int8 quantization")
    return xiq, pt2e.prepare_pt2e, pt2e.convert_pt2e


@dataclass
class Int8Model:
    """A model quantized to int8 by :func:`quantize_int8`; call it like the float model.

    Attributes
    ----------
    graph : torch.fx.GraphModule
        The converted PT2E graph (int8 weights, quantize/dequantize pairs), uncompiled.
    compiled : callable or None
        ``torch.compile(graph)``, which runs fused int8 kernels; ``None`` if compilation failed.
    compile_error : str or None
        Why compilation failed (e.g. no C++ compiler); calls then run ``graph`` (slow).
    quantize_seconds, compile_seconds : float
        Time taken by export + calibration + conversion, and by the first compiled calls.
    recipe : str
        The quantization recipe, for reports.
    """

    graph: Any
    compiled: Any
    compile_error: str | None
    quantize_seconds: float
    compile_seconds: float
    recipe: str = RECIPE

    def __call__(self, x: Any) -> Any:
        """Logits of a batch (a float tensor, like the float model's input), no gradients."""
        torch = import_torch()
        fn = self.compiled if self.compiled is not None else self.graph
        with torch.no_grad():
            return fn(torch.as_tensor(x).to(torch.float32))

    def logits(self, inputs: Any, batch_size: int = 1000) -> NDArray[np.float32]:
        """Float32 logits of ``inputs`` (array or tensor), computed in batches."""
        n = len(inputs)
        out = [
            np.asarray(self(inputs[i : i + batch_size]), dtype=np.float32)
            for i in range(0, n, batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def quantize_int8(
    module: Any,
    calibration_inputs: Any,
    *,
    batch_size: int = 64,
    compile: bool = True,
    warm_batch_sizes: tuple[int, ...] = (1, 256),
) -> Int8Model:
    """Quantize a float torch model to int8 (static, post-training) for x86 CPUs.

    Parameters
    ----------
    module : torch.nn.Module
        The trained float model, put in ``eval()`` mode here. Its first input axis is the batch.
    calibration_inputs : array or tensor
        Representative inputs (a few hundred to a few thousand), run through the observers to
        set the activation ranges. Use held-out data, not the test split.
    batch_size : int
        Calibration batch size.
    compile : bool
        Compile with Inductor (needed for int8 speed). ``False`` keeps the reference graph.
    warm_batch_sizes : tuple of int
        Batch sizes called once after compiling, so later timings exclude compilation.

    Returns
    -------
    Int8Model

    Raises
    ------
    EmptyInputError
        No calibration inputs.
    InputShapeError
        The calibration inputs have no batch axis.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> q = quantize_int8(net, torch.randn(64, 8), compile=False)
    >>> q(torch.randn(5, 8)).shape
    torch.Size([5, 3])
    >>> quantize_int8(net, torch.zeros(0, 8))
    Traceback (most recent call last):
    ...
    cascadekit.errors.EmptyInputError: Expected calibration inputs ...
    """
    torch = import_torch()
    if not isinstance(module, torch.nn.Module):
        raise ParameterError(f"Expected a torch.nn.Module; got {type(module).__name__}.")
    x = torch.as_tensor(calibration_inputs).to(torch.float32)
    if x.ndim == 0:
        raise InputShapeError(
            "Expected calibration inputs with a first (batch) axis; got a 0-d value."
        )
    if x.shape[0] == 0:
        raise EmptyInputError(
            f"Expected calibration inputs (at least one, better a few hundred); got shape "
            f"{tuple(x.shape)}. Pass held-out inputs representative of production traffic."
        )
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ParameterError(f"Expected batch_size to be an integer >= 1; got {batch_size!r}.")
    xiq, prepare_pt2e, convert_pt2e = _import_pt2e()
    module = module.eval()
    t0 = time.perf_counter()
    with quiet_torchao():
        example = x[: min(8, len(x))]
        if len(example) < 2:  # a batch of 1 would specialise the batch axis
            example = example.repeat(2, *([1] * (example.ndim - 1)))
        batch = torch.export.Dim("batch", min=1)
        exported = torch.export.export(
            module, (example,), dynamic_shapes=({0: batch},), strict=False
        ).module()
        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for i in range(0, len(x), int(batch_size)):
                prepared(x[i : i + int(batch_size)])
        graph = convert_pt2e(prepared)
    t1 = time.perf_counter()
    compiled, error = None, None
    if compile:
        try:
            with quiet_torchao(), torch.no_grad():
                compiled = torch.compile(graph, dynamic=True)
                for b in warm_batch_sizes:
                    rows = x[:b] if len(x) >= b else x[:1].repeat(b, *([1] * (x.ndim - 1)))
                    compiled(rows)
        except Exception as exc:  # no compiler, unsupported op: keep the reference graph
            compiled, error = None, f"{type(exc).__name__}: {exc}"[:500]
    return Int8Model(
        graph=graph,
        compiled=compiled,
        compile_error=error,
        quantize_seconds=t1 - t0,
        compile_seconds=time.perf_counter() - t1,
    )
