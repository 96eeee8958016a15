"""Cost of running a model: FLOPs per input, latency per input, parameter count.

FLOPs follow the convention of EBJR and of :class:`torch.utils.flop_counter.FlopCounterMode`:
one multiply-add is **2 FLOPs** (FLOPs = 2 x MACs). Only the operations the counter knows are
counted (matrix products, convolutions, attention); element-wise work such as activations,
pooling or normalisation is ignored, as in most papers.

Latency is wall-clock seconds per input: the median, over ``repeats`` timed calls, of the time
of one call on a batch of ``batch_size`` inputs, divided by ``batch_size``. Batch size 1 gives
the per-request latency of an interactive server; a large batch gives the throughput cost.

Examples
--------
>>> import numpy as np
>>> from cascadekit.costs import measure_latency
>>> x = np.ones((64, 8))
>>> measure_latency(lambda b: b @ b.T, x, batch_size=16, repeats=3, warmup=1) > 0
True
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Sized
from typing import TYPE_CHECKING, Any

from ._optional import require
from .errors import EmptyInputError, InputShapeError, ParameterError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "count_flops",
    "count_macs",
    "count_params",
    "import_torch",
    "measure_latency",
    "serialized_size",
]


def import_torch() -> Any:
    """Import torch or raise :class:`MissingDependencyError` with the install command.

    If this is the process's first import of torch and ``OMP_WAIT_POLICY`` is unset, it is set
    to ``PASSIVE`` first: with the default (spinning) policy, OpenMP threads waiting at a barrier
    burn their time slice, and on a machine where other processes compete for the cores a
    2-thread forward pass gets 10-100x slower (measured: 0.08 ms -> 8 ms for a small MLP at
    batch 1; a CNN training step 0.12 s -> 0.5 s). The variable is read once, when OpenMP
    starts, so it has no effect after torch is imported; set it yourself to choose otherwise.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return require("torch", "torch", "This")


def count_flops(module: torch.nn.Module, example_input: Any) -> int:
    """Count the FLOPs of one forward pass, per input (FLOPs = 2 x multiply-adds).

    Parameters
    ----------
    module : torch.nn.Module
        The model. It is run once in inference mode; put it in ``eval()`` mode first if it has
        dropout or batch norm (the count does not depend on it).
    example_input : torch.Tensor or ndarray
        A batch of inputs, first axis = batch. The total is divided by the batch size; a batch of
        one input is enough.

    Returns
    -------
    int
        FLOPs per input as counted by :class:`torch.utils.flop_counter.FlopCounterMode`.

    Examples
    --------
    >>> import torch
    >>> count_flops(torch.nn.Linear(784, 10), torch.zeros(1, 784))
    15680
    """
    torch = import_torch()
    from torch.utils.flop_counter import FlopCounterMode

    if not isinstance(module, torch.nn.Module):
        raise ParameterError(
            f"Expected a torch.nn.Module; got {type(module).__name__}. For ONNX or other models "
            "pass the costs yourself (FLOPs or seconds per input)."
        )
    x = example_input if isinstance(example_input, torch.Tensor) else torch.as_tensor(example_input)
    if x.ndim == 0:
        raise InputShapeError(
            "Expected example_input with a batch axis first, e.g. shape (1, 784); got a scalar. "
            "Add the batch axis with x[None]."
        )
    batch = int(x.shape[0])
    if batch == 0:
        raise EmptyInputError(
            f"Expected example_input with at least one input on its first axis; got shape "
            f"{tuple(x.shape)}. Pass one real input, e.g. x[:1]."
        )
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(x)
    return int(counter.get_total_flops()) // batch


def count_macs(module: torch.nn.Module, example_input: Any) -> int:
    """Count multiply-accumulates of the convolutions and linear layers, per input, analytically.

    For every :class:`torch.nn.Conv1d`/``Conv2d``/``Conv3d`` and :class:`torch.nn.Linear` the
    count is ``output elements x (in_channels / groups) x kernel size`` (``in_features`` for a
    linear layer), from the shapes seen in one forward pass. This is the cost measure for an
    int8 model, whose quantized kernels :class:`torch.utils.flop_counter.FlopCounterMode` counts
    as 0; run it on the float model *before* quantization (quantization keeps every shape). For
    such a model ``2 * count_macs == count_flops``.

    Parameters
    ----------
    module : torch.nn.Module
        The float model, in ``eval()`` mode.
    example_input : torch.Tensor or ndarray
        A batch of inputs, first axis = batch; the total is divided by the batch size.

    Returns
    -------
    int
        Multiply-accumulates per input.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
    ...                           torch.nn.Linear(4 * 6 * 6, 10))
    >>> count_macs(net, torch.zeros(2, 1, 8, 8))  # 4*6*6*9 + 144*10
    2736
    >>> count_macs(net, torch.zeros(1, 1, 8, 8)) * 2 == count_flops(net, torch.zeros(1, 1, 8, 8))
    True
    """
    torch = import_torch()
    if not isinstance(module, torch.nn.Module):
        raise ParameterError(f"Expected a torch.nn.Module; got {type(module).__name__}.")
    x = torch.as_tensor(example_input)
    if x.ndim == 0 or x.shape[0] == 0:
        raise InputShapeError(
            f"Expected an example batch with a first (batch) axis of at least one input; got "
            f"shape {tuple(x.shape)}. Pass e.g. x[:1]."
        )
    total = [0]
    convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)

    def hook(mod: Any, _inputs: Any, out: Any) -> None:
        if isinstance(mod, convs):
            per_out = (mod.in_channels // mod.groups) * int(torch.tensor(mod.kernel_size).prod())
        else:
            per_out = mod.in_features
        total[0] += int(out.numel()) * int(per_out)

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, (*convs, torch.nn.Linear))
    ]
    try:
        with torch.inference_mode():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return total[0] // int(x.shape[0])


def serialized_size(obj: Any) -> int:
    """Bytes that ``torch.save`` writes for ``obj`` (a module's ``state_dict``, or a module).

    For a :class:`torch.nn.Module` its ``state_dict`` is saved. For a graph module (from
    ``torch.export`` or ``torch.fx``, e.g. a quantized model) only the tensors its graph reads
    are saved: a converted PT2E graph keeps the unused float weights as attributes beside its
    int8 copies, and counting them would hide the saving.

    Examples
    --------
    >>> import torch
    >>> serialized_size(torch.nn.Linear(1000, 100)) > 4 * 100_100  # float32 weights + bias
    True
    """
    import io

    torch = import_torch()
    if isinstance(obj, torch.fx.GraphModule):
        state: dict[str, Any] = {}
        for node in obj.graph.nodes:
            if node.op == "get_attr":
                value = obj
                for part in str(node.target).split("."):
                    value = getattr(value, part)
                if isinstance(value, torch.Tensor):
                    state[str(node.target)] = value
        obj = state
    elif isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getbuffer().nbytes


def count_params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Count the parameters of a module (buffers such as batch-norm statistics excluded).

    Examples
    --------
    >>> import torch
    >>> count_params(torch.nn.Linear(784, 10))
    7850
    """
    torch = import_torch()
    if not isinstance(module, torch.nn.Module):
        raise ParameterError(f"Expected a torch.nn.Module; got {type(module).__name__}.")
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only))


def measure_latency(
    fn: Callable[[Any], Any],
    inputs: Any,
    batch_size: int,
    repeats: int = 20,
    warmup: int = 3,
) -> float:
    """Measure seconds per input of ``fn`` on batches of ``batch_size`` inputs.

    Each timed call runs ``fn(inputs[i : i + batch_size])`` on the next batch of ``inputs``
    (cycling through them), timed with :func:`time.perf_counter`. The result is the median
    over ``repeats`` calls divided by ``batch_size``. Framework-agnostic: ``fn`` may be a torch
    module wrapped in ``torch.inference_mode``, an ONNX session call, or any callable.

    Parameters
    ----------
    fn : callable
        Called with one batch (a slice of ``inputs``); its result is discarded.
    inputs : sliceable with a length (ndarray, tensor, list)
        At least ``batch_size`` inputs along the first axis.
    batch_size : int
        Inputs per call, >= 1.
    repeats : int
        Timed calls, >= 1; the median is reported.
    warmup : int
        Untimed calls first (allocators, caches, lazy initialisation), >= 0.

    Returns
    -------
    float
        Median seconds per input.

    Examples
    --------
    >>> measure_latency(sum, [1.0] * 10, batch_size=5, repeats=5) < 1.0
    True
    """
    if not callable(fn):
        raise ParameterError(f"Expected fn to be callable; got {type(fn).__name__}.")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size <= 0:
        raise ParameterError(
            f"Expected batch_size to be a positive integer; got {batch_size!r}. "
            "Use 1 for per-request latency, e.g. 256 for throughput."
        )
    if isinstance(repeats, bool) or int(repeats) != repeats or repeats < 1:
        raise ParameterError(f"Expected repeats to be an integer >= 1; got {repeats!r}.")
    if isinstance(warmup, bool) or int(warmup) != warmup or warmup < 0:
        raise ParameterError(f"Expected warmup to be an integer >= 0; got {warmup!r}.")
    if not (isinstance(inputs, Sized) and hasattr(inputs, "__getitem__")):
        raise InputShapeError(
            f"Expected inputs with a length and slicing (array, tensor, list); got "
            f"{type(inputs).__name__}."
        )
    n = len(inputs)
    if n == 0:
        raise EmptyInputError(
            "Expected at least one input to time; got an empty inputs. Pass real example inputs."
        )
    batch_size = int(batch_size)
    if batch_size > n:
        raise ParameterError(
            f"Expected batch_size <= the number of inputs ({n}); got {batch_size}. Pass more "
            "inputs or a smaller batch_size."
        )
    starts = list(range(0, n - batch_size + 1, batch_size))
    times: list[float] = []
    for call in range(int(warmup) + int(repeats)):
        start = starts[call % len(starts)]
        batch = inputs[start : start + batch_size]
        t0 = time.perf_counter()
        fn(batch)
        elapsed = time.perf_counter() - t0
        if call >= warmup:
            times.append(elapsed)
    return statistics.median(times) / batch_size
