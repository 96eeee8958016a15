"""Fashion-MNIST loader and splits: real files, and hand-made broken ones for every error path."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from cascadekit.data import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ENV,
    SPLITS,
    fashion_mnist_dir,
    fashion_mnist_split_indices,
    fashion_mnist_split_sizes,
    load_fashion_mnist,
    load_fashion_mnist_splits,
)
from cascadekit.errors import CascadeError, DataNotFoundError, ParameterError, UnknownNameError

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

pytestmark = pytest.mark.skipif(
    not (DEFAULT_FASHION_MNIST_DIR / FILES["test"][0]).is_file(),
    reason="needs `sudo apt-get install -y dataset-fashion-mnist`",
)


def _idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + payload


def _write_pair(
    folder: Path,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    split: str = "test",
    image_magic: int = 0x803,
    label_magic: int = 0x801,
    gz: bool = True,
) -> None:
    img = _idx_bytes(image_magic, images.shape, images.astype(np.uint8).tobytes())
    lab = _idx_bytes(label_magic, labels.shape, labels.astype(np.uint8).tobytes())
    for name, data in zip(FILES[split], (img, lab), strict=True):
        if gz:
            (folder / name).write_bytes(gzip.compress(data))
        else:
            (folder / name.removesuffix(".gz")).write_bytes(data)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)


# ------------------------------------------------------------------------------ real files


@pytest.mark.parametrize(("split", "n"), [("train", 60_000), ("test", 10_000)])
def test_real_files_shapes_and_balanced_classes(split: str, n: int) -> None:
    images, labels = load_fashion_mnist(split)  # type: ignore[arg-type]
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    # Fashion-MNIST is exactly balanced: n / 10 images per class
    assert np.bincount(labels, minlength=10).tolist() == [n // 10] * 10
    assert int(images.max()) == 255 and int(images.min()) == 0
    assert len(FASHION_MNIST_CLASSES) == 10


def test_env_var_and_root_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FILES["test"]:
        (tmp_path / name).symlink_to(DEFAULT_FASHION_MNIST_DIR / name)
    ref_x, ref_y = load_fashion_mnist("test")
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    assert fashion_mnist_dir() == tmp_path
    x, y = load_fashion_mnist("test")
    assert np.array_equal(x, ref_x) and np.array_equal(y, ref_y)
    # the argument wins over the environment variable
    assert fashion_mnist_dir(DEFAULT_FASHION_MNIST_DIR) == DEFAULT_FASHION_MNIST_DIR


def test_reads_uncompressed_files(tmp_path: Path) -> None:
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    labels = np.array([3, 9])
    _write_pair(tmp_path, images, labels, gz=False)
    x, y = load_fashion_mnist("test", root=tmp_path)
    assert np.array_equal(x, images) and y.tolist() == [3, 9]


# ------------------------------------------------------------------------------ errors


def test_missing_files_name_path_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"t10k-images-idx3-ubyte\.gz") as info:
        load_fashion_mnist("test", root=tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "sudo apt-get install -y dataset-fashion-mnist" in str(info.value)
    assert FASHION_MNIST_ENV in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_missing_files_via_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="nowhere"):
        load_fashion_mnist("train")


def test_unknown_split() -> None:
    with pytest.raises(UnknownNameError, match="load_fashion_mnist_splits"):
        load_fashion_mnist("calibrate")  # type: ignore[arg-type]


def test_bad_magic(tmp_path: Path) -> None:
    _write_pair(tmp_path, np.zeros((2, 28, 28)), np.zeros(2), image_magic=0x801)
    with pytest.raises(CascadeError, match=r"magic number 0x00000803.*got 0x00000801"):
        load_fashion_mnist("test", root=tmp_path)


def test_labels_with_images_magic(tmp_path: Path) -> None:
    _write_pair(tmp_path, np.zeros((2, 28, 28)), np.zeros(2), label_magic=0x803)
    with pytest.raises(CascadeError, match="magic number 0x00000801"):
        load_fashion_mnist("test", root=tmp_path)


def test_truncated_payload(tmp_path: Path) -> None:
    _write_pair(tmp_path, np.zeros((2, 28, 28)), np.zeros(2))
    raw = gzip.decompress((tmp_path / FILES["test"][0]).read_bytes())
    (tmp_path / FILES["test"][0]).write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(CascadeError, match="truncated or corrupt"):
        load_fashion_mnist("test", root=tmp_path)


def test_truncated_header(tmp_path: Path) -> None:
    _write_pair(tmp_path, np.zeros((2, 28, 28)), np.zeros(2))
    (tmp_path / FILES["test"][1]).write_bytes(gzip.compress(b"\x00\x00"))
    with pytest.raises(CascadeError, match="8-byte header"):
        load_fashion_mnist("test", root=tmp_path)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_FASHION_MNIST_DIR / FILES["test"][1], tmp_path / FILES["test"][1])
    data = (DEFAULT_FASHION_MNIST_DIR / FILES["test"][0]).read_bytes()
    (tmp_path / FILES["test"][0]).write_bytes(data[: len(data) // 2])
    with pytest.raises(CascadeError, match="corrupt or truncated"):
        load_fashion_mnist("test", root=tmp_path)


def test_images_and_labels_disagree(tmp_path: Path) -> None:
    _write_pair(tmp_path, np.zeros((3, 28, 28)), np.zeros(2))
    with pytest.raises(CascadeError, match="one label each"):
        load_fashion_mnist("test", root=tmp_path)


def test_label_out_of_range(tmp_path: Path) -> None:
    _write_pair(tmp_path, np.zeros((2, 28, 28)), np.array([1, 12]))
    with pytest.raises(CascadeError, match="labels 0..9"):
        load_fashion_mnist("test", root=tmp_path)


# ------------------------------------------------------------------------------ splits


@pytest.mark.parametrize("reduced", [False, True])
def test_split_indices_disjoint_deterministic(reduced: bool) -> None:
    sizes = fashion_mnist_split_sizes(reduced)
    a, b = (
        fashion_mnist_split_indices(sizes, random_state=0),
        fashion_mnist_split_indices(sizes, random_state=0),
    )
    assert list(a) == list(SPLITS)
    for s in SPLITS:
        assert len(a[s]) == sizes[s] and np.array_equal(a[s], b[s])
        assert len(np.unique(a[s])) == sizes[s]
    from_train = np.concatenate([a["train"], a["select"], a["calibrate"]])
    assert len(np.unique(from_train)) == len(from_train)  # disjoint
    assert from_train.max() < 60_000 and a["test"].max() < 10_000
    c = fashion_mnist_split_indices(sizes, random_state=1)
    assert not np.array_equal(a["train"], c["train"])


def test_full_test_split_is_whole_t10k() -> None:
    assert np.array_equal(fashion_mnist_split_indices()["test"], np.arange(10_000))


@pytest.mark.parametrize(
    ("sizes", "match"),
    [
        ({"train": 60_000, "select": 1, "calibrate": 1, "test": 1}, "train file"),
        ({"train": 10, "select": 1, "calibrate": 1, "test": 10_001}, "t10k"),
        ({"train": 10, "select": 0, "calibrate": 1, "test": 1}, "positive"),
        ({"train": 10, "select": 1, "test": 1}, "exactly the splits"),
    ],
)
def test_split_size_errors(sizes: dict[str, int], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        fashion_mnist_split_indices(sizes)


def test_load_splits_matches_files() -> None:
    splits = load_fashion_mnist_splits(reduced=True, random_state=3)
    idx = fashion_mnist_split_indices(fashion_mnist_split_sizes(True), random_state=3)
    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    for s in SPLITS:
        x, y = splits[s]
        src_x, src_y = (test_x, test_y) if s == "test" else (train_x, train_y)
        assert np.array_equal(x, src_x[idx[s]]) and np.array_equal(y, src_y[idx[s]])
        assert y.min() >= 0 and y.max() <= 9
    # every class is present in each split of the reduced variant
    assert all(len(np.unique(splits[s][1])) == 10 for s in SPLITS)
