"""The zoo's teacher quantized to int8: what a user would pick instead of a cascade.

:func:`load_quantized_teacher` quantizes a model of a :class:`~cascadekit.data.zoo.FashionMnistZoo`
with :func:`cascadekit.quantization.quantize_int8` (calibrated on the zoo's ``select`` split,
never on ``calibrate`` or ``test``), computes its logits on every evaluation split, counts its
int8 multiply-accumulates analytically, measures its serialized size, and times it beside the
float teacher and the student **in the same run** (so their ratio is fair on a noisy machine).
Everything is cached next to the zoo, keyed by the zoo's recipe and the quantization settings;
a second call only reads files.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..costs import count_macs, import_torch, measure_latency, serialized_size
from ..errors import UnknownNameError
from .cache import atomic_write_json, atomic_write_npz, read_json, recipe_hash
from .kernels import deterministic
from .zoo import FashionMnistZoo

__all__ = ["QuantizedTeacher", "load_quantized_teacher"]

EVAL_SPLITS = ("select", "calibrate", "test")


@dataclass
class QuantizedTeacher:
    """An int8 model of the zoo with its logits, costs and timings.

    Attributes
    ----------
    model : str
        Which zoo model was quantized (``teacher`` by default).
    recipe : str
        The quantization recipe (see :mod:`cascadekit.quantization`).
    logits : dict of str to ndarray
        ``logits[split]`` of the int8 model on ``select``, ``calibrate`` and ``test``.
    labels : dict of str to ndarray
        The zoo's labels on those splits.
    int8_macs : int
        Multiply-accumulates per input (analytic: the FLOP counter reports 0 for int8 kernels).
    flops_fp32 : int
        FLOPs per input of the float model (= 2 x its MACs).
    size_bytes : dict of str to int
        Serialized size of the ``fp32`` and ``int8`` models.
    latency : dict of str to dict of int to float
        Seconds per input of ``student``, ``fp32`` (the float model) and ``int8``, per batch
        size, all measured in one run.
    compiled : bool
        Whether Inductor compiled the int8 graph (otherwise it ran reference kernels).
    compile_error : str or None
    trained : bool
        ``True`` if this call quantized, ``False`` if the result came from the cache.
    """

    model: str
    recipe: str
    logits: dict[str, NDArray[np.float32]]
    labels: dict[str, NDArray[np.int64]]
    int8_macs: int
    flops_fp32: int
    size_bytes: dict[str, int]
    latency: dict[str, dict[int, float]]
    compiled: bool
    compile_error: str | None
    trained: bool

    def accuracy(self, split: str) -> float:
        """Top-1 accuracy of the int8 model on ``split``."""
        if split not in self.logits:
            raise UnknownNameError(f"Expected a split in {list(self.logits)}; got {split!r}.")
        return float(np.mean(self.logits[split].argmax(axis=1) == self.labels[split]))


def load_quantized_teacher(
    zoo: FashionMnistZoo,
    *,
    model: str = "teacher",
    calibration_size: int = 1000,
    latency_batches: tuple[int, ...] = (1, 256),
    latency_repeats: int | None = None,
    progress: Callable[[str, float], None] | None = None,
    force: bool = False,
) -> QuantizedTeacher:
    """Quantize ``zoo.models[model]`` to int8 (cached) and measure it beside the float model.

    Parameters
    ----------
    zoo : FashionMnistZoo
        From :func:`cascadekit.data.zoo.load_fashion_mnist_zoo`.
    model : str
        The zoo model to quantize.
    calibration_size : int
        Images of the ``select`` split used to calibrate the activation ranges.
    latency_batches : tuple of int
        Batch sizes timed.
    latency_repeats : int, optional
        Timed calls per measurement (default: the zoo recipe's).
    progress : callable, optional
        ``progress(description, fraction)``.
    force : bool
        Quantize again even if the cache holds the result.

    Returns
    -------
    QuantizedTeacher

    Examples
    --------
    >>> from cascadekit.data.zoo import load_fashion_mnist_zoo
    >>> q = load_quantized_teacher(load_fashion_mnist_zoo())  # doctest: +SKIP
    >>> q.size_bytes["int8"] < q.size_bytes["fp32"] / 3  # doctest: +SKIP
    True
    """
    if model not in zoo.models:
        raise UnknownNameError(f"Expected a model in {list(zoo.names)}; got {model!r}.")
    torch = import_torch()
    from ..quantization import quiet_torchao

    with quiet_torchao():  # its import logs missing CUDA kernels on a CPU machine
        import torchao

    repeats = int(latency_repeats or zoo.recipe.latency_repeats)
    settings = {
        "zoo": zoo.recipe.key,
        "model": model,
        "calibration_size": int(calibration_size),
        "latency_batches": [int(b) for b in latency_batches],
        "latency_repeats": repeats,
        "torch": torch.__version__.split("+")[0],
        "torchao": torchao.__version__,
        "recipe": 1,
    }
    key = recipe_hash(settings)
    folder = zoo.path / "quantized" / key
    if not force:
        cached = _try_load(folder, key, zoo)
        if cached is not None:
            if progress is not None:
                progress("int8 teacher loaded from cache", 1.0)
            return cached
    from ..quantization import quantize_int8

    float_model = zoo.models[model].eval()
    student = zoo.models[zoo.names[0]].eval()
    with deterministic(torch, threads=zoo.recipe.threads):
        torch.use_deterministic_algorithms(False)  # Inductor's int8 kernels are not flagged so
        if progress is not None:
            progress("quantizing the teacher to int8", 0.1)
        calib = np.asarray(zoo.images["select"][: int(calibration_size)], dtype=np.float32)
        q = quantize_int8(float_model, calib, warm_batch_sizes=tuple(latency_batches))
        if progress is not None:
            progress("int8 teacher: logits", 0.6)
        logits = {s: q.logits(np.asarray(zoo.images[s], dtype=np.float32)) for s in EVAL_SPLITS}
        if progress is not None:
            progress("int8 teacher: latency", 0.8)
        images = torch.from_numpy(np.asarray(zoo.images["test"], dtype=np.float32))

        def run(f: Any) -> Callable[[Any], Any]:
            def call(batch: Any) -> Any:
                with torch.inference_mode():
                    return f(batch)

            return call

        fns: dict[str, Callable[[Any], Any]] = {
            "student": run(student),
            "fp32": run(float_model),
            "int8": q,
        }
        latency = {
            name: {
                int(b): measure_latency(fn, images, int(b), repeats=repeats)
                for b in latency_batches
            }
            for name, fn in fns.items()
        }
        macs = count_macs(float_model, images[:1])
    result = QuantizedTeacher(
        model=model,
        recipe=q.recipe,
        logits=logits,
        labels={s: zoo.labels[s] for s in EVAL_SPLITS},
        int8_macs=int(macs),
        flops_fp32=int(zoo.flops[model]),
        size_bytes={"fp32": serialized_size(float_model), "int8": serialized_size(q.graph)},
        latency=latency,
        compiled=q.compiled is not None,
        compile_error=q.compile_error,
        trained=True,
    )
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_npz(folder / "logits.npz", logits)
    atomic_write_json(
        folder / "meta.json",
        {
            "key": key,
            "settings": settings,
            "recipe": result.recipe,
            "int8_macs": result.int8_macs,
            "flops_fp32": result.flops_fp32,
            "size_bytes": result.size_bytes,
            "latency": {n: {str(b): s for b, s in v.items()} for n, v in latency.items()},
            "compiled": result.compiled,
            "compile_error": result.compile_error,
            "quantize_seconds": q.quantize_seconds,
            "compile_seconds": q.compile_seconds,
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    return result


def _try_load(folder: Any, key: str, zoo: FashionMnistZoo) -> QuantizedTeacher | None:
    try:
        meta = read_json(folder / "meta.json")
        if meta.get("key") != key:
            return None
        with np.load(folder / "logits.npz") as z:
            logits = {s: z[s].astype(np.float32) for s in EVAL_SPLITS}
        return QuantizedTeacher(
            model=str(meta["settings"]["model"]),
            recipe=str(meta["recipe"]),
            logits=logits,
            labels={s: zoo.labels[s] for s in EVAL_SPLITS},
            int8_macs=int(meta["int8_macs"]),
            flops_fp32=int(meta["flops_fp32"]),
            size_bytes={k: int(v) for k, v in meta["size_bytes"].items()},
            latency={
                n: {int(b): float(s) for b, s in v.items()} for n, v in meta["latency"].items()
            },
            compiled=bool(meta["compiled"]),
            compile_error=meta.get("compile_error"),
            trained=False,
        )
    except Exception:  # absent, partial or corrupt entry: quantize again
        return None
