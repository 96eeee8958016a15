"""A real, small detection task: Fashion-MNIST items placed on larger canvases.

Each image is a black ``canvas x canvas`` square (64 x 64 by default) holding 1 to
``max_items`` Fashion-MNIST items, each rescaled by a random factor in ``[min_scale,
max_scale]`` (bilinear), placed at a random position fully inside the canvas and blended with
``max`` (overlap allowed up to an IoU of ``max_iou`` between true boxes). The true box of an item
is the tight box of its pixels brighter than ``ink`` (so it hugs the garment, not the 28 x 28
frame); its class is the Fashion-MNIST label (10 classes).

Items never repeat across splits: ``train`` and ``val`` canvases take disjoint items of the
60,000-image train file (rows of one seeded permutation: ``train`` the first 50,000, ``val`` the
last 10,000), ``test`` canvases take items of the 10,000-image t10k file. Everything is drawn
from ``numpy.random.default_rng`` with a fixed seed: the same arguments give the same data.

Examples
--------
>>> from cascadekit.detection.data import make_canvas_dataset
>>> ds = make_canvas_dataset(5, split="test", random_state=0)
>>> ds.images.shape, ds.images.dtype, len(ds.boxes)
((5, 64, 64), dtype('uint8'), 5)
>>> all(1 <= len(b) <= 4 for b in ds.boxes)
True
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import zoom

from ..data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from ..errors import ParameterError, UnknownNameError
from .nms import iou_unchecked

__all__ = ["DETECTION_SPLITS", "CanvasSpec", "DetectionDataset", "make_canvas_dataset"]

DETECTION_SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}
_N_TRAIN_POOL = 50_000


@dataclass(frozen=True)
class CanvasSpec:
    """How canvases are drawn (every field enters a detector recipe's cache key).

    Examples
    --------
    >>> CanvasSpec().canvas, CanvasSpec().max_items
    (64, 4)
    """

    canvas: int = 64
    min_items: int = 1
    max_items: int = 4
    min_scale: float = 0.8
    max_scale: float = 1.25
    max_iou: float = 0.2
    ink: int = 30

    def __post_init__(self) -> None:
        if not 1 <= self.min_items <= self.max_items:
            raise ParameterError(
                f"Expected 1 <= min_items <= max_items; got {self.min_items}, {self.max_items}."
            )
        if not 0.1 <= self.min_scale <= self.max_scale:
            raise ParameterError(
                f"Expected 0.1 <= min_scale <= max_scale; got {self.min_scale}, {self.max_scale}."
            )
        if self.canvas < int(np.ceil(28 * self.max_scale)):
            raise ParameterError(
                f"Expected canvas >= 28 * max_scale = {28 * self.max_scale:.0f} pixels so an item "
                f"fits; got canvas={self.canvas}."
            )
        if not 0.0 <= self.max_iou <= 1.0:
            raise ParameterError(f"Expected max_iou in [0, 1]; got {self.max_iou}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain-value form (for recipe hashes)."""
        return asdict(self)


@dataclass(eq=False)
class DetectionDataset:
    """Canvases with their true boxes and classes.

    Attributes
    ----------
    images : ndarray of uint8, shape (n, canvas, canvas)
        Raw pixels 0..255.
    boxes : list of ndarray of float32, shape (k_i, 4)
        True ``(x1, y1, x2, y2)`` boxes of image ``i`` in pixels (``x2``, ``y2`` exclusive).
    labels : list of ndarray of int64, shape (k_i,)
        Their Fashion-MNIST classes (0..9).
    spec : CanvasSpec
    split : str
    random_state : int
    """

    images: NDArray[np.uint8]
    boxes: list[NDArray[np.float32]]
    labels: list[NDArray[np.int64]]
    spec: CanvasSpec
    split: str
    random_state: int

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes (10)."""
        return len(FASHION_MNIST_CLASSES)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Fashion-MNIST class names."""
        return FASHION_MNIST_CLASSES

    def targets(self) -> list[dict[str, np.ndarray]]:
        """Ground truth as one ``{"boxes", "labels"}`` dict per image (the mAP input format)."""
        return [{"boxes": b, "labels": lab} for b, lab in zip(self.boxes, self.labels, strict=True)]

    def subset(self, index: Any) -> DetectionDataset:
        """The images ``index`` (an index array or slice), in that order."""
        ix = np.arange(len(self))[index]
        return DetectionDataset(
            images=self.images[ix],
            boxes=[self.boxes[i] for i in ix],
            labels=[self.labels[i] for i in ix],
            spec=self.spec,
            split=self.split,
            random_state=self.random_state,
        )


def _item_pool(
    split: str, random_state: int, root: str | os.PathLike[str] | None
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    if split == "test":
        return load_fashion_mnist("test", root)
    images, labels = load_fashion_mnist("train", root)
    perm = np.random.default_rng([random_state, 99]).permutation(images.shape[0])
    rows = perm[:_N_TRAIN_POOL] if split == "train" else perm[_N_TRAIN_POOL:]
    return images[rows], labels[rows]


def _tight_box(patch: NDArray[np.uint8], ink: int) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(patch > ink)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def make_canvas_dataset(
    n_images: int,
    split: Literal["train", "val", "test"] = "train",
    *,
    random_state: int = 0,
    spec: CanvasSpec | None = None,
    root: str | os.PathLike[str] | None = None,
) -> DetectionDataset:
    """Draw ``n_images`` canvases of ``split`` with a fixed seed.

    Parameters
    ----------
    n_images : int
        Number of canvases, >= 1.
    split : {"train", "val", "test"}
        Which items are used (see the module docstring); the splits share no item.
    random_state : int, default=0
    spec : CanvasSpec, optional
        Canvas size, items per image, scales, overlap; defaults to ``CanvasSpec()``.
    root : path, optional
        Folder of the Fashion-MNIST IDX files (see :func:`cascadekit.data.load_fashion_mnist`).

    Returns
    -------
    DetectionDataset

    Examples
    --------
    >>> ds = make_canvas_dataset(3, "val", random_state=1, spec=CanvasSpec(canvas=48, max_items=2))
    >>> ds.images.shape, [len(b) <= 2 for b in ds.boxes]
    ((3, 48, 48), [True, True, True])
    >>> again = make_canvas_dataset(3, "val", random_state=1, spec=ds.spec)
    >>> bool((again.images == ds.images).all())
    True
    """
    if split not in _SPLIT_ID:
        raise UnknownNameError(f"Expected split in {list(DETECTION_SPLITS)}; got {split!r}.")
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise ParameterError(f"Expected n_images to be an integer >= 1; got {n_images!r}.")
    spec = CanvasSpec() if spec is None else spec
    if not isinstance(spec, CanvasSpec):
        raise ParameterError(f"Expected spec to be a CanvasSpec; got {type(spec).__name__}.")
    pool_x, pool_y = _item_pool(split, random_state, root)
    rng = np.random.default_rng([random_state, _SPLIT_ID[split], 7])
    order = rng.permutation(pool_x.shape[0])
    cursor = 0
    size = spec.canvas
    images = np.zeros((int(n_images), size, size), dtype=np.uint8)
    all_boxes: list[NDArray[np.float32]] = []
    all_labels: list[NDArray[np.int64]] = []
    for i in range(int(n_images)):
        want = int(rng.integers(spec.min_items, spec.max_items + 1))
        boxes: list[tuple[int, int, int, int]] = []
        labels: list[int] = []
        for _ in range(want):
            row = order[cursor % order.shape[0]]
            cursor += 1
            scale = float(rng.uniform(spec.min_scale, spec.max_scale))
            item = np.clip(zoom(pool_x[row].astype(np.float32), scale, order=1), 0, 255)
            item = item.astype(np.uint8)
            tight = _tight_box(item, spec.ink)
            if tight is None:
                continue
            h, w = item.shape
            for _try in range(20):
                y0 = int(rng.integers(0, size - h + 1))
                x0 = int(rng.integers(0, size - w + 1))
                box = (x0 + tight[0], y0 + tight[1], x0 + tight[2], y0 + tight[3])
                if boxes:
                    iou = iou_unchecked(np.asarray([box], float), np.asarray(boxes, float))
                    if float(iou.max()) > spec.max_iou:
                        continue
                region = images[i, y0 : y0 + h, x0 : x0 + w]
                np.maximum(region, item, out=region)
                boxes.append(box)
                labels.append(int(pool_y[row]))
                break
        all_boxes.append(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        all_labels.append(np.asarray(labels, dtype=np.int64))
    return DetectionDataset(
        images=images,
        boxes=all_boxes,
        labels=all_labels,
        spec=spec,
        split=split,
        random_state=random_state,
    )
