"""Reading saved model outputs from files: ``.npy``, ``.npz``, ``.csv`` and ``.parquet``.

A logits file holds one row per input and one column per class. A labels file (or a last stage
that gives labels only) holds a 1-D integer array (one column in CSV/parquet).

Named columns (a CSV header, parquet column names) are matched to classes, never read by
position: pass the class names in class order (``classes=[...]``), or name the columns
``<prefix><k>`` with one common prefix (``class_0``, ``logit_3``, ``7``), which are put in
numeric order. Index or id columns (pandas' unnamed index, ``Unnamed: 0``, ``index``, ``id``,
``*_id``, ``__index_level_0__``, or a first column holding exactly ``0..n-1``) are dropped.
:func:`read_array` says what it did in :attr:`LoadedArray.notes`.

Examples
--------
>>> import numpy as np, tempfile
>>> from pathlib import Path
>>> from cascadekit.io import load_array, read_array
>>> d = Path(tempfile.mkdtemp())
>>> np.save(d / "s.npy", np.eye(3))
>>> load_array(d / "s.npy").shape
(3, 3)
>>> _ = (d / "s.csv").write_text(",class_1,class_0\\n0,1.5,0.2\\n1,0.1,2.0\\n")
>>> r = read_array(d / "s.csv")
>>> r.array
array([[0.2, 1.5],
       [2. , 0.1]])
>>> r.notes[0]
"dropped column '' of s.csv: an index/id column (pandas writes one unless index=False)"
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._optional import require
from ._validation import encode_labels
from .errors import (
    CascadeError,
    ClassCountError,
    DataNotFoundError,
    EmptyInputError,
    InputShapeError,
    LabelError,
    UnknownNameError,
)

__all__ = ["SUPPORTED_SUFFIXES", "LoadedArray", "encode_labels", "load_array", "read_array"]

SUPPORTED_SUFFIXES = (".npy", ".npz", ".csv", ".parquet")

_INDEX_NAMES = {"", "index", "id", "idx", "__index_level_0__"}
_UNNAMED = re.compile(r"^unnamed: \d+$", re.IGNORECASE)
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


@dataclass
class LoadedArray:
    """An array read from a file, and what was assumed to read it.

    Attributes
    ----------
    array : ndarray
        2-D (one column per class, in class order) or 1-D (labels).
    notes : list of str
        One sentence per assumption or change (a dropped index column, reordered columns,
        the array chosen in an ``.npz``); empty when the file was read as it is.
    """

    array: np.ndarray
    notes: list[str] = field(default_factory=list)


def load_array(
    path: str | os.PathLike[str],
    key: str | None = None,
    *,
    classes: Sequence[Any] | None = None,
) -> np.ndarray:
    """Load one array from ``path`` (:func:`read_array` without the notes).

    Parameters
    ----------
    path : path-like
        ``.npy``; ``.npz`` (the first array, or the one named ``key``); ``.csv`` (numbers, with
        an optional header row; one column per class); ``.parquet`` (one column per class; needs
        ``pyarrow``).
    key : str, optional
        Array name inside a ``.npz`` file.
    classes : sequence, optional
        Class names in class order: named columns are matched to them, and text labels are
        encoded as their positions (see :func:`encode_labels`).

    Returns
    -------
    ndarray
        2-D for several columns; 1-D for a single column (labels).
    """
    return read_array(path, key, classes=classes).array


def read_array(
    path: str | os.PathLike[str],
    key: str | None = None,
    *,
    classes: Sequence[Any] | None = None,
) -> LoadedArray:
    """Load one array from ``path`` and say what was assumed (see :func:`load_array`).

    Raises
    ------
    DataNotFoundError, UnknownNameError, ClassCountError, LabelError, CascadeError
        No file, an unknown suffix or ``.npz`` key, column names that cannot be matched to
        classes, text labels without ``classes``, or a file that is not numeric.
    """
    p = Path(path)
    if not p.exists():
        raise DataNotFoundError(
            f"Expected a file at {str(p)!r}; nothing is there. Check the path (saved logits are "
            f"{', '.join(SUPPORTED_SUFFIXES)} files)."
        )
    suffix = p.suffix.lower()
    if key is not None and suffix != ".npz":
        raise UnknownNameError(f"key={key!r} only applies to .npz files; got {p.name!r}.")
    notes: list[str] = []
    names: list[str] | None = None
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            arr = _load_npz(p, key, notes)
        elif suffix == ".csv":
            names, arr = _load_csv(p, classes)
        elif suffix == ".parquet":
            names, arr = _load_parquet(p)
        else:
            raise UnknownNameError(
                f"Expected a file ending in one of {', '.join(SUPPORTED_SUFFIXES)}; got "
                f"{p.name!r}. Save the logits with numpy.save (one row per input)."
            )
    except CascadeError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise CascadeError(
            f"Could not read {str(p)!r} as a {suffix} array ({exc}). Check that the file is "
            "complete and numeric."
        ) from exc
    if arr.ndim == 2 and suffix in (".csv", ".parquet"):
        arr = _drop_index_columns(arr, names, p.name, classes, notes)
        if arr.dtype == object and arr.shape[1] > 1:
            raise LabelError(
                f"Expected numbers in {p.name}; some of its {arr.shape[1]} columns hold text. "
                "Logits must be numbers, one column per class."
            )
        if names is not None and arr.shape[1] > 1:
            arr = _match_columns(arr, names, p.name, classes, notes)
        if arr.shape[1] == 1:
            arr = _int_if_integral(arr[:, 0])
    if arr.ndim == 1 and (classes is not None or arr.dtype.kind in "USO"):
        arr = encode_labels(arr, classes, what=f"labels in {p.name}")
    return LoadedArray(arr, notes)


def _load_npz(p: Path, key: str | None, notes: list[str]) -> np.ndarray:
    with np.load(p, allow_pickle=False) as npz:
        names = list(npz.files)
        if not names:
            raise CascadeError(f"Expected at least one array in {str(p)!r}; the archive is empty.")
        if key is None:
            if len(names) > 1:
                notes.append(
                    f"{p.name} holds {len(names)} arrays ({', '.join(names)}): using the first, "
                    f"{names[0]!r}; pick another with key=NAME"
                )
            return np.asarray(npz[names[0]])
        if key not in names:
            raise UnknownNameError(
                f"No array named {key!r} in {str(p)!r}; it holds {', '.join(names)}. "
                "Pass one of those with key=NAME."
            )
        return np.asarray(npz[key])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _load_csv(p: Path, classes: Sequence[Any] | None) -> tuple[list[str] | None, np.ndarray]:
    with p.open("r", encoding="utf-8", newline="") as fh:
        rows = [(i + 1, r) for i, r in enumerate(csv.reader(fh)) if any(c.strip() for c in r)]
    if not rows:
        raise EmptyInputError(f"Expected at least one row in {str(p)!r}; the file is empty.")
    width = len(rows[0][1])
    for line, r in rows:
        if len(r) != width:
            raise InputShapeError(
                f"Expected {width} comma-separated values on every line of {p.name}; line "
                f"{line} has {len(r)}. Write one value per class on every row."
            )
    names: list[str] | None = None
    first = [c.strip() for c in rows[0][1]]
    if not all(_is_number(c) for c in first) or _numbered_header(first, rows[1:]):
        names = [c.lstrip("#").strip() if j == 0 else c for j, c in enumerate(first)]
        rows = rows[1:]
    cells = [[c.strip() for c in r] for _, r in rows]
    if not cells:
        raise EmptyInputError(f"Expected at least one data row in {str(p)!r}; got a header only.")
    try:
        return names, np.array(cells, dtype=np.float64)
    except ValueError:
        pass
    index = set(_index_columns(names, classes))
    data = [j for j in range(width) if j not in index]
    if classes is not None and len(data) == 1:
        return names, np.array(cells, dtype=object)  # text labels, encoded by the caller
    col, line, value = next(
        (j, ln, r[j].strip()) for ln, r in rows for j in data if not _is_number(r[j].strip())
    )
    label = f" ({names[col]!r})" if names is not None else ""
    raise LabelError(
        f"Expected numbers in {p.name}; got {value!r} on line {line}, column {col + 1}{label}. "
        "Logits must be numbers, and labels class indices 0..C-1 (or pass the class names in "
        "class order with classes=[...])."
    )


def _numbered_header(first: list[str], rest: list[tuple[int, list[str]]]) -> bool:
    """A first row of plain integers 0..w-1 (or 1..w) above non-integer data is a header."""
    if len(first) < 2 or not rest or not all(c.isdigit() for c in first):
        return False
    nums = sorted(int(c) for c in first)
    if nums not in (list(range(len(first))), list(range(1, len(first) + 1))):
        return False
    return any(not c.strip().lstrip("-").isdigit() for _, r in rest[:100] for c in r)


def _load_parquet(p: Path) -> tuple[list[str], np.ndarray]:
    pq = require("pyarrow.parquet", "parquet", "Reading .parquet files")
    table: Any = pq.read_table(p)
    cols = [np.asarray(table.column(i).to_numpy()) for i in range(table.num_columns)]
    if not cols:
        raise CascadeError(f"Expected at least one column in {str(p)!r}; it has none.")
    names = [str(n) for n in table.column_names]
    if any(c.dtype.kind in "USO" for c in cols):
        return names, np.column_stack([c.astype(object) for c in cols])
    return names, np.column_stack(cols)


def _index_columns(names: list[str] | None, classes: Sequence[Any] | None) -> list[int]:
    if names is None:
        return []
    known = set() if classes is None else {str(c) for c in classes}
    out = []
    for j, n in enumerate(names):
        low = n.strip().lower()
        if n in known:
            continue
        if low in _INDEX_NAMES or _UNNAMED.match(low) or low.endswith("_id"):
            out.append(j)
    return out


def _drop_index_columns(
    arr: np.ndarray,
    names: list[str] | None,
    fname: str,
    classes: Sequence[Any] | None,
    notes: list[str],
) -> np.ndarray:
    drop = _index_columns(names, classes)
    if not drop and arr.shape[0] >= 3 and arr.shape[1] >= 2 and arr.dtype != object:
        first = arr[:, 0]
        if names is None or classes is None or names[0] not in {str(c) for c in classes}:
            if np.array_equal(first, np.arange(arr.shape[0])):
                drop = [0]
    if not drop:
        return arr
    if len(drop) == arr.shape[1]:
        raise InputShapeError(
            f"Expected {fname} to hold outputs or labels; its only column(s) "
            f"{[names[j] for j in drop] if names else drop} look like an index or id."
        )
    for j in drop:
        if names is not None:
            notes.append(
                f"dropped column {names[j]!r} of {fname}: an index/id column (pandas writes "
                "one unless index=False)"
            )
        else:
            notes.append(f"dropped column {j + 1} of {fname}: it holds 0..n-1, an index/id column")
    keep = [j for j in range(arr.shape[1]) if j not in drop]
    if names is not None:
        names[:] = [names[j] for j in keep]
    return arr[:, keep]


def _match_columns(
    arr: np.ndarray,
    names: list[str],
    fname: str,
    classes: Sequence[Any] | None,
    notes: list[str],
) -> np.ndarray:
    """Put named columns in class order, or refuse names whose order cannot be known."""
    if classes is not None:
        wanted = [str(c) for c in classes]
        missing = [c for c in wanted if c not in names]
        extra = [n for n in names if n not in wanted]
        if missing or extra:
            raise ClassCountError(
                f"Expected the columns of {fname} to be the classes {wanted}; "
                + (f"no column for {missing}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"columns {extra} are not classes" if extra else "")
                + ". Name one column per class, or fix classes=[...]."
            )
        order = [names.index(c) for c in wanted]
        if order != list(range(len(names))):
            notes.append(f"columns of {fname} matched to classes by name (not by position)")
        return arr[:, order]
    parsed = [_NUMBERED.match(n.strip()) for n in names]
    prefixes = {m.group(1) for m in parsed if m is not None}
    numbers = [int(m.group(2)) for m in parsed if m is not None]
    if None in parsed or len(prefixes) != 1 or len(set(numbers)) != len(numbers):
        shown = ", ".join(repr(n) for n in names[:6]) + (", ..." if len(names) > 6 else "")
        raise ClassCountError(
            f"Columns of {fname} are named {shown}: cascadekit cannot tell their class order "
            "and does not read named columns by position. Pass the class names in class order "
            "with classes=[...], or name the columns class_0..class_(C-1)."
        )
    order = list(np.argsort(numbers, kind="stable"))
    sorted_nums = sorted(numbers)
    if order != list(range(len(names))):
        notes.append(
            f"columns of {fname} put in numeric order of their names "
            f"({names[order[0]]!r}, {names[order[1]]!r}, ... = classes 0, 1, ...)"
        )
    if sorted_nums != list(range(len(names))):
        notes.append(
            f"columns of {fname} are numbered {sorted_nums[0]}..{sorted_nums[-1]}: taken as "
            f"classes 0..{len(names) - 1} in that order"
        )
    return arr[:, order]


def _int_if_integral(col: np.ndarray) -> np.ndarray:
    if col.dtype == object:
        try:
            col = col.astype(np.float64)
        except (ValueError, TypeError):
            return col.astype(str)
    if np.issubdtype(col.dtype, np.floating) and col.size:
        if np.all(np.isfinite(col)) and np.all(col == np.round(col)):
            return col.astype(np.int64)
    return col
