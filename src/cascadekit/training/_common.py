"""Shared pieces of :mod:`cascadekit.training`: inputs, checks, the loop, the cache."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..costs import import_torch
from ..data.cache import (
    atomic_write_bytes,
    atomic_write_json,
    cache_root,
    read_json,
    recipe_hash,
    state_dict_bytes,
)
from ..data.kernels import deterministic
from ..errors import (
    ClassCountError,
    InputShapeError,
    LabelError,
    ParameterError,
    SampleCountError,
    TrainingError,
)

#: Bump when a training loop changes in a way that changes the trained weights.
CODE_VERSION = "training/1"
#: ``progress(description, fraction)``: fraction of this call's work done, in [0, 1].
ProgressFn = Callable[[str, float], None]

SUBDIR = "training"
META = "meta.json"
EVAL_BATCH = 2000


@dataclass
class TrainResult:
    """A trained (or cached) student.

    Attributes
    ----------
    model : torch.nn.Module
        The trained module, in ``eval`` mode: the student passed in (trained in place), or the
        new module a method builds around it (a deferral student, a committee).
    method : str
        ``fit``, ``distill``, ``confidence_tune``, ``deferral`` or ``committee``.
    key : str
        Hash of the recipe: the cache folder is ``<cache>/training/<method>-<key>``.
    path : Path or None
        The cache folder (None with ``cache=False``).
    from_cache : bool
        True if the weights were loaded, not trained.
    losses : list of float
        Mean training loss of each epoch (as recorded when the weights were trained).
    seconds : float
        Wall-clock time of the training run that produced the weights.
    settings : dict
        The method's settings (for reports).
    """

    model: Any
    method: str
    key: str
    path: Path | None
    from_cache: bool
    losses: list[float]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# inputs, fingerprints, cache


def as_tensor(torch: Any, x: Any) -> Any:
    """Inputs as a CPU tensor (numpy arrays shared, not copied)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    arr = np.asarray(x)
    if arr.dtype == object or arr.ndim < 1:
        raise InputShapeError(
            f"Expected inputs as a numeric array or tensor with one row per sample; got dtype "
            f"{arr.dtype} and shape {arr.shape}."
        )
    return torch.from_numpy(np.ascontiguousarray(arr))


def model_input(torch: Any, batch: Any) -> Any:
    """uint8 (raw pixels) and float64 inputs go in as float32; other dtypes as they are."""
    if batch.dtype in (torch.uint8, torch.float64, torch.float16):
        return batch.to(torch.float32)
    return batch


def fingerprint(value: Any) -> str:
    """SHA-256 (16 hex) of an array, tensor or torch module's weights, for cache keys.

    Examples
    --------
    >>> import numpy as np
    >>> fingerprint(np.arange(3)) == fingerprint(np.arange(3)), fingerprint(np.arange(3.0))
    (True, '...')
    """
    h = hashlib.sha256()
    if hasattr(value, "state_dict") and callable(value.state_dict):
        h.update(type(value).__qualname__.encode())
        h.update(repr(value).encode())
        for name, t in sorted(value.state_dict().items()):
            arr = t.detach().cpu().contiguous().numpy()
            h.update(name.encode() + str(arr.shape).encode() + str(arr.dtype).encode())
            h.update(arr.tobytes())
        return h.hexdigest()[:16]
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    arr = np.ascontiguousarray(np.asarray(value))
    h.update(str(arr.shape).encode() + str(arr.dtype).encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:16]


def environment(torch: Any) -> dict[str, str]:
    return {
        "code_version": CODE_VERSION,
        "torch": str(torch.__version__).split("+")[0],
        "kernels": str(torch.backends.cpu.get_cpu_capability()),
    }


def cache_folder(cache_dir: str | os.PathLike[str] | None, method: str, key: str) -> Path:
    return cache_root(cache_dir) / SUBDIR / f"{method}-{key}"


def load_cached(torch: Any, module: Any, folder: Path, key: str) -> dict[str, Any] | None:
    """Load cached weights into ``module``; None if the entry is absent, partial or stale."""
    meta_path = folder / META
    if not meta_path.is_file():
        return None
    try:
        meta = read_json(meta_path)
        if meta.get("key") != key:
            return None
        state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except Exception:  # a corrupt entry is retrained, not trusted
        return None
    out: dict[str, Any] = meta
    return out


def save_entry(
    torch: Any, module: Any, folder: Path, key: str, recipe: dict[str, Any], meta: dict[str, Any]
) -> None:
    (folder / META).unlink(missing_ok=True)
    atomic_write_bytes(folder / "model.pt", state_dict_bytes(torch, module))
    atomic_write_json(folder / "recipe.json", recipe)
    atomic_write_json(folder / META, {"key": key, **meta})  # last: marks the entry complete


def recipe_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as cache-recipe fields: ``random_state`` is stored under its earlier name
    ``seed``, so the recipe hashes of earlier versions, and every cached entry, stay valid."""
    return {("seed" if k == "random_state" else k): v for k, v in settings.items()}


# --------------------------------------------------------------------------------------------
# checks


def check_labels(labels: ArrayLike, n: int, n_classes: int | None = None) -> NDArray[np.int64]:
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise LabelError(
            f"Expected integer class labels of shape ({n},); got dtype {y.dtype} and shape "
            f"{y.shape}. Encode the labels as 0..K-1."
        )
    if y.shape[0] != n:
        raise SampleCountError(
            f"Expected one label per training input ({n}); got {y.shape[0]} labels. Pass the "
            "labels of the same inputs, in order."
        )
    if y.shape[0] and (y.min() < 0 or (n_classes is not None and y.max() >= n_classes)):
        raise LabelError(
            f"Expected labels in 0..{'K-1' if n_classes is None else n_classes - 1}; got range "
            f"{int(y.min())}..{int(y.max())}."
        )
    return y.astype(np.int64)


def check_teacher_logits(t: Any, n: int, labels: NDArray[np.int64]) -> NDArray[np.float32]:
    arr = np.asarray(t, dtype=np.float32)
    if arr.ndim != 2:
        raise InputShapeError(
            f"Expected teacher logits of shape (n_inputs, n_classes) = ({n}, K); got shape "
            f"{arr.shape}. Pass the teacher's logits on the training inputs."
        )
    if arr.shape[0] != n:
        raise SampleCountError(
            f"Expected the teacher's logits on the {n} training inputs; got {arr.shape[0]} "
            "rows. Compute them on the same inputs, in the same order "
            "(cascadekit.training.compute_teacher_logits(teacher, inputs))."
        )
    if labels.shape[0] and labels.max() >= arr.shape[1]:
        raise ClassCountError(
            f"The teacher's logits have {arr.shape[1]} classes but the labels go up to "
            f"{int(labels.max())}. Pass the logits of a teacher trained on these classes."
        )
    if not np.isfinite(arr).all():
        raise TrainingError(
            f"The teacher's logits hold {int((~np.isfinite(arr)).sum())} non-finite values "
            "(NaN or inf). Check the teacher on these inputs."
        )
    return arr


def check_width(torch: Any, student: Any, x: Any, n_classes: int, what: str) -> None:
    """The student's output width on one input must be ``n_classes``."""
    shape = probe_shape(torch, student, x)
    if len(shape) != 2 or shape[1] != n_classes:
        raise ClassCountError(
            f"Expected the student to output {n_classes} logits per input ({what}); got shape "
            f"{shape}. Give the student's last layer {n_classes} outputs."
        )


def check_common(student: Any, n: int, epochs: int, lr: float) -> None:
    """A torch module, at least one input, ``epochs >= 1`` and ``lr > 0``."""
    if not hasattr(student, "parameters") or not callable(student):
        raise ParameterError(
            f"Expected the student to be a torch.nn.Module; got {type(student).__name__}."
        )
    if n < 1:
        raise SampleCountError("Expected at least one training input; got none.")
    if int(epochs) < 1:
        raise ParameterError(f"Expected epochs >= 1; got {epochs!r}.")
    if not (float(lr) > 0.0):
        raise ParameterError(f"Expected a learning rate lr > 0; got {lr!r}.")


# --------------------------------------------------------------------------------------------
# the loop


def run_loop(
    torch: Any,
    model: Any,
    x: Any,
    n: int,
    loss_fn: Callable[[Any, Any], Any],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    random_state: int,
    progress: ProgressFn | None,
    desc: str,
    schedule: str = "onecycle",
    threads: int | None = None,
) -> list[float]:
    """Adam (+ one-cycle schedule) over shuffled mini-batches; ``loss_fn(out, idx)``.

    Runs under :func:`~cascadekit.data.kernels.deterministic` (``random_state``, ``threads``).
    Raises :class:`TrainingError` as soon as a loss is not finite.
    """
    with deterministic(torch, random_state, threads):
        opt = torch.optim.Adam(model.parameters(), lr=float(lr), weight_decay=float(weight_decay))
        steps_per_epoch = (n + batch_size - 1) // batch_size
        total = int(epochs) * steps_per_epoch
        sched = (
            torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(lr), total_steps=total)
            if schedule == "onecycle"
            else None
        )
        gen = torch.Generator().manual_seed(int(random_state))
        every = max(1, steps_per_epoch // 10)
        losses: list[float] = []
        step = 0
        for epoch in range(int(epochs)):
            model.train()
            order = torch.randperm(n, generator=gen)
            total_loss = 0.0
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                opt.zero_grad(set_to_none=True)
                out = model(model_input(torch, x[idx]))
                loss = loss_fn(out, idx)
                value = float(loss.detach())
                if not np.isfinite(value):
                    raise TrainingError(
                        f"The {desc} loss became {value} at epoch {epoch + 1}, step {step + 1} "
                        f"of {total}; expected a finite loss. Lower the learning rate "
                        f"(lr={lr:g}) or check the inputs and teacher logits for extreme values. "
                        "Nothing was cached."
                    )
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                total_loss += value * int(idx.shape[0])
                step += 1
                if progress is not None and (step % every == 0 or step == total):
                    progress(f"{desc} (epoch {epoch + 1}/{epochs})", step / total)
            losses.append(total_loss / n)
        model.eval()
        return losses


def train_cached(
    method: str,
    student: Any,
    recipe: dict[str, Any],
    train: Callable[[], list[float]],
    *,
    cache: bool,
    cache_dir: str | os.PathLike[str] | None,
    progress: ProgressFn | None,
    settings: dict[str, Any],
) -> TrainResult:
    """Load ``student``'s weights for ``recipe`` from the cache, or train and save them."""
    torch = import_torch()
    key = recipe_hash(recipe)
    folder = cache_folder(cache_dir, method, key) if cache else None
    if folder is not None:
        meta = load_cached(torch, student, folder, key)
        if meta is not None:
            student.eval()
            if progress is not None:
                progress(f"{method}: loaded from cache", 1.0)
            return TrainResult(
                model=student,
                method=method,
                key=key,
                path=folder,
                from_cache=True,
                losses=[float(v) for v in meta.get("losses", [])],
                seconds=float(meta.get("seconds", float("nan"))),
                settings=settings,
            )
    initial = {k: v.detach().clone() for k, v in student.state_dict().items()}
    t0 = time.perf_counter()
    try:
        losses = train()
    except BaseException:
        student.load_state_dict(initial)  # a failed run leaves the student as it was given
        raise
    seconds = time.perf_counter() - t0
    student.eval()
    if folder is not None:
        save_entry(torch, student, folder, key, recipe, {"losses": losses, "seconds": seconds})
    if progress is not None:
        progress(f"{method}: done", 1.0)
    return TrainResult(student, method, key, folder, False, losses, seconds, settings)


def prepare(
    student: Any, inputs: Any, labels: ArrayLike, epochs: int, lr: float
) -> tuple[Any, Any, NDArray[np.int64]]:
    """torch, the inputs as a tensor and the checked labels."""
    torch = import_torch()
    x = as_tensor(torch, inputs)
    n = int(x.shape[0])
    check_common(student, n, epochs, lr)
    y = check_labels(labels, n)
    return torch, x, y


def probe_shape(torch: Any, student: Any, x: Any) -> tuple[int, ...]:
    """Shape of the student's output on one input, in eval mode (its mode is restored)."""
    was = student.training
    student.eval()
    try:
        with torch.no_grad():
            out = student(model_input(torch, x[:1]))
    finally:
        student.train(was)
    return tuple(int(d) for d in out.shape)


def out_width(torch: Any, student: Any, x: Any) -> int:
    """Number of output columns of the student on one input (-1 if not 2-D)."""
    shape = probe_shape(torch, student, x)
    return shape[1] if len(shape) == 2 else -1


def check_label_width(torch: Any, student: Any, x: Any, y: NDArray[np.int64]) -> int:
    """The student's output width, which must cover every label."""
    width = out_width(torch, student, x)
    if width < 2 or (y.shape[0] and int(y.max()) >= width):
        raise ClassCountError(
            f"Expected the student to output one logit per class (at least "
            f"{max(2, int(y.max()) + 1)} columns); got {width}. Give the student's last layer "
            "one output per class."
        )
    return width
