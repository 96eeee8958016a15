"""Offline evaluation of a cascade over data sets larger than memory, on Ray Data.

:func:`evaluate_offline` streams a data set (Parquet files or any ``ray.data.Dataset``) through
one Ray Data operator per stage, each with its own pool of actors: the student scores every row
and keeps the confident ones (``score >= threshold``, higher = keep); the next stage's model runs
only on the rows passed on to it, and so on. Per-row results (``id``, ``prediction``, ``stage``,
``fallback``, ``score_0`` ... and, with labels, ``label`` and ``correct``: the fields of
:class:`~cascadekit.RouteResult`, from the same :class:`~cascadekit.routing.RoutingState`)
are written as Parquet; the summary (stage shares, accuracy, relative cost) is counted by
scanning those files, so nothing is ever held in memory whole.

Stages either run their live models on an input column (raw pixels, features, token ids) or
read saved logits from one column per stage. On saved logits the result is identical to
:meth:`cascadekit.Cascade.route`; on live models it is identical to
:meth:`cascadekit.Cascade.predict` except where a score lies within float tolerance of the
threshold (a different batch size changes the last bits of the logits).

Ray is imported when a function of this module is called; install it with
``pip install "cascadekit[ray]"``.

Examples
--------
>>> import numpy as np
>>> from cascadekit import Cascade
>>> from cascadekit.offline import evaluate_offline, write_parquet_dataset
>>> rng = np.random.default_rng(0)
>>> student, teacher = rng.normal(size=(1000, 10)), rng.normal(size=(1000, 10))
>>> labels = rng.integers(0, 10, 1000)
>>> write_parquet_dataset("/tmp/data", logits={"student": student, "teacher": teacher},
...                       labels=labels)  # doctest: +SKIP
>>> c = Cascade.from_outputs([student, teacher], costs=[1, 10], thresholds=[2.5])
>>> r = evaluate_offline("/tmp/data", c, "/tmp/out", label_column="label",
...                      logits_columns=["student", "teacher"])  # doctest: +SKIP
>>> r.teacher_share == c.route().teacher_share  # doctest: +SKIP
True
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .cascade import Cascade
from .errors import MissingDependencyError, ParameterError
from .routing import RoutingState

__all__ = ["OfflineResult", "evaluate_offline", "read_results", "write_parquet_dataset"]

PathLike = str | os.PathLike[str]


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            'Offline evaluation on Ray Data needs ray: pip install "cascadekit[ray]".'
        ) from exc
    return ray


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.dataset
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            'Reading offline results needs pyarrow: pip install "cascadekit[parquet]".'
        ) from exc
    return pyarrow


@dataclass
class OfflineResult:
    """Summary of an offline run; the per-row results are the Parquet files under ``path``.

    Attributes
    ----------
    path : Path
        Folder of the per-row results (read them with :func:`read_results`).
    n : int
        Number of rows.
    stage_counts : ndarray of shape (N,), int64
        Rows answered by each stage.
    costs : ndarray of shape (N,)
        Cost of each stage.
    thresholds : tuple of float
        Thresholds applied (an input stays at stage k when its score is ``>= thresholds[k]``).
    n_correct : int or None
        Correct predictions, when a label column was given.
    seconds : float
        Wall-clock time of the run.
    """

    path: Path
    n: int
    stage_counts: NDArray[np.int64]
    costs: NDArray[np.float64]
    thresholds: tuple[float, ...]
    n_correct: int | None = None
    seconds: float = 0.0
    columns: list[str] = field(default_factory=list)

    @property
    def stage_shares(self) -> NDArray[np.float64]:
        """Share of rows answered by each stage."""
        out: NDArray[np.float64] = self.stage_counts / max(self.n, 1)
        return out

    @property
    def teacher_share(self) -> float:
        """Share of rows answered by the last stage."""
        return float(self.stage_shares[-1])

    @property
    def accuracy(self) -> float | None:
        """Share of correct predictions (None without labels)."""
        return None if self.n_correct is None else self.n_correct / max(self.n, 1)

    @property
    def relative_cost(self) -> float:
        """Mean cost per row (every stage a row ran) divided by the last stage's cost."""
        per_stage = np.cumsum(self.costs)
        return float((self.stage_counts * per_stage).sum() / max(self.n, 1) / self.costs[-1])


class _StagePass:
    """One stage of the pipeline, run by a Ray Data actor on numpy batches.

    Rows with ``stage == -1`` are still undecided; this stage runs its model (or reads its
    saved logits) on those rows only, writes the prediction of the rows it keeps and leaves the
    others undecided for the next stage (the last stage keeps all).
    """

    def __init__(
        self,
        cascade: Cascade,
        k: int,
        thresholds: tuple[float, ...],
        input_column: str | None,
        logits_column: str | None,
    ) -> None:
        self.cascade = cascade
        self.k = k
        self.thresholds = thresholds
        self.input_column = input_column
        self.logits_column = logits_column
        self.n_stages = cascade.n_stages
        self.model = None if logits_column is not None else cascade.live_models()[k]

    def _logits(self, batch: Mapping[str, Any], rows: NDArray[np.int64]) -> np.ndarray:
        if self.logits_column is not None:
            out: np.ndarray = np.asarray(batch[self.logits_column])[rows]
            return out
        assert self.input_column is not None
        x = np.asarray(batch[self.input_column])[rows]
        bs = getattr(self.model, "batch_size", None) or rows.size
        parts = [
            self.cascade.call_stage(self.k, self.model, x[lo : lo + bs], min(bs, rows.size - lo))
            for lo in range(0, rows.size, bs)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        k, cascade = self.k, self.cascade
        n = len(batch["id"])
        if k == 0:
            state = RoutingState(cascade.stages, self.thresholds, n, costs=cascade.costs)
        else:  # the routing state travels between the stages' actors as columns
            state = RoutingState.from_columns(
                cascade.stages, self.thresholds, batch, costs=cascade.costs
            )
        rows = state.pending()
        if rows.size:
            state.update(k, rows, self._logits(batch, rows))
        out = dict(batch)
        out.update(state.to_columns())
        return out


def _as_list(value: Any, n: int, name: str, kind: type) -> list[Any]:
    vals = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(vals) != n or not all(isinstance(v, (int, float)) and v > 0 for v in vals):
        raise ParameterError(
            f"Expected {name} to be a positive number or one per stage ({n}); got {value!r}."
        )
    return [kind(v) for v in vals]


def evaluate_offline(
    data: Any,
    cascade: Cascade,
    output: PathLike,
    *,
    input_column: str = "x",
    logits_columns: Sequence[str] | None = None,
    id_column: str = "id",
    label_column: str | None = None,
    thresholds: Sequence[float] | float | None = None,
    batch_size: int = 1024,
    replicas: int | Sequence[int] = 1,
    num_cpus: float | Sequence[float] = 1.0,
    overwrite: bool = False,
) -> OfflineResult:
    """Run a cascade over a data set on Ray Data and write per-row results as Parquet.

    Parameters
    ----------
    data : ray.data.Dataset, path or list of paths
        The rows; a path is read with ``ray.data.read_parquet``. It must have an integer
        ``id_column`` and either ``input_column`` (live models) or the ``logits_columns``.
    cascade : Cascade
        The stages (with live models, unless ``logits_columns`` is given) and thresholds.
    output : path
        Folder for the per-row Parquet results (must be empty or absent unless ``overwrite``).
    input_column : str, default="x"
        Column with the model inputs (a tensor column), for live models.
    logits_columns : sequence of N str, optional
        One column of saved logits per stage (the last may hold labels). The result then equals
        ``cascade.route(...)`` on the same logits exactly.
    id_column : str, default="id"
        Integer row identifier, copied to the results as ``id``.
    label_column : str, optional
        True labels: the results get ``label`` and ``correct``, the summary an accuracy.
    thresholds : optional
        Override the cascade's thresholds for this run.
    batch_size : int, default=1024
        Rows per batch handed to each stage's actors.
    replicas : int or sequence of N ints, default=1
        Actors per stage (e.g. ``[1, 4]``: one student, four teachers).
    num_cpus : float or sequence of N floats, default=1.0
        CPUs reserved per actor of each stage (fractions allowed). The actors of all stages
        together must leave at least one CPU free for Ray Data's read and write tasks.
    overwrite : bool, default=False
        Delete ``output`` first if it exists.

    Returns
    -------
    OfflineResult
        Row count, rows per stage, accuracy (with labels), relative cost and the output folder.

    Raises
    ------
    ParameterError
        Missing columns, wrong number of logits columns, a non-empty output folder.
    """
    ray = _ray()
    t0 = time.perf_counter()
    if not isinstance(cascade, Cascade):
        raise ParameterError(f"Expected a Cascade; got {type(cascade).__name__}.")
    n_stages = cascade.n_stages
    ths = cascade.resolve_thresholds(thresholds)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError(f"Expected batch_size to be a positive integer; got {batch_size!r}.")
    n_replicas = _as_list(replicas, n_stages, "replicas", int)
    cpus = _as_list(num_cpus, n_stages, "num_cpus", float)
    if logits_columns is not None:
        logits_columns = list(logits_columns)
        if len(logits_columns) != n_stages:
            raise ParameterError(
                f"Expected one logits column per stage ({n_stages}); got {logits_columns}."
            )
        needed = [id_column, *logits_columns]
    else:
        cascade.live_models()  # a stage without a model fails here, with its message
        needed = [id_column, input_column]
    if label_column is not None:
        needed.append(label_column)
    if ray.is_initialized():
        total = float(ray.cluster_resources().get("CPU", 0.0))
        reserved = sum(r * c for r, c in zip(n_replicas, cpus, strict=True))
        if reserved > total - 1:
            raise ParameterError(
                f"The stage actors would reserve {reserved:g} of the cluster's {total:g} CPUs, "
                "but Ray Data's read and write tasks need 1 more CPU (otherwise the run waits "
                "forever). Lower replicas= or num_cpus= (fractions are fine)."
            )
    out_dir = Path(output)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise ParameterError(
                f"Output folder {str(out_dir)!r} is not empty. Pick a new folder or pass "
                "overwrite=True."
            )
        shutil.rmtree(out_dir)

    if isinstance(data, (str, os.PathLike)) or (
        isinstance(data, (list, tuple)) and data and isinstance(data[0], (str, os.PathLike))
    ):
        paths = [os.fspath(p) for p in data] if isinstance(data, (list, tuple)) else os.fspath(data)
        ds = ray.data.read_parquet(paths, columns=needed)
    elif isinstance(data, ray.data.Dataset):
        ds = data
    else:
        raise ParameterError(
            f"Expected data to be a ray.data.Dataset or Parquet path(s); got {type(data).__name__}."
        )
    columns = list(ds.schema().names)
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ParameterError(
            f"The data set has no column(s) {missing}; it has {columns}. Set input_column=, "
            "logits_columns=, id_column= or label_column= to the right names."
        )
    if id_column != "id":
        if "id" in columns:
            ds = ds.drop_columns(["id"])
        ds = ds.rename_columns({id_column: "id"})
    ds = ds.select_columns(["id", *[c for c in needed if c != id_column]])
    # the actors need the stages' models and scores, not saved outputs held by the driver
    light = Cascade([replace(st, outputs=None) for st in cascade.stages], thresholds=ths)
    for k in range(n_stages):
        ds = ds.map_batches(
            _StagePass,
            fn_constructor_kwargs={
                "cascade": light,
                "k": k,
                "thresholds": ths,
                "input_column": None if logits_columns is not None else input_column,
                "logits_column": None if logits_columns is None else logits_columns[k],
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_replicas[k]),
            num_cpus=cpus[k],
        )
    keep = ["id", "prediction", "stage", "fallback"]
    keep += [f"score_{j}" for j in range(n_stages - 1)]
    if label_column is not None:
        lbl = label_column

        def add_correct(batch: dict[str, Any]) -> dict[str, Any]:
            batch["label"] = np.asarray(batch[lbl], dtype=np.int64)
            batch["correct"] = batch["prediction"] == batch["label"]
            return batch

        ds = ds.map_batches(add_correct, batch_format="numpy", batch_size=batch_size)
        keep += ["label", "correct"]
    ds.select_columns(keep).write_parquet(os.fspath(out_dir))
    return _summarise(out_dir, cascade, ths, label_column is not None, time.perf_counter() - t0)


def _summarise(
    out_dir: Path, cascade: Cascade, ths: tuple[float, ...], labels: bool, seconds: float
) -> OfflineResult:
    """Count rows per stage (and correct rows) by scanning the result files in batches."""
    pa = _pyarrow()
    dataset = pa.dataset.dataset(os.fspath(out_dir), format="parquet")
    counts = np.zeros(cascade.n_stages, dtype=np.int64)
    n_correct = 0
    cols = ["stage", "correct"] if labels else ["stage"]
    for batch in dataset.to_batches(columns=cols):
        stage = batch.column("stage").to_numpy()
        counts += np.bincount(stage, minlength=cascade.n_stages)
        if labels:
            n_correct += int(
                np.count_nonzero(batch.column("correct").to_numpy(zero_copy_only=False))
            )
    return OfflineResult(
        path=out_dir,
        n=int(counts.sum()),
        stage_counts=counts,
        costs=np.asarray(cascade.costs, dtype=np.float64),
        thresholds=ths,
        n_correct=n_correct if labels else None,
        seconds=seconds,
        columns=list(dataset.schema.names),
    )


def read_results(path: PathLike, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Load per-row results written by :func:`evaluate_offline`, sorted by ``id``.

    This loads every row into memory: use it on results that fit (or pass fewer ``columns``).

    Examples
    --------
    >>> read_results("/no/such/folder")
    Traceback (most recent call last):
    ...
    cascadekit.errors.ParameterError: No offline results in '/no/such/folder'; ...
    """
    if not Path(path).is_dir():
        raise ParameterError(
            f"No offline results in {os.fspath(path)!r}; expected the output folder of "
            "evaluate_offline(...)."
        )
    pa = _pyarrow()
    cols = None if columns is None else list(dict.fromkeys(["id", *columns]))
    table = pa.dataset.dataset(os.fspath(path), format="parquet").to_table(columns=cols)
    order = np.argsort(table.column("id").to_numpy(), kind="stable")
    return {
        name: table.column(name).to_numpy(zero_copy_only=False)[order]
        for name in table.column_names
    }


def write_parquet_dataset(
    path: PathLike,
    *,
    inputs: ArrayLike | None = None,
    logits: Mapping[str, ArrayLike] | None = None,
    labels: ArrayLike | None = None,
    rows_per_file: int = 10_000,
    input_column: str = "x",
) -> Path:
    """Write arrays as a Parquet data set for :func:`evaluate_offline` (with an ``id`` column).

    Parameters
    ----------
    path : path
        Output folder (created).
    inputs : array of shape (n, ...), optional
        Model inputs, stored as a tensor column named ``input_column``.
    logits : mapping of column name to array of shape (n, C), optional
        Saved logits, one column per stage.
    labels : array of shape (n,), optional
        Stored as ``label``.
    rows_per_file : int, default=10000

    Returns
    -------
    Path
        The folder.
    """
    ray = _ray()
    pa = _pyarrow()
    from ray.data.extensions import ArrowTensorArray

    cols: dict[str, Any] = {}
    if inputs is not None:
        cols[input_column] = np.asarray(inputs)
    for name, arr in (logits or {}).items():
        cols[name] = np.asarray(arr)
    if labels is not None:
        cols["label"] = np.asarray(labels, dtype=np.int64)
    if not cols:
        raise ParameterError("Expected at least one of inputs=, logits= or labels=.")
    n = {k: v.shape[0] for k, v in cols.items()}
    if len(set(n.values())) != 1:
        raise ParameterError(f"Expected the same number of rows in every column; got {n}.")
    total = next(iter(n.values()))
    tables = []
    for lo in range(0, total, max(1, int(rows_per_file))):
        hi = min(lo + int(rows_per_file), total)
        part = {"id": pa.array(np.arange(lo, hi, dtype=np.int64))}
        for k, v in cols.items():
            chunk = np.ascontiguousarray(v[lo:hi])
            part[k] = ArrowTensorArray.from_numpy(chunk) if chunk.ndim > 1 else pa.array(chunk)
        tables.append(pa.table(part))
    out = Path(path)
    ray.data.from_arrow(tables).write_parquet(os.fspath(out))
    return out
