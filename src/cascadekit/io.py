"""Reading saved model outputs from files: ``.npy``, ``.npz``, ``.csv`` and ``.parquet``.

A logits file holds one row per input and one column per class. A labels file (or a last stage
that gives labels only) holds a 1-D integer array (one column in CSV/parquet).

Examples
--------
>>> import numpy as np, tempfile, os
>>> from cascadekit.io import load_array
>>> d = tempfile.mkdtemp()
>>> np.save(os.path.join(d, "s.npy"), np.eye(3))
>>> load_array(os.path.join(d, "s.npy")).shape
(3, 3)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CascadeError, DataNotFoundError, MissingDependencyError, UnknownNameError

__all__ = ["SUPPORTED_SUFFIXES", "load_array"]

SUPPORTED_SUFFIXES = (".npy", ".npz", ".csv", ".parquet")


def load_array(path: str | os.PathLike[str], key: str | None = None) -> np.ndarray:
    """Load one array from ``path``.

    Parameters
    ----------
    path : path-like
        ``.npy``; ``.npz`` (the first array, or the one named ``key``); ``.csv`` (numbers, with
        an optional header row; one column per class); ``.parquet`` (one column per class; needs
        ``pyarrow``).
    key : str, optional
        Array name inside a ``.npz`` file.

    Returns
    -------
    ndarray
        2-D for several columns; 1-D for a single column (labels).
    """
    p = Path(path)
    if not p.exists():
        raise DataNotFoundError(
            f"Expected a file at {str(p)!r}; nothing is there. Check the path (saved logits are "
            f"{', '.join(SUPPORTED_SUFFIXES)} files)."
        )
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            arr = _load_npz(p, key)
        elif suffix == ".csv":
            arr = _load_csv(p)
        elif suffix == ".parquet":
            arr = _load_parquet(p)
        else:
            raise UnknownNameError(
                f"Expected a file ending in one of {', '.join(SUPPORTED_SUFFIXES)}; got "
                f"{p.name!r}. Save the logits with numpy.save (one row per input)."
            )
    except CascadeError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise CascadeError(
            f"Could not read {str(p)!r} as a {suffix} array: {exc}. Check that the file is "
            "complete and numeric."
        ) from exc
    if key is not None and suffix != ".npz":
        raise UnknownNameError(f"key={key!r} only applies to .npz files; got {p.name!r}.")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr


def _load_npz(p: Path, key: str | None) -> np.ndarray:
    with np.load(p, allow_pickle=False) as npz:
        names = list(npz.files)
        if not names:
            raise CascadeError(f"Expected at least one array in {str(p)!r}; the archive is empty.")
        if key is None:
            return np.asarray(npz[names[0]])
        if key not in names:
            raise UnknownNameError(
                f"No array named {key!r} in {str(p)!r}; it holds {', '.join(names)}. "
                "Pass one of those with --key."
            )
        return np.asarray(npz[key])


def _load_csv(p: Path) -> np.ndarray:
    with p.open("r", encoding="utf-8") as fh:
        first = fh.readline()
    try:
        [float(v) for v in first.strip().split(",") if v.strip()]
        skip = 0
    except ValueError:
        skip = 1  # a header row
    arr = np.loadtxt(p, delimiter=",", skiprows=skip, ndmin=2)
    return _int_if_integral(arr)


def _load_parquet(p: Path) -> np.ndarray:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(
            'Reading .parquet files needs pyarrow: pip install "cascadekit[parquet]".'
        ) from exc
    table: Any = pq.read_table(p)
    cols = [np.asarray(table.column(i).to_numpy()) for i in range(table.num_columns)]
    if not cols:
        raise CascadeError(f"Expected at least one column in {str(p)!r}; it has none.")
    return _int_if_integral(np.column_stack(cols))


def _int_if_integral(arr: np.ndarray) -> np.ndarray:
    """A single integral column read from text is labels: return it as int64."""
    if arr.ndim == 2 and arr.shape[1] == 1 and np.issubdtype(arr.dtype, np.floating):
        col = arr[:, 0]
        if np.all(np.isfinite(col)) and np.all(col == np.round(col)):
            return col.astype(np.int64)[:, None]
    return arr
