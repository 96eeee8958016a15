"""A student built for the cascade of the Fashion-MNIST zoo, trained once and cached.

:func:`train_zoo_student` trains an MLP student on the zoo's *train* split, with cross-entropy
(:func:`cascadekit.training.fit`) or distilled from the zoo's teacher (its logits there, cached
with the zoo; :func:`cascadekit.training.distill`), and optionally confidence-tunes it. The
default recipe is the one ``benchmarks/cascade_students.py`` chose on
the *select* split; ``cascadekit demo`` shows it beside the zoo's own student.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import UnknownNameError
from ._common import ProgressFn, TrainResult, import_torch
from .students import confidence_tune, distill, fit

__all__ = ["DEFAULT_ZOO_STUDENT", "ZooStudent", "train_zoo_student"]

#: The recipe ``benchmarks/cascade_students.py`` chose on *select*: MLP 784-128-10 trained with
#: cross-entropy for 8 epochs, then confidence-tuned (alpha 0.5, lr 5e-4).
DEFAULT_ZOO_STUDENT: dict[str, Any] = {
    "hidden": 128,
    "method": "fit",
    "epochs": 8,
    "tau": 4.0,
    "alpha": 0.5,
    "tune_alpha": 0.5,
    "tune_lr": 5e-4,
    "teacher_aware": False,
}

_EVAL_SPLITS = ("select", "calibrate", "test")


@dataclass
class ZooStudent:
    """A trained zoo student with its logits on the evaluation splits.

    Attributes
    ----------
    name : str
        Description of the recipe (``"MLP 512, distilled, ..."``).
    label : str
        Short name for tables (``"MLP 512"``).
    result : TrainResult
        The training run (``result.model`` is the torch module).
    logits : dict of str to ndarray
        ``logits[split]`` on ``select``, ``calibrate`` and ``test``.
    flops : int
        FLOPs per input.
    recipe : dict
        The settings it was trained with.
    """

    name: str
    label: str
    result: TrainResult
    logits: dict[str, NDArray[np.float32]]
    flops: int
    recipe: dict[str, Any] = field(default_factory=dict)


def train_zoo_student(
    zoo: Any,
    *,
    hidden: int = DEFAULT_ZOO_STUDENT["hidden"],
    method: str = DEFAULT_ZOO_STUDENT["method"],
    epochs: int = DEFAULT_ZOO_STUDENT["epochs"],
    tau: float = DEFAULT_ZOO_STUDENT["tau"],
    alpha: float = DEFAULT_ZOO_STUDENT["alpha"],
    tune_alpha: float | None = DEFAULT_ZOO_STUDENT["tune_alpha"],
    tune_lr: float = DEFAULT_ZOO_STUDENT["tune_lr"],
    teacher_aware: bool = DEFAULT_ZOO_STUDENT["teacher_aware"],
    random_state: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
) -> ZooStudent:
    """Train (and with ``tune_alpha``, confidence-tune) an MLP student for the zoo's cascade.

    Trained on one thread from the zoo's *train* images (and for ``method="distill"`` its
    teacher's cached logits there); cached by recipe, so only the first call trains (about 10 s
    on one core for the default).

    Parameters
    ----------
    zoo : FashionMnistZoo
        From :func:`cascadekit.data.zoo.load_fashion_mnist_zoo`.
    hidden : int
        Width of the hidden layer (MLP 784-hidden-10, raw pixels in, as the zoo's student).
    method : {"fit", "distill"}
        Cross-entropy on the labels, or distillation from the zoo's teacher.
    epochs : int
    tau, alpha : distillation settings (see :func:`~cascadekit.training.distill`)
    tune_alpha : float, optional
        Then fine-tune with :func:`~cascadekit.training.confidence_tune` at this alpha.
    tune_lr : float
        Learning rate of the fine-tuning.
    teacher_aware : bool
        Fine-tune with the teacher-aware variant (the teacher's correctness on *train*).

    Returns
    -------
    ZooStudent

    Examples
    --------
    >>> from cascadekit.data.zoo import load_fashion_mnist_zoo
    >>> s = train_zoo_student(load_fashion_mnist_zoo())  # doctest: +SKIP
    >>> s.name, s.logits["test"].shape  # doctest: +SKIP
    ('MLP 128, cross-entropy, confidence-tuned (alpha 0.5)', (10000, 10))
    """
    torch = import_torch()
    from ..costs import count_flops
    from ..data._nets import build_network

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(random_state))
        model = build_network("mlp", {"hidden": [int(hidden)]})
    x = np.asarray(zoo.images["train"])
    y = zoo.labels["train"]

    def part(lo: float, hi: float) -> ProgressFn | None:
        if progress is None:
            return None
        return lambda d, f: progress(d, lo + (hi - lo) * f)

    first = part(0.0, 0.8 if tune_alpha is not None else 1.0)
    if method == "distill":
        result = distill(
            model,
            x,
            y,
            teacher_logits=zoo.logits["train"]["teacher"],
            tau=tau,
            alpha=alpha,
            epochs=epochs,
            random_state=random_state,
            threads=1,
            cache_dir=cache_dir,
            progress=first,
        )
        name = f"MLP {int(hidden)}, distilled"
    elif method == "fit":
        result = fit(
            model,
            x,
            y,
            epochs=epochs,
            random_state=random_state,
            threads=1,
            cache_dir=cache_dir,
            progress=first,
        )
        name = f"MLP {int(hidden)}, cross-entropy"
    else:
        raise UnknownNameError(f"Expected method 'fit' or 'distill'; got {method!r}.")
    if tune_alpha is not None:
        result = confidence_tune(
            result.model,
            x,
            y,
            alpha=tune_alpha,
            teacher_correct=(zoo.logits["train"]["teacher"].argmax(axis=1) == y)
            if teacher_aware
            else None,
            lr=tune_lr,
            random_state=random_state,
            threads=1,
            cache_dir=cache_dir,
            progress=part(0.8, 1.0),
        )
        aware = "teacher-aware, " if teacher_aware else ""
        name += f", confidence-tuned ({aware}alpha {tune_alpha:g})"
    logits = {s: zoo_logits(result.model, np.asarray(zoo.images[s])) for s in _EVAL_SPLITS}
    flops = int(count_flops(result.model, torch.zeros(1, 28, 28)))
    recipe = {
        "hidden": int(hidden),
        "method": method,
        "epochs": int(epochs),
        "tau": float(tau),
        "alpha": float(alpha),
        "tune_alpha": tune_alpha,
        "tune_lr": float(tune_lr),
        "teacher_aware": bool(teacher_aware),
        "random_state": int(random_state),
    }
    return ZooStudent(name, f"MLP {int(hidden)}", result, logits, flops, recipe)


def zoo_logits(model: Any, images: NDArray[Any]) -> NDArray[np.float32]:
    """Logits of a torch model on raw zoo images ``(n, 28, 28)``, in batches of 2,000."""
    torch = import_torch()
    out = []
    with torch.inference_mode():
        for lo in range(0, images.shape[0], 2000):
            batch = torch.from_numpy(np.ascontiguousarray(images[lo : lo + 2000]))
            out.append(model(batch.to(torch.float32)).numpy())
    return np.concatenate(out).astype(np.float32, copy=False)
