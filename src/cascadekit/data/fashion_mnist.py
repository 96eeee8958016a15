"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist``, and its fixed splits.

The four IDX gzip files live in ``/usr/share/datasets/fashion-mnist/`` once the package is
installed (``sudo apt-get install -y dataset-fashion-mnist``). Another folder can be given with
``root=`` or the environment variable ``CASCADEKIT_FASHION_MNIST_DIR``.

The benchmark uses four disjoint splits drawn with a fixed seed:

==========  =====================  ===============  ======================================
split       drawn from             size (reduced)   used for
==========  =====================  ===============  ======================================
train       the 60,000 train file  50,000 (8,000)   fitting the models
select      the 60,000 train file  5,000 (1,000)    choosing a score, tuning temperature
calibrate   the 60,000 train file  5,000 (2,000)    thresholds and guarantees
test        the 10,000 t10k file   10,000 (2,000)   reported figures only
==========  =====================  ===============  ======================================

Examples
--------
>>> from cascadekit.data import FASHION_MNIST_CLASSES, fashion_mnist_split_sizes
>>> FASHION_MNIST_CLASSES[0], len(FASHION_MNIST_CLASSES)
('T-shirt/top', 10)
>>> fashion_mnist_split_sizes(reduced=True)
{'train': 8000, 'select': 1000, 'calibrate': 2000, 'test': 2000}
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import CascadeError, DataNotFoundError, ParameterError, UnknownNameError

__all__ = [
    "DEFAULT_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ENV",
    "SPLITS",
    "fashion_mnist_dir",
    "fashion_mnist_split_indices",
    "fashion_mnist_split_sizes",
    "load_fashion_mnist",
    "load_fashion_mnist_splits",
]

DEFAULT_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "CASCADEKIT_FASHION_MNIST_DIR"
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SPLITS: tuple[str, ...] = ("train", "select", "calibrate", "test")

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
_FULL_SIZES = {"train": 50_000, "select": 5_000, "calibrate": 5_000, "test": 10_000}
_REDUCED_SIZES = {"train": 8_000, "select": 1_000, "calibrate": 2_000, "test": 2_000}
_N_TRAIN_FILE = 60_000
_N_TEST_FILE = 10_000
_INSTALL_HINT = (
    "Install it with `sudo apt-get install -y dataset-fashion-mnist`, or set "
    f"{FASHION_MNIST_ENV} to a folder holding the four IDX gzip files."
)


def fashion_mnist_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder the Fashion-MNIST files are read from.

    ``root`` wins, then the environment variable ``CASCADEKIT_FASHION_MNIST_DIR``, then
    ``/usr/share/datasets/fashion-mnist``. The folder is not checked here.

    Examples
    --------
    >>> str(fashion_mnist_dir("/tmp/fmnist"))
    '/tmp/fmnist'
    """
    if root is not None:
        return Path(root)
    env = os.environ.get(FASHION_MNIST_ENV)
    return Path(env) if env else DEFAULT_FASHION_MNIST_DIR


def find_file(folder: Path, name: str) -> Path:
    path = folder / name
    if path.is_file():
        return path
    plain = folder / name.removesuffix(".gz")  # also accept already decompressed files
    if plain.is_file():
        return plain
    raise DataNotFoundError(
        f"Expected the Fashion-MNIST file {path} but it does not exist. {_INSTALL_HINT}"
    )


def read_idx(path: Path, magic: int, ndim: int) -> NDArray[np.uint8]:
    """Read one IDX file (gzip or plain) and check its magic number and length."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise CascadeError(
            f"Could not read the Fashion-MNIST file {path}: {exc}. The file looks corrupt or "
            f"truncated; reinstall it (`sudo apt-get install --reinstall -y "
            f"dataset-fashion-mnist`) or point {FASHION_MNIST_ENV} at good copies."
        ) from exc
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise CascadeError(
            f"Expected the IDX file {path} to start with a {header}-byte header; it holds only "
            f"{len(raw)} bytes. The file is truncated: reinstall dataset-fashion-mnist."
        )
    got_magic = int.from_bytes(raw[:4], "big")
    if got_magic != magic:
        raise CascadeError(
            f"Expected IDX magic number 0x{magic:08x} in {path}; got 0x{got_magic:08x}. This is "
            "not a Fashion-MNIST IDX file of the expected kind (images or labels): check the "
            "folder, or reinstall dataset-fashion-mnist."
        )
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise CascadeError(
            f"Expected {expected} data bytes in {path} (shape {tuple(dims)}); got "
            f"{len(raw) - header}. The file is truncated or corrupt: reinstall "
            "dataset-fashion-mnist."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_fashion_mnist(
    split: Literal["train", "test"] = "train", root: str | os.PathLike[str] | None = None
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Load one of the two Fashion-MNIST files as raw pixels and labels.

    Parameters
    ----------
    split : {"train", "test"}
        ``"train"`` is the 60,000-image file, ``"test"`` the 10,000-image ``t10k`` file. The
        benchmark's four splits come from :func:`load_fashion_mnist_splits`.
    root : path, optional
        Folder with the IDX files. Defaults to ``$CASCADEKIT_FASHION_MNIST_DIR`` or
        ``/usr/share/datasets/fashion-mnist``.

    Returns
    -------
    images : ndarray of uint8, shape (n, 28, 28)
        Raw pixels 0..255 (read-only view of the file's bytes).
    labels : ndarray of int64, shape (n,)
        Class indices in 0..9; names in :data:`FASHION_MNIST_CLASSES`.

    Raises
    ------
    DataNotFoundError
        A file is missing; the message names the path and the install command.
    CascadeError
        A file is corrupt: bad magic number, truncated, or images and labels disagree.

    Examples
    --------
    >>> images, labels = load_fashion_mnist("test")
    >>> images.shape, images.dtype, labels.shape, labels.dtype
    ((10000, 28, 28), dtype('uint8'), (10000,), dtype('int64'))
    """
    if split not in FILES:
        raise UnknownNameError(
            f"Expected split 'train' or 'test' (the two Fashion-MNIST files); got {split!r}. "
            "For the benchmark's train/select/calibrate/test splits use "
            "load_fashion_mnist_splits()."
        )
    folder = fashion_mnist_dir(root)
    image_name, label_name = FILES[split]
    image_path, label_path = find_file(folder, image_name), find_file(folder, label_name)
    images = read_idx(image_path, _IMAGES_MAGIC, 3)
    labels = read_idx(label_path, LABELS_MAGIC, 1).astype(np.int64)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise CascadeError(
            f"Expected {image_path} to hold (n, 28, 28) images with one label each in "
            f"{label_path}; got images {images.shape} and {labels.shape[0]} labels. Reinstall "
            "dataset-fashion-mnist."
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise CascadeError(
            f"Expected labels 0..9 in {label_path}; got a maximum of {int(labels.max())}. "
            "The file is corrupt: reinstall dataset-fashion-mnist."
        )
    return images, labels


def fashion_mnist_split_sizes(reduced: bool = False) -> dict[str, int]:
    """Return the size of each benchmark split (``reduced=True``: the small CI variant).

    Examples
    --------
    >>> fashion_mnist_split_sizes()
    {'train': 50000, 'select': 5000, 'calibrate': 5000, 'test': 10000}
    """
    return dict(_REDUCED_SIZES if reduced else _FULL_SIZES)


def fashion_mnist_split_indices(
    sizes: dict[str, int] | None = None, random_state: int = 0
) -> dict[str, NDArray[np.int64]]:
    """Return the row indices of each split into its source file, drawn with a fixed seed.

    ``train``, ``select`` and ``calibrate`` are disjoint slices of one permutation of the 60,000
    rows of the train file; ``test`` is the whole ``t10k`` file in file order when it asks for
    10,000 rows, and otherwise a seeded subset of it in increasing order.

    Parameters
    ----------
    sizes : dict, optional
        Rows per split (all four keys). Defaults to :func:`fashion_mnist_split_sizes`.
    random_state : int
        Seed of the permutation (``numpy.random.default_rng``).

    Examples
    --------
    >>> idx = fashion_mnist_split_indices(fashion_mnist_split_sizes(reduced=True), random_state=0)
    >>> {k: len(v) for k, v in idx.items()}
    {'train': 8000, 'select': 1000, 'calibrate': 2000, 'test': 2000}
    >>> bool(set(idx["train"]) & set(idx["calibrate"]))
    False
    """
    sizes = fashion_mnist_split_sizes() if sizes is None else dict(sizes)
    if set(sizes) != set(SPLITS):
        raise ParameterError(
            f"Expected sizes for exactly the splits {list(SPLITS)}; got {sorted(sizes)}."
        )
    bad = {k: v for k, v in sizes.items() if int(v) <= 0}
    if bad:
        raise ParameterError(f"Expected positive split sizes; got {bad}.")
    n_from_train = sizes["train"] + sizes["select"] + sizes["calibrate"]
    if n_from_train > _N_TRAIN_FILE:
        raise ParameterError(
            f"Expected train + select + calibrate <= {_N_TRAIN_FILE} (the train file); got "
            f"{n_from_train}. Make the splits smaller."
        )
    if sizes["test"] > _N_TEST_FILE:
        raise ParameterError(
            f"Expected test <= {_N_TEST_FILE} (the t10k file); got {sizes['test']}."
        )
    rng = np.random.default_rng(random_state)
    perm = rng.permutation(_N_TRAIN_FILE).astype(np.int64)
    a, b = sizes["train"], sizes["train"] + sizes["select"]
    out = {"train": perm[:a], "select": perm[a:b], "calibrate": perm[b:n_from_train]}
    if sizes["test"] == _N_TEST_FILE:
        out["test"] = np.arange(_N_TEST_FILE, dtype=np.int64)
    else:
        test_rng = np.random.default_rng([random_state, 1])
        chosen = test_rng.choice(_N_TEST_FILE, size=sizes["test"], replace=False)
        out["test"] = np.sort(chosen).astype(np.int64)
    return out


def load_fashion_mnist_splits(
    reduced: bool = False,
    random_state: int = 0,
    root: str | os.PathLike[str] | None = None,
    sizes: dict[str, int] | None = None,
) -> dict[str, tuple[NDArray[np.uint8], NDArray[np.int64]]]:
    """Load the benchmark's four splits as ``{split: (images uint8 (n,28,28), labels int64)}``.

    Parameters
    ----------
    reduced : bool
        Use the small CI sizes (8,000 / 1,000 / 2,000 / 2,000) instead of the full ones.
    random_state : int
        Seed of the split (see :func:`fashion_mnist_split_indices`).
    root : path, optional
        Folder of the IDX files (see :func:`load_fashion_mnist`).
    sizes : dict, optional
        Explicit sizes per split; overrides ``reduced``.

    Examples
    --------
    >>> splits = load_fashion_mnist_splits(reduced=True)
    >>> [(k, v[0].shape[0]) for k, v in splits.items()]
    [('train', 8000), ('select', 1000), ('calibrate', 2000), ('test', 2000)]
    """
    idx = fashion_mnist_split_indices(
        fashion_mnist_split_sizes(reduced) if sizes is None else sizes, random_state
    )
    train_x, train_y = load_fashion_mnist("train", root)
    test_x, test_y = load_fashion_mnist("test", root)
    out: dict[str, tuple[NDArray[np.uint8], NDArray[np.int64]]] = {}
    for name in SPLITS:
        x, y = (test_x, test_y) if name == "test" else (train_x, train_y)
        out[name] = (x[idx[name]], y[idx[name]])
    return out
