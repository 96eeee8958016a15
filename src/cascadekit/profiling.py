"""Cost measurement of live models: FLOPs per input and wall-clock latency per batch size.

This is the library side of ``cascadekit profile``. FLOPs follow ``torch.utils.flop_counter``'s
convention (a multiply-add counts 2): for torch modules they are counted by running one input
under ``FlopCounterMode``; for ONNX graphs they are computed from the MatMul, Gemm and Conv node
shapes after shape inference at batch size 1 (other nodes are not counted, as in torch's
counter). Other models get ``None``. Latency is measured with
:func:`cascadekit.costs.measure_latency`: the median over ``repeats`` of the time of one
forward pass on a batch of each size.

Examples
--------
>>> import numpy as np
>>> prof = profile_models({"double": lambda x: np.stack([x, 2 * x], 1)}, np.ones(64),
...                       batch_sizes=(1, 32), repeats=2)
>>> sorted(prof["models"]["double"]), [r["batch_size"] for r in prof["models"]["double"]["latency"]]
(['flops_per_input', 'flops_source', 'kind', 'latency'], [1, 32])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._optional import require
from .adapters import ModelAdapter, OnnxModel, TorchModel, as_model, n_inputs, take, take_slice
from .costs import count_flops, measure_latency
from .errors import EmptyInputError, ParameterError

__all__ = ["onnx_flops", "profile_models", "torch_flops"]


def torch_flops(module: Any, example: Any) -> float:
    """FLOPs per input of a torch module (:func:`cascadekit.costs.count_flops` on ``example``).

    ``module`` may also be a :class:`~cascadekit.adapters.TorchModel`; ``example`` is a batch
    (numpy or torch), cast like the adapter casts inputs.

    Examples
    --------
    >>> import torch
    >>> torch_flops(torch.nn.Linear(10, 3), np.ones((4, 10)))   # 2 * 10 * 3
    60.0
    """
    model = module if isinstance(module, TorchModel) else TorchModel(module)
    return float(count_flops(model.module, model.to_tensor(example)))


def onnx_flops(model: Any, *, sequence_length: int | None = None) -> float:
    """FLOPs per input of an ONNX graph from its MatMul, Gemm and Conv shapes (batch size 1).

    ``model`` is a path, an ``onnx.ModelProto`` or an :class:`~cascadekit.adapters.OnnxModel`
    built from a path.

    With ``sequence_length`` (a transformer encoder with a dynamic sequence axis, whose shapes
    ONNX shape inference cannot resolve), the FLOPs per sequence of that many tokens are counted
    from the MatMul nodes instead: a MatMul with a weight initializer of shape ``(k, m)`` costs
    ``2 L k m`` for ``L`` tokens; a MatMul of two activations is an attention product (``Q K^T``
    or ``A V``), ``2 L^2 d`` summed over heads, with ``d`` the hidden size (the width of the
    word-embedding initializer). Element-wise ops, softmax and layer norms are not counted.

    Examples
    --------
    >>> import torch, tempfile, os
    >>> from cascadekit.adapters import export_onnx
    >>> path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    >>> p = export_onnx(torch.nn.Linear(10, 3), torch.ones(2, 10), path)
    >>> onnx_flops(p)
    60.0
    """
    onnx = require("onnx", "onnx", "onnx_flops")
    if isinstance(model, OnnxModel):
        if model.path is None:
            raise ParameterError(
                "This OnnxModel was built from a session without a file path; pass the .onnx "
                "path to count its FLOPs."
            )
        model = model.path
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    if sequence_length is not None:
        return _encoder_flops(proto, int(sequence_length))
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    init_names = {i.name for i in proto.graph.initializer}
    for inp in proto.graph.input:
        if inp.name in init_names:
            continue
        for j, d in enumerate(inp.type.tensor_type.shape.dim):
            if j == 0 or not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(proto)
    shapes: dict[str, list[int]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [int(d.dim_value) for d in dims]
    for init in inferred.graph.initializer:
        shapes[init.name] = [int(d) for d in init.dims]
    total = 0.0
    for node in inferred.graph.node:
        ins = [shapes.get(i) for i in node.input]
        out = shapes.get(node.output[0]) if node.output else None
        if node.op_type == "MatMul" and ins[0] and out is not None:
            total += 2.0 * float(np.prod(out)) * ins[0][-1]
        elif node.op_type == "Gemm" and ins[0] and out is not None:
            attrs = {a.name: a.i for a in node.attribute}
            k = ins[0][0] if attrs.get("transA", 0) else ins[0][-1]
            total += 2.0 * float(np.prod(out)) * k
        elif node.op_type == "Conv" and len(ins) > 1 and ins[1] and out is not None:
            total += 2.0 * float(np.prod(out)) * float(np.prod(ins[1][1:]))
    return total


def _encoder_flops(proto: Any, n_tokens: int) -> float:
    if n_tokens < 1:
        raise ParameterError(f"Expected sequence_length >= 1 tokens; got {n_tokens}.")
    inits = {t.name: list(t.dims) for t in proto.graph.initializer}
    widths = [d[1] for n, d in inits.items() if len(d) == 2 and "word_embeddings" in n]
    if not widths:
        raise ParameterError(
            "Expected a transformer encoder with a word-embedding initializer (its width is the "
            "hidden size) when sequence_length is given; this graph has none. Count it without "
            "sequence_length."
        )
    hidden = max(widths)
    total = 0.0
    for node in proto.graph.node:
        if node.op_type != "MatMul":
            continue
        w = [inits[i] for i in node.input if i in inits and len(inits[i]) == 2]
        if w:
            k, m = w[0]
            total += 2.0 * n_tokens * k * m
        else:
            total += 2.0 * n_tokens * n_tokens * hidden
    return total


def _flops(model: ModelAdapter, inputs: Any) -> tuple[float | None, str | None]:
    if isinstance(model, TorchModel):
        return torch_flops(model, take_slice(inputs, 0, 1)), "torch.utils.flop_counter"
    if isinstance(model, OnnxModel) and model.path is not None:
        return onnx_flops(model.path), "onnx graph (MatMul/Gemm/Conv)"
    return None, None


def _batch_of(inputs: Any, size: int) -> Any:
    n = n_inputs(inputs)
    if size <= n:
        return take_slice(inputs, 0, size)
    return take(inputs, np.arange(size) % n)


def profile_models(
    models: Mapping[str, Any] | Sequence[Any],
    inputs: Any,
    batch_sizes: Sequence[int] = (1, 32, 256),
    *,
    repeats: int = 20,
    warmup: int = 3,
    flops: bool = True,
) -> dict[str, Any]:
    """FLOPs per input and latency per batch size of each model, on real inputs.

    Parameters
    ----------
    models : mapping name -> model, or sequence of models
        Anything :func:`cascadekit.adapters.as_model` accepts.
    inputs : batch
        Real inputs; batches of each size are taken from the start (cycled if too few).
    batch_sizes : sequence of int, default=(1, 32, 256)
    repeats, warmup : int
        Timed and untimed forward passes per batch size (see
        :func:`cascadekit.costs.measure_latency`; the median is reported).
    flops : bool, default=True
        Count FLOPs (torch and ONNX models).

    Returns
    -------
    dict
        ``{"batch_sizes": [...], "models": {name: {"kind", "flops_per_input",
        "flops_source", "latency": [{"batch_size", "seconds_per_batch", "seconds_per_input",
        "inputs_per_second"}, ...]}}}``; JSON-serialisable.
    """
    named = (
        dict(models)
        if isinstance(models, Mapping)
        else {f"model{i}": m for i, m in enumerate(models)}
    )
    if not named:
        raise ParameterError("Expected at least one model to profile; got none.")
    if n_inputs(inputs) == 0:
        raise EmptyInputError("Expected at least one input to profile the models on; got none.")
    sizes = [int(b) for b in batch_sizes]
    if not sizes or any(b < 1 for b in sizes):
        raise ParameterError(f"Expected positive batch sizes; got {list(batch_sizes)}.")
    pool = _batch_of(inputs, max(max(sizes), n_inputs(inputs)))
    out: dict[str, Any] = {"batch_sizes": sizes, "models": {}}
    models_ = {name: as_model(obj) for name, obj in named.items()}
    for name, model in models_.items():
        fixed = getattr(model, "fixed_batch_size", None)
        other = [b for b in sizes if b != fixed]
        if fixed is not None and other:
            raise ParameterError(
                f"Model {name!r} was exported with a fixed batch size of {fixed} (input "
                f"{getattr(model, 'input_name', '')!r} of shape "
                f"{list(getattr(model, 'input_shape', ()))}), so it cannot be timed at batch "
                f"size {', '.join(map(str, other))}. Export it with a dynamic batch axis "
                "(cascadekit.adapters.export_onnx does; with torch.onnx.export pass "
                "dynamic_axes={input_name: {0: 'batch'}}), or time it at its own batch size "
                f"only: batch_sizes=[{fixed}]."
            )
    for name, model in models_.items():
        f, source = _flops(model, inputs) if flops else (None, None)
        rows = []
        for b in sizes:
            # one forward pass per timed call: the adapter's own chunking is bypassed
            per_input = measure_latency(model.forward, pool, b, repeats=repeats, warmup=warmup)
            rows.append(
                {
                    "batch_size": b,
                    "seconds_per_batch": per_input * b,
                    "seconds_per_input": per_input,
                    "inputs_per_second": 1.0 / per_input if per_input > 0 else float("inf"),
                }
            )
        out["models"][name] = {
            "kind": type(model).__name__,
            "flops_per_input": f,
            "flops_source": source,
            "latency": rows,
        }
    return out
