"""Training students for a cascade: cross-entropy, distillation and confidence tuning.

Each function trains a user's own torch module in place and returns a :class:`TrainResult`.
Training is deterministic (a fixed ``random_state`` draws the shuffling; deterministic algorithms),
reports ``progress(description, fraction)`` and is cached: the trained weights are saved under
``<cache>/training/<method>-<key>/``, where ``key`` hashes everything that determines them (the
method and its settings, the student's class, structure and initial weights, the inputs, the
labels, the teacher's logits, the torch version and CPU kernels). A second call with the same
recipe loads the weights into the student instead of training (``from_cache=True``). Files are
written atomically and ``meta.json`` last, so a failed run (a diverged loss, an interrupt)
leaves nothing a later call would read.

torch is imported when a function is called, never when this module is imported.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..data.cache import atomic_write_npz, cache_root, recipe_hash
from ..errors import ParameterError, SampleCountError
from ._common import (
    CODE_VERSION,
    EVAL_BATCH,
    SUBDIR,
    ProgressFn,
    TrainResult,
    as_tensor,
    check_label_width,
    check_teacher_logits,
    check_width,
    environment,
    fingerprint,
    import_torch,
    model_input,
    prepare,
    recipe_settings,
    run_loop,
    train_cached,
)

__all__ = [
    "CODE_VERSION",
    "ProgressFn",
    "TrainResult",
    "compute_teacher_logits",
    "confidence_tune",
    "distill",
    "fingerprint",
    "fit",
]

# --------------------------------------------------------------------------------------------
# public functions


def compute_teacher_logits(
    teacher: Any,
    inputs: Any,
    *,
    batch_size: int = EVAL_BATCH,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
) -> NDArray[np.float32]:
    """The teacher's logits on ``inputs``, computed once and cached.

    The cache key hashes the teacher's class, structure and weights and the inputs, so a
    retrained teacher or other inputs never read a stale entry.

    Parameters
    ----------
    teacher : torch.nn.Module
        Run in ``eval`` mode under ``torch.inference_mode`` (its training flag is restored).
    inputs : ndarray or tensor, one row per input
        uint8 and float64 inputs are given to the model as float32.

    Returns
    -------
    ndarray of shape (n_inputs, n_classes), float32

    Examples
    --------
    >>> import torch, tempfile
    >>> torch.manual_seed(0) and None
    >>> t = compute_teacher_logits(torch.nn.Linear(3, 2), torch.zeros(5, 3),
    ...                            cache_dir=tempfile.mkdtemp())
    >>> t.shape, t.dtype
    ((5, 2), dtype('float32'))
    """
    torch = import_torch()
    x = as_tensor(torch, inputs)
    key = recipe_hash(
        {"teacher": fingerprint(teacher), "inputs": fingerprint(x), **environment(torch)}
    )
    path = cache_root(cache_dir) / SUBDIR / "teacher_logits" / f"{key}.npz"
    if cache and path.is_file():
        try:
            with np.load(path) as z:
                out: NDArray[np.float32] = z["logits"].astype(np.float32)
            if out.shape[0] == x.shape[0]:
                if progress is not None:
                    progress("teacher logits: loaded from cache", 1.0)
                return out
        except Exception:  # corrupt: recompute
            pass
    was = teacher.training
    teacher.eval()
    parts = []
    n = int(x.shape[0])
    try:
        with torch.inference_mode():
            for lo in range(0, n, int(batch_size)):
                parts.append(teacher(model_input(torch, x[lo : lo + int(batch_size)])).numpy())
                if progress is not None:
                    progress("teacher logits", min(1.0, (lo + int(batch_size)) / max(n, 1)))
    finally:
        teacher.train(was)
    out = np.concatenate(parts).astype(np.float32, copy=False)
    if cache:
        atomic_write_npz(path, {"logits": out})
    return out


def fit(
    student: Any,
    inputs: Any,
    labels: ArrayLike,
    *,
    epochs: int = 4,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    random_state: int = 0,
    threads: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train ``student`` with cross-entropy on the labels: the baseline student.

    Adam with a one-cycle learning-rate schedule, shuffled mini-batches drawn from ``random_state``.

    Parameters
    ----------
    student : torch.nn.Module
        Trained in place; its output must have one column per class.
    inputs : ndarray or tensor, one row per training input
        uint8 and float64 inputs are given to the model as float32.
    labels : array-like of int, shape (n_inputs,)
    epochs, batch_size, lr, weight_decay : training settings
    random_state : int
        Draws the shuffling (and anything random in the student, e.g. dropout).
    threads : int, optional
        torch CPU threads while training (restored afterwards).
    cache : bool
        Load the weights of an identical earlier run, and save these ones.
    cache_dir : path, optional
        Defaults to ``$CASCADEKIT_CACHE_DIR`` or ``~/.cache/cascadekit``.
    progress : callable, optional
        ``progress(description, fraction)``.

    Returns
    -------
    TrainResult

    Raises
    ------
    SampleCountError, LabelError
        Labels that do not match the inputs.
    ClassCountError
        The student's output width is not the number of classes.
    TrainingError
        The loss became NaN or inf (nothing is cached; the student keeps its weights).

    Examples
    --------
    >>> import numpy as np, torch, tempfile
    >>> torch.manual_seed(0) and None
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> r = fit(torch.nn.Linear(4, 2), x, y, epochs=5, cache_dir=tempfile.mkdtemp())
    >>> r.method, r.from_cache, r.losses[-1] < r.losses[0]
    ('fit', False, True)
    """
    torch, x, y = prepare(student, inputs, labels, epochs, lr)
    check_label_width(torch, student, x, y)
    yt = torch.from_numpy(y)
    settings = {
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "random_state": int(random_state),
    }
    recipe = {
        "method": "fit",
        **recipe_settings(settings),
        "student": fingerprint(student),
        "inputs": fingerprint(x),
        "labels": fingerprint(y),
        **environment(torch),
    }

    def train() -> list[float]:
        def loss_fn(out: Any, idx: Any) -> Any:
            return torch.nn.functional.cross_entropy(out, yt[idx])

        return run_loop(
            torch,
            student,
            x,
            x.shape[0],
            loss_fn,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            random_state=random_state,
            progress=progress,
            desc="fit",
            threads=threads,
        )

    return train_cached(
        "fit",
        student,
        recipe,
        train,
        cache=cache,
        cache_dir=cache_dir,
        progress=progress,
        settings=settings,
    )


def distill(
    student: Any,
    inputs: Any,
    labels: ArrayLike,
    *,
    teacher: Any = None,
    teacher_logits: ArrayLike | None = None,
    tau: float = 4.0,
    alpha: float = 0.5,
    epochs: int = 4,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    random_state: int = 0,
    threads: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Knowledge distillation (Hinton et al. 2015): soft targets from the teacher plus labels.

    ``loss = alpha * CE(y, s) + (1 - alpha) * tau^2 * KL(softmax(t / tau) || softmax(s / tau))``
    with ``s``, ``t`` the student's and the teacher's logits. The teacher's logits on the
    training inputs are computed once (:func:`compute_teacher_logits`, cached) when a
    ``teacher`` module is given, or passed as ``teacher_logits``.

    Parameters
    ----------
    teacher : torch.nn.Module, optional
    teacher_logits : array-like of shape (n_inputs, n_classes), optional
        Exactly one of ``teacher`` and ``teacher_logits``.
    tau : float
        Temperature of the soft targets (> 0).
    alpha : float
        Weight of the label term, in [0, 1].

    Notes
    -----
    Other parameters are those of :func:`fit`.

    Raises
    ------
    SampleCountError, ClassCountError
        Teacher logits whose rows are not the training inputs, or whose classes are not the
        labels'; a student whose output width differs from the teacher's.
    TrainingError
        The loss became NaN or inf (nothing is cached).

    Examples
    --------
    >>> import numpy as np, torch, tempfile
    >>> torch.manual_seed(0) and None
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> t = np.stack([-4 * x[:, 0], 4 * x[:, 0]], axis=1)
    >>> r = distill(torch.nn.Linear(4, 2), x, y, teacher_logits=t, cache_dir=tempfile.mkdtemp())
    >>> r.method, len(r.losses)
    ('distill', 4)
    """
    torch, x, y = prepare(student, inputs, labels, epochs, lr)
    n = int(x.shape[0])
    if (teacher is None) == (teacher_logits is None):
        raise ParameterError(
            "Expected exactly one of teacher= (a torch module) and teacher_logits= (its logits "
            "on the training inputs); got " + ("both." if teacher is not None else "neither.")
        )
    if not float(tau) > 0.0:
        raise ParameterError(f"Expected a distillation temperature tau > 0; got {tau!r}.")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ParameterError(f"Expected alpha in [0, 1] (weight of the labels); got {alpha!r}.")
    if teacher_logits is None:
        teacher_logits = compute_teacher_logits(
            teacher, x, cache=cache, cache_dir=cache_dir, progress=None
        )
    t = check_teacher_logits(teacher_logits, n, y)
    check_width(torch, student, x, t.shape[1], f"the teacher's {t.shape[1]} classes")
    yt = torch.from_numpy(y)
    soft = torch.softmax(torch.from_numpy(t) / float(tau), dim=1)
    settings = {
        "tau": float(tau),
        "alpha": float(alpha),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "random_state": int(random_state),
    }
    recipe = {
        "method": "distill",
        **recipe_settings(settings),
        "student": fingerprint(student),
        "inputs": fingerprint(x),
        "labels": fingerprint(y),
        "teacher_logits": fingerprint(t),
        **environment(torch),
    }
    a, tau_f = float(alpha), float(tau)

    def loss_fn(out: Any, idx: Any) -> Any:
        ce = torch.nn.functional.cross_entropy(out, yt[idx])
        log_s = torch.log_softmax(out / tau_f, dim=1)
        kl = torch.nn.functional.kl_div(log_s, soft[idx], reduction="batchmean")
        return a * ce + (1.0 - a) * tau_f * tau_f * kl

    def train() -> list[float]:
        return run_loop(
            torch,
            student,
            x,
            n,
            loss_fn,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            random_state=random_state,
            progress=progress,
            desc="distill",
            threads=threads,
        )

    return train_cached(
        "distill",
        student,
        recipe,
        train,
        cache=cache,
        cache_dir=cache_dir,
        progress=progress,
        settings=settings,
    )


def confidence_tune(
    student: Any,
    inputs: Any,
    labels: ArrayLike,
    *,
    alpha: float = 0.5,
    teacher_correct: ArrayLike | None = None,
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 5e-4,
    weight_decay: float = 0.0,
    random_state: int = 0,
    threads: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Confidence tuning for deferral ("Gatekeeper", Rabanser et al. 2025).

    Fine-tunes a trained student so that its confidence separates what it gets right from
    what it gets wrong: per mini-batch, with ``p = softmax(student(x))``,

    ``loss = mean_i [alpha * CE(y_i, p_i) * right_i + (1 - alpha) * KL(p_i || U) * wrong_i]``

    (``U`` the uniform distribution) where ``right_i`` means the student's current argmax is
    ``y_i``. Lower ``alpha`` pushes the wrong inputs harder towards a flat (low-confidence)
    prediction, at some cost in accuracy; choose it on held-out data. **Teacher-aware**
    variant: with ``teacher_correct`` (one bool per training input), only the wrong inputs the
    teacher gets right are pushed to uniform (deferring them helps); the inputs both get wrong
    keep the label term.

    Parameters
    ----------
    alpha : float
        In (0, 1].
    teacher_correct : array-like of bool, shape (n_inputs,), optional

    Notes
    -----
    Other parameters are those of :func:`fit` (fewer epochs and a lower ``lr`` by default:
    this fine-tunes a trained student, and starts from its weights, which enter the key).

    Examples
    --------
    >>> import numpy as np, torch, tempfile
    >>> torch.manual_seed(0) and None
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> r = confidence_tune(torch.nn.Linear(4, 2), x, y, alpha=0.5, cache_dir=tempfile.mkdtemp())
    >>> r.method, r.settings["alpha"]
    ('confidence_tune', 0.5)
    """
    torch, x, y = prepare(student, inputs, labels, epochs, lr)
    n = int(x.shape[0])
    if not 0.0 < float(alpha) <= 1.0:
        raise ParameterError(f"Expected alpha in (0, 1]; got {alpha!r}.")
    width = check_label_width(torch, student, x, y)
    tc = None
    if teacher_correct is not None:
        tc = np.asarray(teacher_correct)
        if tc.shape != (n,):
            raise SampleCountError(
                f"Expected teacher_correct with one bool per training input ({n},); got shape "
                f"{tc.shape}. Compute it on the same inputs, in order."
            )
        tc = tc.astype(bool)
    yt = torch.from_numpy(y)
    tct = None if tc is None else torch.from_numpy(tc)
    settings = {
        "alpha": float(alpha),
        "teacher_aware": tc is not None,
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "random_state": int(random_state),
    }
    recipe = {
        "method": "confidence_tune",
        **recipe_settings(settings),
        "student": fingerprint(student),
        "inputs": fingerprint(x),
        "labels": fingerprint(y),
        "teacher_correct": None if tc is None else fingerprint(tc),
        **environment(torch),
    }
    a = float(alpha)
    log_k = float(np.log(width))

    def loss_fn(out: Any, idx: Any) -> Any:
        target = yt[idx]
        ce = torch.nn.functional.cross_entropy(out, target, reduction="none")
        logp = torch.log_softmax(out, dim=1)
        kl_u = (logp.exp() * logp).sum(dim=1) + log_k  # KL(p || uniform)
        wrong = out.detach().argmax(dim=1) != target
        if tct is not None:
            wrong = wrong & tct[idx]
        w = wrong.to(out.dtype)
        return (a * ce * (1.0 - w) + (1.0 - a) * kl_u * w).mean()

    def train() -> list[float]:
        return run_loop(
            torch,
            student,
            x,
            n,
            loss_fn,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            random_state=random_state,
            progress=progress,
            desc="confidence tuning",
            schedule="constant",
            threads=threads,
        )

    return train_cached(
        "confidence_tune",
        student,
        recipe,
        train,
        cache=cache,
        cache_dir=cache_dir,
        progress=progress,
        settings=settings,
    )
