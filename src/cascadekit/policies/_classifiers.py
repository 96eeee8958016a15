"""Binary deciders of a learned policy: fitted with sample weights, stored without pickle.

A decider answers one yes/no question at one node ("take this option rather than the rest?")
with ``decision(X) >= 0`` meaning yes. The built-in kinds keep only arrays, so a policy saves
to a JSON router file plus an ``.npz`` sidecar and routes with numpy alone:

* ``"logistic"`` -- standardised features + scikit-learn ``LogisticRegression``, kept as
  mean, scale, coefficients and intercept;
* ``"hgb"`` -- scikit-learn ``HistGradientBoostingClassifier``, kept as its trees' node
  arrays (feature, threshold, children, leaf value) and walked in numpy;
* ``"constant"`` -- used when the weighted labels of a node hold one class only;
* any other scikit-learn classifier that takes ``sample_weight`` (kind ``"estimator"``): kept
  as the fitted object; saving it needs ``skops`` or an explicit ``allow_pickle=True``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._optional import require
from ..errors import ParameterError, UnknownNameError

__all__ = ["CLASSIFIERS", "Decider", "fit_decider"]

Float64Array = NDArray[np.float64]

#: Names of the built-in binary classifiers.
CLASSIFIERS = ("logistic", "hgb")


def _sklearn() -> Any:
    return require("sklearn", "sklearn", "A learned policy")


@dataclass
class Decider:
    """One fitted binary decision; ``decision(X) >= 0`` means "take this option".

    Attributes
    ----------
    kind : str
        ``"constant"``, ``"linear"``, ``"trees"`` or ``"estimator"``.
    arrays : dict of str to ndarray
        The parameters (all kinds but ``"estimator"``).
    estimator : object, optional
        The fitted estimator (kind ``"estimator"`` only).
    """

    kind: str
    arrays: dict[str, NDArray[Any]] = field(default_factory=dict)
    estimator: Any = None

    def decision(self, X: NDArray[Any]) -> Float64Array:
        """Decision values, shape (n_samples,); ``>= 0`` means yes."""
        n = X.shape[0]
        if self.kind == "constant":
            return np.full(n, float(self.arrays["value"]), dtype=np.float64)
        if self.kind == "linear":
            z = (X - self.arrays["mean"]) / self.arrays["scale"]
            out: Float64Array = z @ self.arrays["coef"] + float(self.arrays["intercept"])
            return out
        if self.kind == "trees":
            return _walk_trees(self.arrays, X)
        if self.kind == "estimator":
            est = self.estimator
            if hasattr(est, "decision_function"):
                d = np.asarray(est.decision_function(X), dtype=np.float64)
            else:
                p = np.asarray(est.predict_proba(X), dtype=np.float64)
                classes = list(getattr(est, "classes_", [0, 1]))
                d = p[:, classes.index(1)] - 0.5 if 1 in classes else np.full(n, -0.5)
            return d.reshape(n)
        raise UnknownNameError(f"Unknown decider kind {self.kind!r}.")  # pragma: no cover

    @property
    def portable(self) -> bool:
        """True when the decider is arrays only (saved without pickle)."""
        return self.kind != "estimator"

    @classmethod
    def from_hgb(cls, estimator: Any, X: NDArray[Any]) -> Decider:
        """A ``"trees"`` decider from a fitted binary ``HistGradientBoostingClassifier``.

        Its trees are copied into arrays and walked in numpy. scikit-learn has no public
        accessor for them, so the copy is accepted only when it reproduces the estimator's
        public ``decision_function`` on ``X`` (e.g. the training rows): a change inside
        scikit-learn raises here instead of routing differently.

        Raises
        ------
        ParameterError
            Not a fitted binary ``HistGradientBoostingClassifier``, or one whose trees could
            not be copied exactly.

        Examples
        --------
        >>> from sklearn.ensemble import HistGradientBoostingClassifier
        >>> X = np.random.default_rng(0).normal(size=(200, 2))
        >>> est = HistGradientBoostingClassifier(max_iter=5).fit(X, X[:, 0] > 0)
        >>> d = Decider.from_hgb(est, X)
        >>> d.kind, bool(np.allclose(d.decision(X), est.decision_function(X)))
        ('trees', True)
        """
        what = type(estimator).__name__
        try:
            arrays = _export_hgb(estimator)
        except ParameterError:  # pragma: no cover - categorical splits
            raise
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise ParameterError(
                f"Expected a fitted binary HistGradientBoostingClassifier; could not read the "
                f"trees of this {what} ({type(exc).__name__}: {exc}). Pass classifier='hgb' to "
                "fit_decider with a scikit-learn version this cascadekit supports (>= 1.4), or "
                "pass the estimator itself as the classifier (kept as a fitted object)."
            ) from exc
        ref = np.asarray(estimator.decision_function(X), dtype=np.float64)
        got = _walk_trees(arrays, X)
        if ref.shape != got.shape or not np.allclose(got, ref, rtol=0.0, atol=1e-9):
            raise ParameterError(
                f"Expected the copied trees of the {what} to reproduce its decision_function; "
                f"they do not (decision_function shape {ref.shape}, copy shape {got.shape}). "
                "Only binary classifiers are supported: pass two classes, or pass the "
                "estimator itself as the classifier (kept as a fitted object)."
            )
        return cls("trees", arrays)


def _walk_trees(a: Mapping[str, NDArray[Any]], X: NDArray[Any]) -> Float64Array:
    """Sum of leaf values of every tree (HistGradientBoosting's raw decision), in numpy."""
    n = X.shape[0]
    out = np.full(n, float(a["baseline"]), dtype=np.float64)
    offsets = a["offsets"]
    feat, thr, left, right = a["feature"], a["threshold"], a["left"], a["right"]
    leaf, value, miss_left = a["is_leaf"], a["value"], a["missing_left"]
    rows = np.arange(n)
    for t in range(offsets.shape[0] - 1):
        base = int(offsets[t])
        idx = np.full(n, base, dtype=np.int64)
        for _ in range(int(a["max_depth"]) + 1):
            lf = leaf[idx]
            if lf.all():
                break
            x = X[rows, feat[idx]]
            go_left = np.where(np.isnan(x), miss_left[idx], x <= thr[idx])
            nxt = np.where(go_left, left[idx], right[idx]) + base
            idx = np.where(lf, idx, nxt)
        out += value[idx]
    return out


def _export_hgb(est: Any) -> dict[str, NDArray[Any]]:
    """Node arrays of a fitted binary HistGradientBoostingClassifier.

    scikit-learn keeps the fitted trees private (``_predictors``, ``_baseline_prediction``: no
    public accessor exists), so :meth:`Decider.from_hgb` checks the result against the public
    ``decision_function`` before it is used.
    """
    preds = [p[0] for p in est._predictors]
    nodes = [p.nodes for p in preds]
    if any(bool(np.any(nd["is_categorical"])) for nd in nodes):  # pragma: no cover
        raise ParameterError("Categorical splits are not supported in learned policies.")
    sizes = np.array([nd.shape[0] for nd in nodes], dtype=np.int64)
    cat: Any = np.concatenate(nodes) if nodes else np.zeros(0, dtype=np.int64)
    max_depth = int(max((int(nd["depth"].max()) for nd in nodes), default=0))
    return {
        "baseline": np.asarray(float(np.ravel(est._baseline_prediction)[0])),
        "offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "feature": np.asarray(cat["feature_idx"], dtype=np.int64),
        "threshold": np.asarray(cat["num_threshold"], dtype=np.float64),
        "left": np.asarray(cat["left"], dtype=np.int64),
        "right": np.asarray(cat["right"], dtype=np.int64),
        "is_leaf": np.asarray(cat["is_leaf"], dtype=bool),
        "value": np.asarray(cat["value"], dtype=np.float64),
        "missing_left": np.asarray(cat["missing_go_to_left"], dtype=bool),
        "max_depth": np.asarray(max_depth, dtype=np.int64),
    }


def _constant(take: bool) -> Decider:
    return Decider("constant", {"value": np.asarray(1.0 if take else -1.0)})


def fit_decider(
    classifier: Any,
    X: NDArray[Any],
    take: NDArray[np.bool_],
    weight: Float64Array,
    random_state: int = 0,
) -> Decider:
    """Fit one weighted binary decision ``take`` on features ``X`` with ``sample_weight``.

    Rows of zero weight are dropped; when the rest hold one class only the decider is a
    constant. ``classifier`` is ``"logistic"``, ``"hgb"`` or an unfitted scikit-learn style
    classifier (copied, never fitted in place).

    Examples
    --------
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> d = fit_decider("logistic", X, np.array([False, False, True, True]), np.ones(4))
    >>> (d.decision(X) >= 0).tolist()
    [False, False, True, True]
    >>> fit_decider("logistic", X, np.ones(4, bool), np.ones(4)).kind
    'constant'
    """
    use = weight > 0
    if not use.any():
        return _constant(True)
    Xu, yu, wu = X[use], take[use], weight[use]
    if yu.all() or not yu.any():
        return _constant(bool(yu[0]))
    wu = wu / wu.mean()
    y_int = yu.astype(np.int64)
    if isinstance(classifier, str):
        _sklearn()
        if classifier == "logistic":
            from sklearn.linear_model import LogisticRegression

            mean = Xu.mean(axis=0)
            scale = Xu.std(axis=0)
            scale = np.where(scale > 1e-12, scale, 1.0)
            lr = LogisticRegression(C=1.0, max_iter=500)
            lr.fit((Xu - mean) / scale, y_int, sample_weight=wu)
            return Decider(
                "linear",
                {
                    "mean": mean.astype(np.float64),
                    "scale": scale.astype(np.float64),
                    "coef": lr.coef_[0].astype(np.float64),
                    "intercept": np.asarray(float(lr.intercept_[0])),
                },
            )
        if classifier == "hgb":
            from sklearn.ensemble import HistGradientBoostingClassifier

            hgb = HistGradientBoostingClassifier(
                max_iter=100,
                learning_rate=0.1,
                max_leaf_nodes=15,
                min_samples_leaf=40,
                l2_regularization=1.0,
                early_stopping=False,
                random_state=random_state,
            )
            hgb.fit(Xu, y_int, sample_weight=wu)
            return Decider.from_hgb(hgb, Xu)
        raise UnknownNameError(
            f"Unknown classifier {classifier!r}; expected one of {', '.join(CLASSIFIERS)} or a "
            "scikit-learn classifier whose fit() takes sample_weight."
        )
    if not hasattr(classifier, "fit"):
        raise ParameterError(
            f"Expected a classifier with fit(X, y, sample_weight=...); got "
            f"{type(classifier).__name__}. Pass 'logistic', 'hgb' or a scikit-learn classifier."
        )
    if hasattr(classifier, "get_params"):
        from sklearn.base import clone

        est = clone(classifier)
    else:
        est = copy.deepcopy(classifier)
    try:
        est.fit(Xu, y_int, sample_weight=wu)
    except TypeError as exc:
        raise ParameterError(
            f"{type(classifier).__name__}.fit does not take sample_weight ({exc}). The reduction "
            "to weighted binary classification needs it: pick a classifier that does."
        ) from exc
    return Decider("estimator", estimator=est)
