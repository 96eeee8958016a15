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

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import proba_to_logits
from ..errors import ClassCountError, InputShapeError, ParameterError
from ._base import ModelAdapter, check_batch_size

__all__ = ["SklearnModel", "align_classes", "binary_decision_to_logits", "proba_to_logits"]

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
        n_features = getattr(self.estimator, "n_features_in_", None)
        if n_features is not None and getattr(batch, "ndim", None) == 1:
            raise InputShapeError(
                f"{self.name} takes a batch of shape (n_inputs, {n_features}); got a 1-D array "
                f"of shape {batch.shape}. For a single example pass x.reshape(1, -1) (or "
                "x[None]); for a column of one feature, x.reshape(-1, 1)."
            )
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


def _is_sklearn_classifier(obj: Any) -> bool:
    return (
        not isinstance(obj, ModelAdapter)
        and hasattr(obj, "classes_")
        and (hasattr(obj, "predict_proba") or hasattr(obj, "decision_function"))
    )


def align_classes(
    models: Sequence[Any], classes: ArrayLike | None = None
) -> tuple[list[Any], NDArray[Any] | None]:
    """Put fitted scikit-learn classifiers' columns in one class order through ``classes_``.

    Used by :meth:`cascadekit.Cascade.from_models` and :class:`cascadekit.CascadeClassifier`.
    Every fitted scikit-learn classifier in ``models`` is wrapped as
    ``SklearnModel(est, classes=order)``, so that column ``j`` of every stage is class
    ``order[j]`` (a class a stage never saw gets the lowest logit). Other models are returned
    unchanged: their columns are taken to be in ``order`` already.

    Parameters
    ----------
    models : sequence
        Stages in cascade order.
    classes : array-like, optional
        The class order. By default the sorted union of the classifiers' ``classes_``.

    Returns
    -------
    models : list
        The stages, scikit-learn classifiers wrapped.
    classes : ndarray or None
        The class order (None when no stage is a fitted scikit-learn classifier and no
        ``classes`` were given).

    Raises
    ------
    ParameterError
        A stage without class names is mixed with classifiers whose ``classes_`` are not
        ``0..K-1``, and ``classes`` was not given: the order of its columns is unknown.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = np.array([[0.0], [1.0], [2.0]]), np.array(["b", "c", "b"])
    >>> _, order = align_classes([LogisticRegression().fit(X, y)])
    >>> order.tolist()
    ['b', 'c']
    """
    models = list(models)
    known = [i for i, m in enumerate(models) if _is_sklearn_classifier(m)]
    if classes is not None:
        order: NDArray[Any] | None = np.asarray(classes)
    elif not known:
        return models, None
    else:
        found = [np.asarray(models[i].classes_) for i in known]
        if len({c.dtype.kind in "USO" for c in found}) > 1:
            raise ParameterError(
                "The scikit-learn stages' classes_ mix types (text and numbers), so they have "
                "no common order; pass classes=[...] in the order you want."
            )
        order = np.unique(np.concatenate(found))
        others = [i for i in range(len(models)) if i not in known]
        natural = np.issubdtype(order.dtype, np.integer) and np.array_equal(
            order, np.arange(order.shape[0])
        )
        if others and not natural:
            raise ParameterError(
                f"Stage(s) {others} give logit columns without class names, while the "
                f"scikit-learn stages know the classes {order.tolist()[:10]}: the order of "
                "those columns is unknown. Pass classes=[...] in the order of their columns."
            )
    assert order is not None
    out = [SklearnModel(m, classes=order) if i in known else m for i, m in enumerate(models)]
    return out, order
