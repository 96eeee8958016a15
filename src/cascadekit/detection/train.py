"""Train the canvas detectors once, deterministically, and cache them by recipe hash.

A :class:`DetectorRecipe` fixes everything that determines a trained detector (architecture,
canvases, epochs, batch size, learning rate, seed, code version); its :attr:`~DetectorRecipe.key`
names the cache folder ``cache_root() / "detection" / key``. Training draws fresh canvases every
epoch (``images_per_epoch`` from the ``train`` items, seed ``(random_state, epoch)``), uses Adam
with a one-cycle schedule, fixed seeds, deterministic algorithms and ``threads`` torch threads, and
leaves the caller's torch settings and random state as they were.

Torch is imported inside the functions (``pip install "cascadekit[torch]"``).

Examples
--------
>>> from cascadekit.detection.train import default_detector_recipes
>>> small, large = default_detector_recipes(reduced=True)
>>> small.arch, large.arch, small.key != large.key
('small_s8', 'xlarge', True)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..costs import count_flops, import_torch
from ..data.cache import atomic_write_bytes, atomic_write_json, cache_root, read_json, recipe_hash
from ..data.kernels import deterministic
from ..errors import ParameterError, UnknownNameError
from ._archs import DETECTOR_ARCHS
from .data import CanvasSpec, make_canvas_dataset

__all__ = [
    "DEFAULT_PAIR",
    "DETECTION_CODE_VERSION",
    "DETECTOR_PAIRS",
    "DetectorRecipe",
    "TrainedDetector",
    "default_detector_recipes",
    "load_detector",
    "load_detector_pair",
    "predict",
]

#: Bump when the network, loss or training code changes the trained detectors.
DETECTION_CODE_VERSION = "canvas-detector/1"
_SUBDIR = "detection"


@dataclass(frozen=True)
class DetectorRecipe:
    """Everything that determines one trained detector; :attr:`key` is its hash."""

    name: str
    arch: str
    epochs: int
    images_per_epoch: int
    batch_size: int = 32
    lr: float = 4e-3
    weight_decay: float = 1e-4
    random_state: int = 0
    threads: int = 1
    spec: CanvasSpec = field(default_factory=CanvasSpec)
    code_version: str = DETECTION_CODE_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain-value form (hashed for :attr:`key`); ``random_state`` is stored as ``"seed"``
        (its earlier name), so the keys of existing cache entries stay valid."""
        return {
            "name": self.name,
            "arch": self.arch,
            "arch_params": DETECTOR_ARCHS.get(self.arch, {}),
            "epochs": int(self.epochs),
            "images_per_epoch": int(self.images_per_epoch),
            "batch_size": int(self.batch_size),
            "lr": float(self.lr),
            "weight_decay": float(self.weight_decay),
            "seed": int(self.random_state),
            "threads": int(self.threads),
            "spec": self.spec.to_dict(),
            "code_version": self.code_version,
        }

    @property
    def key(self) -> str:
        """Hash of the recipe: its cache folder's name."""
        return recipe_hash(self.to_dict())


#: Named (student, teacher) pairs: ``(arch, epochs)`` of each, 4,000 fresh canvases per epoch.
#: ``"v1"`` is the first pair (``small`` -> ``large``, 7.4x FLOPs apart, student 61% of the
#: teacher's val mAP); ``"s8"`` pairs the cheaper stride-8 ``small_s8`` student, trained 8
#: epochs, with the same ``large`` teacher (16x FLOPs apart, student 74%); ``"s8_xl"`` (the
#: default) gives it the wider ``xlarge`` teacher (33x FLOPs apart, student 71% of the teacher's
#: val mAP: the closest to EBJR's EfficientDet-D0 -> D4, ~22x and ~70%).
DETECTOR_PAIRS: dict[str, tuple[tuple[str, int], tuple[str, int]]] = {
    "v1": (("small", 4), ("large", 4)),
    "s8": (("small_s8", 8), ("large", 4)),
    "s8_xl": (("small_s8", 8), ("xlarge", 4)),
}
#: The pair of :func:`default_detector_recipes` and of the benchmark.
DEFAULT_PAIR = "s8_xl"


def default_detector_recipes(
    reduced: bool = False,
    random_state: int = 0,
    threads: int | None = None,
    pair: str = DEFAULT_PAIR,
) -> tuple[DetectorRecipe, DetectorRecipe]:
    """The student and teacher recipes of the benchmark (``pair`` in :data:`DETECTOR_PAIRS`).

    ``reduced=True`` trains on fewer canvases (for tests): the same networks, worse detectors.
    ``threads`` defaults to 2 (1 for the reduced recipe, which tests run beside other work).
    The recipes of ``pair="v1"`` are exactly those of the first release (same cache keys).

    Examples
    --------
    >>> s, t = default_detector_recipes()
    >>> s.arch, s.images_per_epoch * s.epochs, t.arch, t.images_per_epoch * t.epochs
    ('small_s8', 32000, 'xlarge', 16000)
    >>> [r.arch for r in default_detector_recipes(pair="v1")]
    ['small', 'large']
    >>> default_detector_recipes(pair="v2")
    Traceback (most recent call last):
    ...
    cascadekit.errors.UnknownNameError: Unknown detector pair 'v2'; expected one of v1, s8, s8_xl.
    """
    if pair not in DETECTOR_PAIRS:
        raise UnknownNameError(
            f"Unknown detector pair {pair!r}; expected one of {', '.join(DETECTOR_PAIRS)}."
        )
    th = (1 if reduced else 2) if threads is None else int(threads)
    (arch_s, ep_s), (arch_t, ep_t) = DETECTOR_PAIRS[pair]
    if reduced:
        n, ep_s, ep_t = 1500, 2, 2
    else:
        n = 4000
    return (
        DetectorRecipe("student", arch_s, ep_s, n, random_state=random_state, threads=th),
        DetectorRecipe("teacher", arch_t, ep_t, n, random_state=random_state, threads=th),
    )


@dataclass(eq=False)
class TrainedDetector:
    """A trained detector with its recipe and cost.

    Attributes
    ----------
    recipe : DetectorRecipe
    model : torch.nn.Module
        In eval mode, on CPU; ``model(x)`` returns class and box-bin logits.
    flops : int
        FLOPs per image (2 x multiply-adds, :func:`cascadekit.costs.count_flops`).
    params : int
    trained : bool
        True when this call trained it, False when it came from the cache.
    train_seconds : float
        Wall-clock training time (of the run that trained it).
    path : Path
        Cache folder.
    """

    recipe: DetectorRecipe
    model: Any
    flops: int
    params: int
    trained: bool
    train_seconds: float
    path: Path

    def predict(self, images: np.ndarray, **decode_options: Any) -> list[dict[str, np.ndarray]]:
        """Detections for raw canvases ``(n, H, W)``: one dict per image (see :func:`predict`)."""
        return predict(self.model, images, **decode_options)


def predict(
    model: Any, images: np.ndarray, batch_size: int = 256, **decode_options: Any
) -> list[dict[str, np.ndarray]]:
    """Run a detector on raw canvases ``(n, H, W)`` and decode its outputs.

    Returns one dict per image with ``boxes``, ``labels``, ``scores``, ``logits`` and
    ``box_logits`` (see :func:`cascadekit.detection.nets.decode` for ``decode_options``).
    """
    torch = import_torch()
    from .nets import decode

    out: list[dict[str, np.ndarray]] = []
    x = np.asarray(images)
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
            cls, box = model(batch)
            out.extend(decode(cls, box, model.stride, **decode_options))
    return out


def _train(
    recipe: DetectorRecipe, root: Path | None, progress: Callable[[str, float], None] | None
) -> Any:
    torch = import_torch()
    from .nets import assign_targets, build_detector, detector_loss

    model_seed = int(recipe_hash({"seed": recipe.random_state, "name": recipe.name}, length=8), 16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model_seed)
        model = build_detector(recipe.arch)
        grid = recipe.spec.canvas // model.stride
        steps_per_epoch = -(-recipe.images_per_epoch // recipe.batch_size)
        total = recipe.epochs * steps_per_epoch
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=recipe.lr, total_steps=total, pct_start=0.15
        )
        gen = torch.Generator().manual_seed(model_seed + 1)
        step = 0
        for epoch in range(recipe.epochs):
            ds = make_canvas_dataset(
                recipe.images_per_epoch,
                "train",
                random_state=recipe.random_state * 1000 + epoch,
                spec=recipe.spec,
                root=root,
            )
            classes, gt = assign_targets(ds.boxes, ds.labels, grid, model.stride)
            x = torch.from_numpy(ds.images)
            cl = torch.from_numpy(classes)
            gb = torch.from_numpy(gt)
            order = torch.randperm(len(ds), generator=gen)
            model.train()
            for start in range(0, len(ds), recipe.batch_size):
                idx = order[start : start + recipe.batch_size]
                cls_logits, box_logits = model(x[idx])
                loss = detector_loss(cls_logits, box_logits, cl[idx], gb[idx], model.stride)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                if progress is not None and (step % 20 == 0 or step == total):
                    progress(
                        f"training {recipe.name} (epoch {epoch + 1}/{recipe.epochs}, "
                        f"loss {loss.item():.3f})",
                        step / total,
                    )
    model.eval()
    return model


def load_detector(
    recipe: DetectorRecipe,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: Callable[[str, float], None] | None = None,
) -> TrainedDetector:
    """Load the detector of ``recipe`` from the cache, training it first if needed.

    Parameters
    ----------
    recipe : DetectorRecipe
    cache_dir : path, optional
        Defaults to :func:`cascadekit.data.cache.cache_root`.
    root : path, optional
        Folder of the Fashion-MNIST IDX files.
    force : bool
        Retrain even when cached.
    progress : callable, optional
        ``progress(description, fraction)`` while training.

    Examples
    --------
    >>> from cascadekit.detection import default_detector_recipes, load_detector
    >>> det = load_detector(default_detector_recipes(reduced=True)[0])  # doctest: +SKIP
    >>> det.flops  # doctest: +SKIP
    3103744
    """
    torch = import_torch()
    from .nets import build_detector

    if not isinstance(recipe, DetectorRecipe):
        raise ParameterError(f"Expected a DetectorRecipe; got {type(recipe).__name__}.")
    folder = cache_root(cache_dir) / _SUBDIR / recipe.key
    meta_path = folder / "meta.json"
    data_root = Path(root) if root is not None else None
    model = None
    trained = False
    seconds = float("nan")
    if not force and meta_path.is_file():
        try:
            meta = read_json(meta_path)
            if meta.get("key") == recipe.key:
                model = build_detector(recipe.arch)
                state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
                model.load_state_dict(state)
                model.eval()
                seconds = float(meta.get("train_seconds", float("nan")))
        except Exception:  # a partial or corrupt entry: retrain it
            model = None
    if model is None:
        meta_path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        with deterministic(torch, threads=recipe.threads):
            model = _train(recipe, data_root, progress)
        seconds = time.perf_counter() - t0
        import io

        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        atomic_write_bytes(folder / "model.pt", buf.getvalue())
        atomic_write_json(folder / "recipe.json", recipe.to_dict())
        atomic_write_json(
            folder / "meta.json",
            {"key": recipe.key, "train_seconds": seconds, "torch_version": str(torch.__version__)},
        )
        trained = True
    size = recipe.spec.canvas
    with torch.random.fork_rng(devices=[]):
        flops = count_flops(model, torch.zeros(1, size, size))
    params = int(sum(p.numel() for p in model.parameters()))
    return TrainedDetector(recipe, model, flops, params, trained, seconds, folder)


def load_detector_pair(
    recipes: Sequence[DetectorRecipe] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> tuple[TrainedDetector, TrainedDetector]:
    """The (student, teacher) detectors of :func:`default_detector_recipes` (or ``recipes``).

    Extra options (``reduced``, ``pair``, ``root``, ``force``, ``progress``) are passed on.
    """
    reduced = bool(options.pop("reduced", False))
    pair = str(options.pop("pair", DEFAULT_PAIR))
    rs = default_detector_recipes(reduced, pair=pair) if recipes is None else tuple(recipes)
    if len(rs) != 2:
        raise ParameterError(f"Expected two recipes (student, teacher); got {len(rs)}.")
    return load_detector(rs[0], cache_dir, **options), load_detector(rs[1], cache_dir, **options)
