"""The Fashion-MNIST model zoo: a student, an intermediate and a teacher, trained once and cached.

Three torch networks defined in this project (no torchvision), in cascade order:

==============  ==========================================  ========================
name            architecture                                role
==============  ==========================================  ========================
student         MLP 784-128-10                              cheapest, least accurate
intermediate    CNN conv16-conv32 (each 3x3 + 2x2 max-pool)  in between
teacher         CNN conv32-conv64 with batch norm, FC 128   most accurate
==============  ==========================================  ========================

Every model takes **raw pixels** 0..255 as a float32 (or uint8) tensor of shape
``(n, 28, 28)``: normalisation is the first layer. Training is deterministic (fixed seeds,
deterministic algorithms, ``torch.set_num_threads(2)``, or 1 for the reduced variant; Adam with
a one-cycle schedule) and reproducible across machines: it runs in a child process whose CPU
kernels are pinned to AVX2 (:mod:`cascadekit.data.kernels`), since PyTorch's AVX-512 and AVX2
kernels round differently and training amplifies it. The first call trains the three models
and computes their logits on the four splits (``train``, ``select``, ``calibrate``, ``test``)
in that child, then measures their costs in the calling process (its native kernels, as the
models will be served); everything is saved under the cache folder in a sub-folder named by
the hash of the recipe, so later calls only load (``zoo.trained`` is then ``False``).

Examples
--------
>>> from cascadekit.data import default_recipe, MODEL_NAMES
>>> MODEL_NAMES
('student', 'intermediate', 'teacher')
>>> r = default_recipe(reduced=True)
>>> r.sizes["train"], r.key == default_recipe(reduced=True).key
(8000, True)
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..costs import count_flops, count_params, import_torch, measure_latency
from ..errors import CascadeError, ParameterError, UnknownNameError
from .cache import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_npz,
    cache_root,
    read_json,
    recipe_hash,
    state_dict_bytes,
)
from .fashion_mnist import (
    SPLITS,
    fashion_mnist_split_indices,
    fashion_mnist_split_sizes,
    load_fashion_mnist,
)
from .kernels import (
    KERNELS_ID,
    deterministic,
    kernels_pinned,
    report_error,
    report_progress,
    run_pinned,
)
from .pool import LogitPool

__all__ = [
    "CODE_VERSION",
    "MODEL_NAMES",
    "FashionMnistZoo",
    "ModelRecipe",
    "ProgressFn",
    "ZooRecipe",
    "default_recipe",
    "load_fashion_mnist_zoo",
    "train_in_child",
]

#: Bump when the training code changes in a way that changes the trained models.
CODE_VERSION = "fashion-mnist-zoo/2"
MODEL_NAMES: tuple[str, ...] = ("student", "intermediate", "teacher")
ZOO_TITLE = "Fashion-MNIST: MLP student -> CNN -> CNN teacher (trained here, cached)"
#: ``progress(description, fraction)``: fraction of the whole job done, in [0, 1].
ProgressFn = Callable[[str, float], None]

_CACHE_SUBDIR = "fashion_mnist_zoo"
_META = "meta.json"
_EVAL_BATCH = 2000


@dataclass(frozen=True)
class ModelRecipe:
    """How one zoo model is built and trained (every field enters the cache key)."""

    name: str
    arch: str
    params: Mapping[str, Any]
    epochs: int
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-value form of the recipe (used for the hash and ``recipe.json``)."""
        d = asdict(self)
        d["params"] = dict(self.params)
        return d


@dataclass(frozen=True)
class ZooRecipe:
    """Everything that determines the zoo's contents; :attr:`key` is its hash.

    ``latency_batches`` and ``latency_repeats`` describe how costs are measured; ``threads``
    is the number of torch CPU threads used for training and timing.
    """

    models: tuple[ModelRecipe, ...]
    sizes: Mapping[str, int]
    random_state: int = 0
    threads: int = 2
    latency_batches: tuple[int, ...] = (1, 256)
    latency_repeats: int = 30
    code_version: str = CODE_VERSION
    kernels: str = KERNELS_ID

    def to_dict(self) -> dict[str, Any]:
        """Plain-value form of the recipe; ``random_state`` is stored as ``"seed"`` (its earlier
        name), so the keys of existing cache entries stay valid."""
        return {
            "models": [m.to_dict() for m in self.models],
            "sizes": {k: int(self.sizes[k]) for k in SPLITS},
            "seed": int(self.random_state),
            "threads": int(self.threads),
            "latency_batches": [int(b) for b in self.latency_batches],
            "latency_repeats": int(self.latency_repeats),
            "code_version": self.code_version,
            "kernels": self.kernels,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ZooRecipe:
        """Inverse of :meth:`to_dict`.

        Examples
        --------
        >>> r = default_recipe(reduced=True)
        >>> ZooRecipe.from_dict(r.to_dict()).key == r.key
        True
        """
        return cls(
            models=tuple(ModelRecipe(**{**m, "params": dict(m["params"])}) for m in d["models"]),
            sizes={k: int(v) for k, v in d["sizes"].items()},
            random_state=int(d["seed"]),
            threads=int(d["threads"]),
            latency_batches=tuple(int(b) for b in d["latency_batches"]),
            latency_repeats=int(d["latency_repeats"]),
            code_version=str(d["code_version"]),
            kernels=str(d["kernels"]),
        )

    @property
    def key(self) -> str:
        """Hash of the recipe: the name of its cache folder."""
        return recipe_hash(self.to_dict())

    @property
    def names(self) -> tuple[str, ...]:
        """Model names in cascade order."""
        return tuple(m.name for m in self.models)


def default_recipe(reduced: bool = False, random_state: int = 0) -> ZooRecipe:
    """Return the benchmark recipe (``reduced=True``: small splits for CI, same networks).

    Examples
    --------
    >>> [m.arch for m in default_recipe().models]
    ['mlp', 'cnn', 'cnn']
    >>> default_recipe().key != default_recipe(reduced=True).key
    True
    """
    # (epochs, batch size): the reduced variant has 6x less training data, so it takes smaller
    # batches (more steps per epoch) and fewer epochs
    plan = (
        {"student": (4, 64), "intermediate": (2, 64), "teacher": (2, 64)}
        if reduced
        else {
            "student": (4, 128),
            "intermediate": (3, 128),
            "teacher": (6, 128),
        }
    )
    teacher_params = {"channels": [32, 64], "fc_hidden": 128, "batch_norm": True, "dropout": 0.25}
    models = (
        ModelRecipe("student", "mlp", {"hidden": [128]}, *plan["student"]),
        ModelRecipe("intermediate", "cnn", {"channels": [16, 32]}, *plan["intermediate"]),
        ModelRecipe("teacher", "cnn", teacher_params, *plan["teacher"]),
    )
    return ZooRecipe(
        models=models,
        sizes=fashion_mnist_split_sizes(reduced),
        random_state=random_state,
        # CI runs tests in parallel (pytest-xdist): two intra-op threads per worker oversubscribe
        # the cores and slow torch down by orders of magnitude, so the reduced recipe uses one.
        threads=1 if reduced else 2,
        latency_repeats=10 if reduced else 30,
    )


class _LazyImages(Mapping[str, NDArray[np.uint8]]):
    """``{split: uint8 images}``, read from the IDX files on first access."""

    def __init__(self, indices: Mapping[str, NDArray[np.int64]], root: Path | None) -> None:
        self._indices = indices
        self._root = root
        self._cache: dict[str, NDArray[np.uint8]] = {}

    def __getitem__(self, split: str) -> NDArray[np.uint8]:
        if split not in self._indices:
            raise UnknownNameError(f"Expected a split in {list(self._indices)}; got {split!r}.")
        if split not in self._cache:
            source: Literal["train", "test"] = "test" if split == "test" else "train"
            images, _ = load_fashion_mnist(source, self._root)
            self._cache[split] = np.ascontiguousarray(images[self._indices[split]])
        return self._cache[split]

    def __iter__(self) -> Iterator[str]:
        return iter(self._indices)

    def __len__(self) -> int:
        return len(self._indices)


@dataclass(kw_only=True)
class FashionMnistZoo(LogitPool):
    """Trained Fashion-MNIST models with their logits on every split and their costs.

    Attributes
    ----------
    recipe : ZooRecipe
        What was trained; ``recipe.key`` names the cache folder.
    path : Path
        The cache folder of this recipe.
    models : dict of str to torch.nn.Module
        ``student``, ``intermediate``, ``teacher`` (cascade order), on CPU, in eval mode. Each
        takes raw pixels 0..255, float32 or uint8, shape ``(n, 28, 28)``.
    logits : dict of str to dict of str to ndarray
        ``logits[split][model]``: float32 ``(n_split, 10)``.
    labels : dict of str to ndarray
        ``labels[split]``: int64 ``(n_split,)`` in 0..9.
    indices : dict of str to ndarray
        Rows of each split in its source file (``test`` in t10k, the others in train).
    flops : dict of str to int
        FLOPs per input (2 x multiply-adds, :func:`cascadekit.costs.count_flops`).
    latency : dict of str to dict of int to float
        ``latency[model][batch_size]``: seconds per input, measured when the zoo was built.
    params : dict of str to int
        Parameter counts.
    trained : bool
        ``True`` if this call trained the models, ``False`` if they came from the cache.
    build_seconds : float
        Wall-clock time of the run that trained the zoo (training, logits and costs).
    """

    recipe: ZooRecipe
    path: Path
    models: dict[str, Any]
    indices: dict[str, NDArray[np.int64]]
    params: dict[str, int]
    trained: bool
    build_seconds: float
    root: Path | None = None
    _images: _LazyImages | None = field(default=None, repr=False)

    @property
    def splits(self) -> tuple[str, ...]:
        """Split names: ``train``, ``select``, ``calibrate``, ``test``."""
        return SPLITS

    @property
    def images(self) -> Mapping[str, NDArray[np.uint8]]:
        """``images[split]``: raw uint8 pixels ``(n_split, 28, 28)``, read on first access."""
        if self._images is None:
            self._images = _LazyImages(self.indices, self.root)
        return self._images

    def forward(self, model: str, images: Any) -> NDArray[np.float32]:
        """Run ``model`` on raw pixels ``(n, 28, 28)`` and return float32 logits ``(n, 10)``."""
        self.check(name=model)
        return logits_of(self.models[model], np.asarray(images))

    def summary(self) -> dict[str, dict[str, float]]:
        """Per model: test accuracy, FLOPs, parameters and latency per input (s) at each batch."""
        out: dict[str, dict[str, float]] = {}
        for n in self.names:
            row: dict[str, float] = {
                "test_accuracy": self.accuracy("test", n),
                "flops": float(self.flops[n]),
                "params": float(self.params[n]),
            }
            for b, s in sorted(self.latency[n].items()):
                row[f"latency_b{b}"] = s
            out[n] = row
        return out


# --------------------------------------------------------------------------------------------
# training


def _model_seed(random_state: int, name: str) -> int:
    return int(recipe_hash({"seed": int(random_state), "model": name}, length=8), 16)


def logits_of(model: Any, images: np.ndarray) -> NDArray[np.float32]:
    torch = import_torch()
    out = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], _EVAL_BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + _EVAL_BATCH]))
            out.append(model(batch.to(torch.float32)).numpy())
    return np.concatenate(out).astype(np.float32, copy=False)


def train_one(
    spec: ModelRecipe,
    images: NDArray[np.uint8],
    labels: NDArray[np.int64],
    random_state: int,
    report: Callable[[str, float], None],
) -> Any:
    """Train one network deterministically; ``report(description, fraction_of_this_model)``."""
    torch = import_torch()
    from ._nets import build_network

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_model_seed(random_state, spec.name))
        model = build_network(spec.arch, dict(spec.params))
        x = torch.from_numpy(np.ascontiguousarray(images))
        y = torch.from_numpy(np.ascontiguousarray(labels))
        n = x.shape[0]
        steps_per_epoch = (n + spec.batch_size - 1) // spec.batch_size
        total = spec.epochs * steps_per_epoch
        opt = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=total)
        gen = torch.Generator().manual_seed(_model_seed(random_state, spec.name + "/shuffle"))
        every = max(1, steps_per_epoch // 20)
        step = 0
        for epoch in range(spec.epochs):
            model.train()
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, spec.batch_size):
                idx = order[start : start + spec.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(model(x[idx].to(torch.float32)), y[idx])
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                if step % every == 0 or step == total:
                    report(f"training {spec.name} (epoch {epoch + 1}/{spec.epochs})", step / total)
    model.eval()
    return model


def _file_labels(indices: Mapping[str, NDArray[np.int64]], root: Path | None) -> dict[str, Any]:
    """Labels of every split, read from the label files (images are not needed)."""
    from .fashion_mnist import FILES, LABELS_MAGIC, fashion_mnist_dir, find_file, read_idx

    folder = fashion_mnist_dir(root)
    out = {}
    for source in ("train", "test"):
        lab = read_idx(find_file(folder, FILES[source][1]), LABELS_MAGIC, 1).astype(np.int64)
        for split in SPLITS:
            if (split == "test") == (source == "test"):
                out[split] = lab[indices[split]]
    return out


def _try_load(recipe: ZooRecipe, folder: Path, root: Path | None) -> FashionMnistZoo | None:
    """Load a complete cache entry, or return None if it is absent, partial or stale."""
    meta_path = folder / _META
    if not meta_path.is_file():
        return None
    torch = import_torch()
    from ._nets import build_network

    try:
        meta = read_json(meta_path)
        if meta.get("key") != recipe.key:
            return None
        with np.load(folder / "splits.npz") as z:
            indices = {s: z[f"indices.{s}"].astype(np.int64) for s in SPLITS}
            labels = {s: z[f"labels.{s}"].astype(np.int64) for s in SPLITS}
        with np.load(folder / "logits.npz") as z:
            logits = {
                s: {n: z[f"{s}.{n}"].astype(np.float32) for n in recipe.names} for s in SPLITS
            }
        models = {}
        for spec in recipe.models:
            model = build_network(spec.arch, dict(spec.params))
            state = torch.load(folder / f"{spec.name}.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(state)
            models[spec.name] = model.eval()
        costs = meta["costs"]
        latency = {
            n: {int(b): float(s) for b, s in costs["latency"][n].items()} for n in recipe.names
        }
    except Exception:  # any partial or corrupt entry (zip, pickle, JSON, shapes): rebuild it
        return None
    # the data files may have changed since the entry was written: then rebuild
    current = _file_labels(indices, root)
    if any(not np.array_equal(current[s], labels[s]) for s in SPLITS):
        return None
    return FashionMnistZoo(
        names=recipe.names,
        title=ZOO_TITLE,
        recipe=recipe,
        path=folder,
        models=models,
        logits=logits,
        labels=labels,
        indices=indices,
        flops={n: int(costs["flops"][n]) for n in recipe.names},
        latency=latency,
        params={n: int(costs["params"][n]) for n in recipe.names},
        trained=False,
        build_seconds=float(meta.get("build_seconds", float("nan"))),
        root=root,
    )


def _split_data(
    recipe: ZooRecipe, root: Path | None
) -> tuple[dict[str, NDArray[np.int64]], dict[str, NDArray[np.uint8]], dict[str, Any]]:
    indices = fashion_mnist_split_indices(dict(recipe.sizes), recipe.random_state)
    train_x, train_y = load_fashion_mnist("train", root)
    test_x, test_y = load_fashion_mnist("test", root)
    images = {
        s: np.ascontiguousarray((test_x if s == "test" else train_x)[indices[s]]) for s in SPLITS
    }
    labels = {s: (test_y if s == "test" else train_y)[indices[s]] for s in SPLITS}
    return indices, images, labels


def _train_and_save(
    recipe: ZooRecipe, folder: Path, root: Path | None, progress: ProgressFn | None
) -> None:
    """Train every model and save its weights and logits (run with pinned kernels)."""
    torch = import_torch()
    from ._nets import build_network

    indices, images, labels = _split_data(recipe, root)
    # progress weights: FLOPs of the work each phase does (training ~ 3x a forward pass)
    example = torch.zeros(1, 28, 28)
    flops = {}
    for spec in recipe.models:
        with torch.random.fork_rng(devices=[]):
            flops[spec.name] = count_flops(build_network(spec.arch, dict(spec.params)), example)
    n_total = sum(int(v) for v in recipe.sizes.values())
    train_work = {
        s.name: 3.0 * s.epochs * recipe.sizes["train"] * flops[s.name] for s in recipe.models
    }
    eval_work = {n: float(n_total * flops[n]) for n in recipe.names}
    grand = sum(train_work.values()) + sum(eval_work.values())
    done = 0.0

    def report(desc: str, part: float, weight: float) -> None:
        if progress is not None:
            progress(desc, min(1.0, (done + part * weight) / grand))

    logits: dict[str, dict[str, NDArray[np.float32]]] = {s: {} for s in SPLITS}
    with deterministic(torch, threads=recipe.threads):
        for spec in recipe.models:
            w = train_work[spec.name]

            def report_training(desc: str, frac: float, w: float = w) -> None:
                report(desc, frac, w)

            model = train_one(
                spec, images["train"], labels["train"], recipe.random_state, report_training
            )
            done += w
            atomic_write_bytes(folder / f"{spec.name}.pt", state_dict_bytes(torch, model))
            for i, s in enumerate(SPLITS):
                report(f"computing {spec.name} logits ({s})", i / len(SPLITS), eval_work[spec.name])
                logits[s][spec.name] = logits_of(model, images[s])
            done += eval_work[spec.name]
    atomic_write_npz(
        folder / "splits.npz",
        {f"indices.{s}": indices[s] for s in SPLITS} | {f"labels.{s}": labels[s] for s in SPLITS},
    )
    atomic_write_npz(
        folder / "logits.npz", {f"{s}.{n}": logits[s][n] for s in SPLITS for n in recipe.names}
    )
    atomic_write_json(folder / "recipe.json", recipe.to_dict())


def _build(
    recipe: ZooRecipe, folder: Path, root: Path | None, progress: ProgressFn | None
) -> FashionMnistZoo:
    torch = import_torch()
    from ._nets import build_network

    t_start = time.perf_counter()
    (folder / _META).unlink(missing_ok=True)  # invalidate an old entry before overwriting it
    folder.mkdir(parents=True, exist_ok=True)

    def child_progress(desc: str, frac: float) -> None:
        if progress is not None:
            progress(desc, 0.95 * frac)

    if kernels_pinned():
        _train_and_save(recipe, folder, root, child_progress)
    else:
        args = [json.dumps(recipe.to_dict()), str(folder), "" if root is None else str(root)]
        run_pinned(f"{__name__}:train_in_child", args, child_progress)

    # costs, measured here with the caller's (native) kernels: as the models will be served
    with np.load(folder / "splits.npz") as z:
        indices = {s: z[f"indices.{s}"].astype(np.int64) for s in SPLITS}
        labels = {s: z[f"labels.{s}"].astype(np.int64) for s in SPLITS}
    with np.load(folder / "logits.npz") as z:
        logits = {s: {n: z[f"{s}.{n}"].astype(np.float32) for n in recipe.names} for s in SPLITS}
    test_images = load_fashion_mnist("test", root)[0][indices["test"]]
    timing_x = torch.from_numpy(
        np.ascontiguousarray(test_images[: max(recipe.latency_batches) * 4])
    ).to(torch.float32)
    example = torch.zeros(1, 28, 28)
    models: dict[str, Any] = {}
    flops: dict[str, int] = {}
    latency: dict[str, dict[int, float]] = {}
    params: dict[str, int] = {}
    with deterministic(torch, threads=recipe.threads):
        for spec in recipe.models:
            if progress is not None:
                progress(f"measuring {spec.name} latency", 0.95)
            with torch.random.fork_rng(devices=[]):  # building draws initial weights
                model = build_network(spec.arch, dict(spec.params))
            state = torch.load(folder / f"{spec.name}.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(state)
            models[spec.name] = model.eval()
            flops[spec.name] = count_flops(model, example)
            params[spec.name] = count_params(model)

            def run(batch: Any, model: Any = model) -> Any:
                with torch.inference_mode():
                    return model(batch)

            latency[spec.name] = {
                int(b): measure_latency(
                    run, timing_x, int(b), repeats=recipe.latency_repeats, warmup=3
                )
                for b in recipe.latency_batches
            }

    build_seconds = time.perf_counter() - t_start
    zoo = FashionMnistZoo(
        names=recipe.names,
        title=ZOO_TITLE,
        recipe=recipe,
        path=folder,
        models=models,
        logits=logits,
        labels=labels,
        indices=indices,
        flops=flops,
        latency=latency,
        params=params,
        trained=True,
        build_seconds=build_seconds,
        root=root,
    )
    meta = {
        "key": recipe.key,
        "code_version": recipe.code_version,
        "kernels": recipe.kernels,
        "build_seconds": build_seconds,
        "torch_version": str(torch.__version__),
        "numpy_version": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "native_cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "cpu_count": os.cpu_count(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "costs": {
            "flops": flops,
            "params": params,
            "latency": {n: {str(b): s for b, s in latency[n].items()} for n in recipe.names},
        },
        "accuracy": {s: {n: zoo.accuracy(s, n) for n in recipe.names} for s in SPLITS},
    }
    atomic_write_json(folder / _META, meta)  # written last: marks the entry complete
    if progress is not None:
        progress("done", 1.0)
    return zoo


def load_fashion_mnist_zoo(
    reduced: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    recipe: ZooRecipe | None = None,
    force: bool = False,
) -> FashionMnistZoo:
    """Load the Fashion-MNIST zoo from the cache, training it first if needed.

    Parameters
    ----------
    reduced : bool
        Small splits (8,000 train / 1,000 select / 2,000 calibrate / 2,000 test) that train in
        seconds, for CI. The full recipe trains in a few minutes on 2 CPU cores, once.
    cache_dir : path, optional
        Cache folder; defaults to ``$CASCADEKIT_CACHE_DIR`` or ``~/.cache/cascadekit``.
    progress : callable, optional
        ``progress(description, fraction)`` with the fraction of the whole job done, for a
        progress bar. Called often while training; once with 1.0 on a cache hit.
    root : path, optional
        Folder of the Fashion-MNIST IDX files (see :func:`load_fashion_mnist`).
    recipe : ZooRecipe, optional
        A custom recipe; overrides ``reduced``.
    force : bool
        Retrain even if the cache holds this recipe.

    Returns
    -------
    FashionMnistZoo
        Models, logits per split, labels, FLOPs, latency, parameters; ``trained`` says whether
        this call trained.

    Raises
    ------
    DataNotFoundError
        The Fashion-MNIST files are missing (the message names the install command).
    MissingDependencyError
        PyTorch is not installed (``pip install "cascadekit[torch]"``).

    Examples
    --------
    >>> import tempfile
    >>> zoo = load_fashion_mnist_zoo(reduced=True, cache_dir=tempfile.mkdtemp())  # doctest: +SKIP
    >>> zoo.trained, zoo.logits["test"]["teacher"].shape  # doctest: +SKIP
    (True, (2000, 10))
    """
    torch = import_torch()  # fail early, with the install command, if torch is missing
    del torch
    recipe = default_recipe(reduced) if recipe is None else recipe
    if not isinstance(recipe, ZooRecipe):
        raise ParameterError(f"Expected recipe to be a ZooRecipe; got {type(recipe).__name__}.")
    if len(set(recipe.names)) != len(recipe.names) or not recipe.names:
        raise ParameterError(f"Expected distinct model names; got {list(recipe.names)}.")
    data_root = Path(root) if root is not None else None
    folder = cache_root(cache_dir) / _CACHE_SUBDIR / recipe.key
    if not force:
        zoo = _try_load(recipe, folder, data_root)
        if zoo is not None:
            if progress is not None:
                progress("loaded from cache", 1.0)
            return zoo
    try:
        return _build(recipe, folder, data_root, progress)
    except PermissionError as exc:
        raise CascadeError(
            f"Could not write the zoo cache under {folder}: {exc}. Set CASCADEKIT_CACHE_DIR or "
            "pass cache_dir= to a writable folder."
        ) from exc


def train_in_child(argv: list[str]) -> None:
    """The child process of a zoo build: ``RECIPE_JSON FOLDER ROOT`` (ROOT may be empty).

    Started by :func:`load_fashion_mnist_zoo` through :func:`cascadekit.data.kernels.run_pinned`;
    it refuses to train without pinned kernels.
    """
    recipe = ZooRecipe.from_dict(json.loads(argv[0]))
    if recipe.kernels != KERNELS_ID or not kernels_pinned():
        raise CascadeError(
            f"This child trains with pinned kernels {KERNELS_ID!r}; run it through "
            "load_fashion_mnist_zoo(), not by hand."
        )
    root = Path(argv[2]) if argv[2] else None
    try:
        _train_and_save(recipe, Path(argv[1]), root, report_progress)
    except CascadeError as exc:  # the parent raises it again, type and message
        report_error(exc)
        raise SystemExit(1) from None
