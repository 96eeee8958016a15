"""scikit-learn adapter: a fitted classifier's ``decision_function`` or ``predict_proba`` as logits.

* ``decision_function`` of shape (n, C) is used as logits directly; it is preferred ("auto")
  because it is a raw score, on which every routing score is defined, energy included.
* ``predict_proba`` gives ``logits = log(clip(p, eps, 1))``, so that ``softmax(logits) = p``
  (up to the clipping) and max-softmax, margin and entropy are defined. Energy is not: the
  logsumexp of log-probabilities is 0 for every input, and :func:`cascadekit.scores.energy`
  refuses them. It is used when the estimator has no per-class ``decision_function``
  (random forests, k-NN, naive Bayes, MLPs; SVMs with ``decision_function_shape="ovo"``).
* A binary classifier's 1-D ``d`` becomes the two columns ``[-d/2, d/2]``: its softmax is
  ``[1 - sigmoid(d), sigmoid(d)]`` (the logistic link), its margin is ``|d|`` and it is
  symmetric in the two classes. (``[0, d]`` would give the same softmax and margin, but an
  energy ``softplus(d)`` that favours class 1.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import proba_to_logits
from ..errors import ClassCountError, ParameterError
from ._base import ModelAdapter, check_batch_size

__all__ = ["SklearnModel", "binary_decision_to_logits", "proba_to_logits"]

_METHODS = ("auto", "predict_proba", "decision_function")


def binary_decision_to_logits(decision: ArrayLike) -> NDArray[np.floating[Any]]:
    """Two logit columns ``[-d/2, d/2]`` from a binary decision function ``d`` (see module doc).

    Examples
    --------
    >>> binary_decision_to_logits(np.array([2.0, -1.0]))
    array([[-1. ,  1. ],
           [ 0.5, -0.5]])
    """
    d = np.asarray(decision, dtype=np.float64).reshape(-1)
    return np.stack([-d / 2.0, d / 2.0], axis=1)


class SklearnModel(ModelAdapter):
    """Wrap a fitted scikit-learn classifier (or pipeline) as a model returning logits.

    Parameters
    ----------
    estimator : fitted classifier
        Has ``predict_proba`` or ``decision_function``.
    method : {"auto", "predict_proba", "decision_function"}, default="auto"
        "auto" prefers ``decision_function`` (raw per-class scores) and falls back to
        ``predict_proba`` when there is none or it is one-vs-one (pairwise, not per class).
    classes : array-like, optional
        Final class order. Columns are reordered so that column ``j`` is ``classes[j]``; classes
        the estimator never saw get the lowest logit (``log(eps)`` for probabilities, the row's
        minimum minus ``-log(eps)`` for decision functions).
    eps : float, default=1e-12
        Probability floor before the log.
    batch_size : int or None, default=None
        Inputs per call (None: all at once; scikit-learn is vectorised).
    name : str, optional

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = load_iris(return_X_y=True)
    >>> m = SklearnModel(LogisticRegression(max_iter=500).fit(X, y))
    >>> m(X[:2]).shape, m.n_classes
    ((2, 3), 3)
    """

    def __init__(
        self,
        estimator: Any,
        method: str = "auto",
        classes: ArrayLike | None = None,
        eps: float = 1e-12,
        batch_size: int | None = None,
        name: str | None = None,
    ) -> None:
        if method not in _METHODS:
            raise ParameterError(f"Expected method in {_METHODS}; got {method!r}.")
        has_proba = hasattr(estimator, "predict_proba")
        has_dec = hasattr(estimator, "decision_function")
        if method == "auto":
            if not (has_proba or has_dec):
                raise ParameterError(
                    f"SklearnModel needs an estimator with predict_proba or decision_function; "
                    f"{type(estimator).__name__} has neither. Use a classifier (e.g. "
                    "SVC(probability=True)), or wrap your own function with CallableModel."
                )
            pairwise = getattr(estimator, "decision_function_shape", None) == "ovo"
            method = (
                "decision_function"
                if has_dec and not (pairwise and has_proba)
                else ("predict_proba")
            )
        elif not hasattr(estimator, method):
            raise ParameterError(
                f"{type(estimator).__name__} has no {method}; use method='auto' or the other one."
            )
        if not (0.0 < eps < 1.0):
            raise ParameterError(f"Expected eps strictly between 0 and 1; got {eps!r}.")
        self.estimator = estimator
        self.method = method
        self.output_kind = "log_probabilities" if method == "predict_proba" else "logits"
        self.eps = float(eps)
        self.batch_size = check_batch_size(batch_size, "SklearnModel")
        self.name = name or type(estimator).__name__
        self.classes = None if classes is None else np.asarray(classes)
        self._columns: NDArray[np.int64] | None = None
        self.n_classes = self._init_classes()

    def _init_classes(self) -> int | None:
        est_classes = getattr(self.estimator, "classes_", None)
        if self.classes is None:
            return None if est_classes is None else len(est_classes)
        if est_classes is not None:
            pos = {c: j for j, c in enumerate(self.classes.tolist())}
            unknown = [c for c in np.asarray(est_classes).tolist() if c not in pos]
            if unknown:
                raise ClassCountError(
                    f"{self.name} predicts classes {unknown} that are not in classes="
                    f"{self.classes.tolist()}. Pass every class the estimator knows."
                )
            self._columns = np.array(
                [pos[c] for c in np.asarray(est_classes).tolist()], dtype=np.int64
            )
        return len(self.classes)

    def forward(self, batch: Any) -> NDArray[np.floating[Any]]:
        """Logits of one chunk of inputs."""
        if self.method == "predict_proba":
            z = proba_to_logits(self.estimator.predict_proba(batch), self.eps)
            floor = np.log(self.eps)
        else:
            d = np.asarray(self.estimator.decision_function(batch), dtype=np.float64)
            z = binary_decision_to_logits(d) if d.ndim == 1 else d
            floor = None
            known = getattr(self.estimator, "classes_", None)
            if known is not None and z.shape[1] != len(known):
                raise ClassCountError(
                    f"{self.name}.decision_function returned {z.shape[1]} columns for "
                    f"{len(known)} classes (one-vs-one scores are per pair of classes, not per "
                    "class). Set decision_function_shape='ovr' on the estimator, or use "
                    "SklearnModel(..., method='predict_proba') if it has predict_proba."
                )
        if self.classes is None or self._columns is None:
            if self.classes is not None and z.shape[1] != len(self.classes):
                raise ClassCountError(
                    f"{self.name} returned {z.shape[1]} columns but classes= has "
                    f"{len(self.classes)}; fit the estimator first or check classes=."
                )
            return z
        if z.shape[1] == len(self.classes) and np.array_equal(
            self._columns, np.arange(len(self.classes))
        ):
            return z
        fill = (z.min(axis=1) + np.log(self.eps)) if floor is None else np.full(z.shape[0], floor)
        out = np.repeat(fill[:, None], len(self.classes), axis=1)
        out[:, self._columns] = z
        return out
