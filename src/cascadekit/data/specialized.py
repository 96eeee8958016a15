"""Cached Fashion-MNIST students: specialized (top-C classes + "other") or general (10 classes).

The training recipe of EBJR's specialized student (section 2.4): take the training split of the
Fashion-MNIST benchmark, map every label with :meth:`cascadekit.specialized.Specialization.
encode` (class ``classes[j]`` -> ``j``, every other class -> ``C``, "other") and train the
zoo's MLP student architecture with ``C + 1`` outputs. ``classes=None`` trains the general
10-class student with the same code, so the two differ only in their label space.

Training reuses the zoo's deterministic loop (:mod:`cascadekit.data.zoo`: fixed seeds,
deterministic algorithms, Adam with a one-cycle schedule) and takes seconds. The model and its
logits on the ``select``, ``calibrate`` and ``test`` splits (the zoo's splits for the same sizes
and ``random_state``, so they line up with the zoo teacher's logits) are cached under
``cache_root()/fashion_mnist_specialized/<recipe hash>``.

Examples
--------
>>> import tempfile
>>> from cascadekit.data.specialized import load_specialized_student
>>> s = load_specialized_student((0, 6), sizes=dict(train=600, select=100, calibrate=100,
...     test=200), hidden=(16,), epochs=1, cache_dir=tempfile.mkdtemp())   # doctest: +SKIP
>>> s.logits["test"].shape, s.spec.class_map                               # doctest: +SKIP
((200, 3), [0, 6, -1])
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..costs import count_flops, count_params, import_torch
from ..errors import CascadeError, ParameterError
from ..specialized import Specialization
from .cache import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_npz,
    cache_root,
    read_json,
    state_dict_bytes,
)
from .cache import recipe_hash as _recipe_hash
from .fashion_mnist import (
    FASHION_MNIST_CLASSES,
    SPLITS,
    fashion_mnist_split_indices,
    fashion_mnist_split_sizes,
    load_fashion_mnist,
)
from .kernels import deterministic
from .zoo import ModelRecipe, logits_of, train_one

__all__ = ["SPECIALIZED_CODE_VERSION", "FashionStudent", "load_specialized_student"]

#: Bump when the training code changes in a way that changes the trained students.
SPECIALIZED_CODE_VERSION = "fashion-mnist-specialized/1"
_CACHE_SUBDIR = "fashion_mnist_specialized"
_EVAL_SPLITS = ("select", "calibrate", "test")


@dataclass
class FashionStudent:
    """A trained Fashion-MNIST student and its logits on the held-out splits.

    Attributes
    ----------
    spec : Specialization or None
        The top-C classes (None for the general 10-class student).
    model : torch.nn.Module
        Takes raw pixels ``(n, 28, 28)``; returns ``C + 1`` logits (10 for the general one).
    logits : dict of str to ndarray
        ``logits[split]`` for ``select``, ``calibrate``, ``test``.
    labels : dict of str to ndarray
        Teacher-space labels 0..9 of those splits.
    indices : dict of str to ndarray
        Rows of each split in its source file (as in the zoo).
    flops : int
        FLOPs per input (:func:`cascadekit.costs.count_flops`).
    params : int
    recipe : dict
        What was trained; its hash names the cache folder ``path``.
    trained : bool
        True if this call trained the model, False if it came from the cache.
    train_seconds : float
        Wall-clock training time of the run that trained it.
    """

    spec: Specialization | None
    model: Any
    logits: dict[str, NDArray[np.float32]]
    labels: dict[str, NDArray[np.int64]]
    indices: dict[str, NDArray[np.int64]]
    flops: int
    params: int
    recipe: dict[str, Any]
    path: Path
    trained: bool
    train_seconds: float

    @property
    def n_outputs(self) -> int:
        """Number of logit columns."""
        return 10 if self.spec is None else self.spec.n_top + 1

    def accuracy(self, split: str) -> float:
        """Top-1 accuracy in the teacher's label space (an "other" prediction is wrong).

        For a specialized student the argmax over all ``C + 1`` columns is mapped through the
        class map, so predicting "other" never counts as right.
        """
        pred = np.argmax(self.logits[split], axis=1)
        if self.spec is not None:
            pred = np.asarray(self.spec.class_map, dtype=np.int64)[pred]
        return float(np.mean(pred == self.labels[split]))


def _recipe(
    spec: Specialization | None,
    sizes: Mapping[str, int],
    hidden: Sequence[int],
    epochs: int,
    batch_size: int,
    lr: float,
    random_state: int,
    threads: int,
) -> tuple[dict[str, Any], ModelRecipe]:
    n_out = 10 if spec is None else spec.n_top + 1
    name = "general" if spec is None else "specialized-" + "-".join(map(str, spec.classes))
    model = ModelRecipe(
        name,
        "mlp",
        {"hidden": [int(h) for h in hidden], "n_classes": n_out},
        epochs,
        batch_size,
        lr,
    )
    doc = {
        "code_version": SPECIALIZED_CODE_VERSION,
        "classes": None if spec is None else list(spec.classes),
        "model": model.to_dict(),
        "sizes": {k: int(sizes[k]) for k in SPLITS},
        "seed": int(random_state),
        "threads": int(threads),
    }
    return doc, model


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"Expected {name} to be a positive integer; got {value!r}.")
    return int(value)


def load_specialized_student(
    classes: Sequence[int] | Specialization | None,
    *,
    reduced: bool = False,
    sizes: Mapping[str, int] | None = None,
    hidden: Sequence[int] = (128,),
    epochs: int = 4,
    batch_size: int = 128,
    lr: float = 3e-3,
    random_state: int = 0,
    threads: int = 2,
    cache_dir: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> FashionStudent:
    """Train (once) and load a specialized or general Fashion-MNIST MLP student.

    Parameters
    ----------
    classes : sequence of int, Specialization or None
        The top-C classes (labels 0..9; C in [2, 9]); ``None`` for the general 10-class student.
    reduced : bool
        The zoo's small splits (8,000 train); ignored when ``sizes`` is given.
    sizes : dict, optional
        Rows per split (``train``, ``select``, ``calibrate``, ``test``), as in the zoo.
    hidden, epochs, batch_size, lr :
        The MLP and its training (defaults: the zoo's full student recipe).
    random_state : int
        Seed of the splits and of training (the zoo's splits for the same sizes and
        ``random_state``).
    threads : int
        torch CPU threads while training.
    cache_dir, root, force :
        Cache folder, Fashion-MNIST folder, and retrain even if cached.

    Returns
    -------
    FashionStudent

    Raises
    ------
    ParameterError, LabelError
        Bad ``classes`` (C out of range, unknown class) or training settings.
    DataNotFoundError
        Fashion-MNIST is not installed (``apt-get install -y dataset-fashion-mnist``).
    MissingDependencyError
        torch is missing (``pip install "cascadekit[torch]"``).
    """
    if classes is None or isinstance(classes, Specialization):
        spec = classes
    else:
        spec = Specialization(tuple(classes), len(FASHION_MNIST_CLASSES))
    if spec is not None and spec.n_classes != len(FASHION_MNIST_CLASSES):
        raise ParameterError(
            f"Expected a specialization over the {len(FASHION_MNIST_CLASSES)} Fashion-MNIST "
            f"classes; got n_classes={spec.n_classes}."
        )
    split_sizes = dict(fashion_mnist_split_sizes(reduced) if sizes is None else sizes)
    for k in ("epochs", "batch_size", "threads"):
        _check_positive_int(locals()[k], k)
    if not hidden or any(int(h) < 1 for h in hidden):
        raise ParameterError(f"Expected positive hidden layer widths; got {list(hidden)}.")
    if not (np.isfinite(lr) and lr > 0):
        raise ParameterError(f"Expected a positive learning rate; got {lr!r}.")
    indices = fashion_mnist_split_indices(split_sizes, random_state)  # validates the sizes
    doc, model_recipe = _recipe(
        spec, split_sizes, hidden, epochs, batch_size, lr, random_state, threads
    )
    key = _recipe_hash(doc)
    folder = cache_root(cache_dir) / _CACHE_SUBDIR / key
    torch = import_torch()
    from ._nets import build_network

    data_root = Path(root) if root is not None else None
    if not force and (folder / "meta.json").is_file():
        try:
            meta = read_json(folder / "meta.json")
            if meta.get("key") == key:
                model = build_network("mlp", dict(model_recipe.params))
                state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
                model.load_state_dict(state)
                with np.load(folder / "logits.npz") as z:
                    logits = {s: z[f"logits.{s}"].astype(np.float32) for s in _EVAL_SPLITS}
                    labels = {s: z[f"labels.{s}"].astype(np.int64) for s in _EVAL_SPLITS}
                return FashionStudent(
                    spec=spec,
                    model=model.eval(),
                    logits=logits,
                    labels=labels,
                    indices=indices,
                    flops=int(meta["flops"]),
                    params=int(meta["params"]),
                    recipe=doc,
                    path=folder,
                    trained=False,
                    train_seconds=float(meta["train_seconds"]),
                )
        except Exception:  # a partial or corrupt entry: train again
            pass
    t0 = time.perf_counter()
    train_x, train_y = load_fashion_mnist("train", data_root)
    test_x, test_y = load_fashion_mnist("test", data_root)

    def images_of(split: str) -> NDArray[np.uint8]:
        src = test_x if split == "test" else train_x
        return np.ascontiguousarray(src[indices[split]])

    def labels_of(split: str) -> NDArray[np.int64]:
        return (test_y if split == "test" else train_y)[indices[split]].astype(np.int64)

    y_train = labels_of("train")
    target = y_train if spec is None else spec.encode(y_train)
    with deterministic(torch, threads=int(threads)):
        model = train_one(model_recipe, images_of("train"), target, random_state, lambda d, f: None)
        logits = {s: logits_of(model, images_of(s)) for s in _EVAL_SPLITS}
    train_seconds = time.perf_counter() - t0
    with torch.random.fork_rng(devices=[]):
        flops = count_flops(model, torch.zeros(1, 28, 28))
    params = count_params(model)
    labels = {s: labels_of(s) for s in _EVAL_SPLITS}
    try:
        (folder / "meta.json").unlink(missing_ok=True)
        atomic_write_bytes(folder / "model.pt", state_dict_bytes(torch, model))
        atomic_write_npz(
            folder / "logits.npz",
            {f"logits.{s}": logits[s] for s in _EVAL_SPLITS}
            | {f"labels.{s}": labels[s] for s in _EVAL_SPLITS},
        )
        atomic_write_json(folder / "recipe.json", doc)
        atomic_write_json(
            folder / "meta.json",
            {"key": key, "flops": flops, "params": params, "train_seconds": train_seconds},
        )
    except PermissionError as exc:
        raise CascadeError(
            f"Could not write the student cache under {folder}: {exc}. Set CASCADEKIT_CACHE_DIR "
            "or pass cache_dir= to a writable folder."
        ) from exc
    return FashionStudent(
        spec=spec,
        model=model,
        logits=logits,
        labels=labels,
        indices=indices,
        flops=flops,
        params=params,
        recipe=doc,
        path=folder,
        trained=True,
        train_seconds=train_seconds,
    )
