"""``score="auto"``: pick the router on calibration data only -- a fixed score (with a tuned
temperature) or a learned policy -- by cross-fitting.

Each candidate is scored by K-fold cross-fitting on the calibration rows: its choices
(temperature, or the policy's parameters) are made on K-1 folds and its curve is measured on
the held-out fold; the criterion is averaged over folds. The winner is then refit: a fixed
score's temperature on all rows; a learned policy on a random half of the rows
(``fit_rows``), leaving the other half (``calibration_rows``) for choosing its threshold, so the
threshold is never chosen on the data the policy was trained on. Any guarantee computed on
these rows would be void (they chose the router): use separate data for guarantees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import as_labels, as_logits, check_costs, check_same_samples
from ..errors import ParameterError
from ..scores import available_scores, compute_score
from ..selection import CRITERIA, criterion_value, tune_temperature
from ._core import LearnedPolicy
from ._io import FeatureSpec, PolicyRouter

__all__ = ["AutoResult", "auto_select"]

Float64Array = NDArray[np.float64]


@dataclass
class AutoResult:
    """The chosen router and the cross-fitted comparison behind the choice.

    Attributes
    ----------
    name : str
        The chosen router: a score name (``"margin"``) or ``"learned-<classifier>"``.
    kind : str
        ``"score"`` or ``"learned"``.
    score : str
        The score to write in a report or router file (``"learned"`` for a policy).
    temperature : float
    router : PolicyRouter or None
        The refit learned router (kind ``"learned"``).
    candidates : list of dict
        Per candidate: name, kind, temperature, criterion per fold and its mean.
    calibration_rows : ndarray of int
        The rows left for choosing the threshold (all rows for a fixed score).
    out_of_fold : ndarray or None
        For a chosen learned policy: its exit score of every row from the fold model that did
        not see the row (an honest score for reporting on these same rows).
    """

    name: str
    kind: str
    score: str
    temperature: float
    router: PolicyRouter | None
    candidates: list[dict[str, Any]]
    criterion: str
    calibration_rows: NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, np.intp))
    out_of_fold: Float64Array | None = None

    def scores(self, student_logits: ArrayLike, extra: ArrayLike | None = None) -> Float64Array:
        """The chosen routing score of new inputs (higher = keep on the student)."""
        if self.router is None:
            return np.asarray(
                compute_score(self.score, student_logits, self.temperature), dtype=np.float64
            )
        x = self.router.spec.build(student_logits, extra)
        return self.router.policy.exit_score(x)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the chosen name and every candidate's figures)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        return {
            "chosen": self.name,
            "kind": self.kind,
            "criterion": self.criterion,
            "candidates": [{k: clean(v) for k, v in c.items()} for c in self.candidates],
        }


def _folds(n: int, k: int, rng: np.random.Generator) -> list[NDArray[np.intp]]:
    perm = rng.permutation(n)
    return [np.sort(perm[i::k]) for i in range(k)]


def auto_select(
    outputs: Sequence[ArrayLike],
    labels: ArrayLike,
    costs: ArrayLike | None = None,
    *,
    features: ArrayLike | None = None,
    criterion: str = "gap_captured",
    classifiers: Sequence[Any] = ("logistic",),
    lam: float = 0.2,
    folds: int = 3,
    scores: Sequence[str] | None = None,
    random_state: int = 0,
) -> AutoResult:
    """Choose the routing score of a 2-stage cascade on calibration data only.

    Parameters
    ----------
    outputs : [student logits, teacher logits or labels-only predictions]
    labels : array-like of int
        True labels of the calibration rows.
    costs : (2,) costs, optional
        Per-stage costs (only ``criterion="speedup"`` depends on them).
    features : array-like (n_samples, k), optional
        Extra student-side features for the learned policies (committee, embeddings, ...).
    criterion : "gap_captured" or "speedup"
        Share of the random-to-oracle gap captured, or the speed-up at the teacher's accuracy
        (which depends on the cost ratio).
    classifiers : sequence
        Learned candidates: ``"logistic"``, ``"hgb"`` or scikit-learn classifiers. Empty for
        fixed scores only.
    lam : float, default=0.2
        The trade-off the learned policies are trained at (their exit score is then swept by
        the threshold).
    folds : int, default=3

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 900)
    >>> student = rng.normal(size=(900, 3)); student[np.arange(900), y] += 1.5
    >>> teacher = rng.normal(size=(900, 3)); teacher[np.arange(900), y] += 4.0
    >>> res = auto_select([student, teacher], y, classifiers=())
    >>> res.kind, res.name in ("energy", "max_softmax", "margin", "entropy", "max_logit")
    ('score', True)
    """
    if criterion not in CRITERIA:
        raise ParameterError(
            f"Expected criterion in {', '.join(CRITERIA)}; got {criterion!r}. 'gap_captured' "
            "compares the share of the random-to-oracle gap, 'speedup' the speed-up at the "
            "teacher's accuracy."
        )
    if len(outputs) != 2:
        raise ParameterError(
            f"score='auto' chooses the router of a 2-stage cascade; got {len(outputs)} stages. "
            "Pass the student's and the teacher's outputs, or pick a score by name."
        )
    if int(folds) < 2:
        raise ParameterError(f"Expected folds >= 2; got {folds!r}.")
    z = as_logits(outputs[0], "student logits").astype(np.float64)
    t_out = np.asarray(outputs[1])
    y = as_labels(labels, n_samples=z.shape[0])
    t_pred = t_out if t_out.ndim == 1 else as_logits(t_out, "teacher logits").argmax(axis=1)
    check_same_samples([("student logits", z.shape[0]), ("teacher outputs", t_pred.shape[0])])
    cs, ct = z.argmax(axis=1) == y, np.asarray(t_pred) == y
    c = check_costs(costs, 2).astype(np.float64)
    extra = None
    spec = FeatureSpec()
    if features is not None:
        extra = np.asarray(features, dtype=np.float64)
        extra = extra[:, None] if extra.ndim == 1 else extra
        check_same_samples([("student logits", z.shape[0]), ("features", extra.shape[0])])
        spec = FeatureSpec(n_extra=int(extra.shape[1]))
    X = spec.build(z, extra)
    rng = np.random.default_rng(random_state)
    parts = _folds(z.shape[0], int(folds), rng)
    names = list(scores) if scores is not None else available_scores()
    cands: list[dict[str, Any]] = []
    for name in names:
        vals, temps = [], []
        for i, held in enumerate(parts):
            tr = np.concatenate([p for j, p in enumerate(parts) if j != i])
            ch = tune_temperature(name, z[tr], cs[tr], ct[tr], c, criterion=criterion)
            vals.append(criterion_value(ch.scores(z[held]), cs[held], ct[held], c, criterion))
            temps.append(ch.temperature)
        cands.append(
            {
                "name": name,
                "kind": "score",
                "temperature": None,
                "folds": vals,
                "mean": float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan,
            }
        )
    for clf in classifiers:
        label = f"learned-{clf if isinstance(clf, str) else type(clf).__name__}"
        vals = []
        oof = np.zeros(z.shape[0], dtype=np.float64)
        for i, held in enumerate(parts):
            tr = np.concatenate([p for j, p in enumerate(parts) if j != i])
            pol = LearnedPolicy(c, lam=lam, classifier=clf, random_state=random_state)
            pol.fit([X[tr]], [cs[tr], ct[tr]])
            oof[held] = pol.exit_score(X[held])
            vals.append(criterion_value(oof[held], cs[held], ct[held], c, criterion))
        cands.append(
            {
                "name": label,
                "kind": "learned",
                "temperature": None,
                "folds": vals,
                "mean": float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan,
                "classifier": clf,
                "_oof": oof,
            }
        )
    best = max(cands, key=lambda r: -math.inf if not math.isfinite(r["mean"]) else r["mean"])
    n = z.shape[0]
    if best["kind"] == "score":
        t = tune_temperature(best["name"], z, cs, ct, c, criterion=criterion).temperature
        best["temperature"] = t
        result = AutoResult(
            best["name"],
            "score",
            best["name"],
            t,
            None,
            cands,
            criterion,
            np.arange(n, dtype=np.intp),
        )
    else:
        perm = rng.permutation(n)
        fit_rows, cal_rows = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
        pol = LearnedPolicy(c, lam=lam, classifier=best["classifier"], random_state=random_state)
        pol.fit([X[fit_rows]], [cs[fit_rows], ct[fit_rows]])
        router = PolicyRouter(pol, spec)
        result = AutoResult(
            best["name"],
            "learned",
            "learned",
            1.0,
            router,
            cands,
            criterion,
            cal_rows,
            best["_oof"],
        )
    for cand in cands:
        cand.pop("_oof", None)
        if "classifier" in cand:
            clf = cand.pop("classifier")
            cand["classifier"] = clf if isinstance(clf, str) else type(clf).__name__
    return result
