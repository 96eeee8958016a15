"""The scikit-learn face of a cascade: :class:`CascadeClassifier`.

A two-stage cascade as a scikit-learn classifier: ``fit`` fits clones of the unfitted stages on
one part of the data and calibrates the routing threshold on the other; ``predict`` runs the
student on every input and the teacher only on those the student is not confident about
(routing score below the threshold; higher = keep on the student).

Needs scikit-learn (``pip install "cascadekit[sklearn]"``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._optional import require
from ._validation import check_costs, check_temperature
from .adapters import align_classes, as_model, n_inputs, take
from .calibration import Target, calibrate_cascade
from .errors import InputShapeError, LabelError, ParameterError
from .router import Router
from .routing import PredictResult
from .scores import get_score

require("sklearn", "sklearn", "CascadeClassifier")
from sklearn.base import BaseEstimator, ClassifierMixin, clone  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.utils.multiclass import check_classification_targets  # noqa: E402
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data  # noqa: E402

__all__ = ["CascadeClassifier"]


def _is_sklearn(est: Any) -> bool:
    return hasattr(est, "fit") and hasattr(est, "get_params")


def _needs_2d_numeric(est: Any) -> bool:
    try:
        tags = est.__sklearn_tags__()
    except (AttributeError, TypeError):  # pragma: no cover - very old third-party estimators
        return True
    return bool(tags.input_tags.two_d_array) and not bool(tags.input_tags.string)


class CascadeClassifier(ClassifierMixin, BaseEstimator):
    """A student/teacher cascade as a scikit-learn classifier.

    The student answers the inputs whose routing score is ``>= thresholds_[0]`` (higher = more
    confident = keep on the student); the teacher answers the rest.

    Parameters
    ----------
    student, teacher : estimator or model
        scikit-learn classifiers (fitted or not), or any model :func:`cascadekit.adapters.as_model`
        accepts (torch module, ONNX file, function ``X -> logits``). Only unfitted
        scikit-learn stages are fitted (on clones); everything else is only calibrated.
    routing_score : str or callable, default="max_softmax"
        Routing score of the student (see :mod:`cascadekit.scores`). Named ``routing_score``
        because ``score`` is the scikit-learn accuracy method. The default works for every
        scikit-learn classifier; ``"energy"`` needs a student with a per-class
        ``decision_function`` (raw scores), since the logsumexp of probabilities is constant.
    temperature : float, default=1.0
        Temperature of the routing score.
    target : Target, float, dict, str or (kind, value), default=0.3
        What the threshold is calibrated for on the calibration part; anything
        :meth:`cascadekit.calibration.Target.parse` accepts:

        * a float ``s`` or ``{"teacher_share": s}``: send a share ``s`` of inputs to the
          teacher (the lowest-scoring ones);
        * ``{"accuracy": a}``: the cheapest threshold whose cascade accuracy on the
          calibration part is at least ``a`` (raises
          :class:`~cascadekit.errors.InfeasibleTargetError` if none is);
        * ``{"relative_cost": r}``: the most accurate threshold whose mean cost per input is
          at most ``r`` times the teacher's (set ``costs``);
        * ``{"accuracy_drop": epsilon, "delta": d}``: the guarantee of
          :func:`cascadekit.calibration.guaranteed_threshold` (the population accuracy drop
          against the teacher is at most ``epsilon`` with probability ``1 - d``), valid when
          the calibration part is i.i.d. with future data and chose nothing else;
        * ``"crossing"``: where the score densities of right and wrong answers cross.

        Targets other than ``accuracy_drop`` are measured on the calibration part, not
        guaranteed.
    calibration_size : float, default=0.5
        Share of ``(X, y)`` held out to calibrate the threshold when stages are fitted; all
        of it is used when nothing is fitted.
    prefit : bool, default=False
        Treat scikit-learn stages as already fitted (calibrate only, on all of ``(X, y)``).
    costs : sequence of N floats, optional
        Cost per input of every stage (student, intermediates, teacher); needed by a
        ``relative_cost`` target and in ``cascade_`` reports.
    random_state : int, RandomState or None, default=None
        Seed of the fit/calibration split.
    intermediates : sequence of estimators or models, default=()
        Stages between the student and the teacher, cheapest first: an N-stage cascade
        (N = 2 + len(intermediates)) with one threshold per non-final stage, all on
        ``routing_score``; fitted and calibrated like the student.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    thresholds_ : ndarray of shape (N-1,)
        The calibrated thresholds on the non-final stages' routing scores (one for a
        student/teacher pair, as :attr:`cascadekit.Cascade.thresholds_`).
    router_ : cascadekit.router.Router
        The calibrated routing rule (save it with ``router_.save(path)``).
    cascade_ : cascadekit.Cascade
        The fitted cascade, ``router_.to_cascade(models=stages_)`` (its ``thresholds`` can be
        changed live).
    stages_ : list of model adapters
        The fitted stages in cascade order; ``student_`` and ``teacher_`` are the first and the
        last.
    calibration_ : cascadekit.calibration.CalibrationResult
        What calibration found on the calibration part: threshold, teacher share, relative
        cost, cascade and teacher accuracy, number of samples.
    n_fit_ : int
        Number of samples the stages were fitted on (0 when nothing was fitted).
    n_features_in_ : int
        Only when both stages are scikit-learn estimators on 2-D numeric input.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CascadeClassifier(LogisticRegression(max_iter=2000),
    ...                         RandomForestClassifier(n_estimators=50, random_state=0),
    ...                         routing_score="max_softmax", target=0.3, random_state=0)
    >>> clf.fit(X[:1200] / 16, y[:1200]).predict(X[1200:1205] / 16).shape
    (5,)
    >>> 0.85 < clf.score(X[1200:] / 16, y[1200:]) <= 1
    True
    """

    def __init__(
        self,
        student: Any,
        teacher: Any,
        routing_score: str | Callable[..., Any] = "max_softmax",
        temperature: float = 1.0,
        target: Any = 0.3,
        calibration_size: float = 0.5,
        prefit: bool = False,
        costs: Sequence[float] | None = None,
        random_state: Any = None,
        intermediates: Sequence[Any] = (),
    ) -> None:
        self.student = student
        self.teacher = teacher
        self.routing_score = routing_score
        self.temperature = temperature
        self.target = target
        self.calibration_size = calibration_size
        self.prefit = prefit
        self.costs = costs
        self.random_state = random_state
        self.intermediates = intermediates

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags

    # -- fitting ------------------------------------------------------------------------------

    def _stages(self) -> list[Any]:
        """The stage parameters in cascade order: student, intermediates, teacher."""
        return [self.student, *list(self.intermediates or ()), self.teacher]

    def _validates_arrays(self) -> bool:
        return all(_is_sklearn(m) and _needs_2d_numeric(m) for m in self._stages())

    def fit(self, X: Any, y: Any) -> CascadeClassifier:
        """Fit the unfitted stages on part of ``(X, y)`` and calibrate the threshold on the rest.

        Returns
        -------
        self
        """
        target = Target.parse(self.target)
        check_temperature(self.temperature)
        if self._validates_arrays():
            X, y = validate_data(self, X, y)
        else:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        n = n_inputs(X)
        if n != y.shape[0]:
            raise ParameterError(f"X has {n} inputs but y has {y.shape[0]} labels.")
        stages = self._stages()
        to_fit = [(not self.prefit) and _is_sklearn(m) for m in stages]
        all_sklearn = all(_is_sklearn(m) for m in stages)
        if all_sklearn:
            # the labels, and every class a prefitted stage knows (its classes_)
            _, known = align_classes([m for m, f in zip(stages, to_fit, strict=True) if not f])
            self.classes_ = np.unique(y if known is None else np.concatenate([y, known]))
            y_enc = np.searchsorted(self.classes_, y)
        else:
            self.classes_, y_enc = self._classes_for_models(y)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise LabelError(
                f"CascadeClassifier needs samples of at least 2 classes; got one class "
                f"({self.classes_.tolist()}). Pass labelled data of every class."
            )
        if any(to_fit):
            fit_idx, cal_idx = self._split(n, y_enc)
            X_fit, y_fit = take(X, fit_idx), y_enc[fit_idx]
        else:
            fit_idx, cal_idx = np.zeros(0, dtype=np.int64), np.arange(n)
        raw = [
            clone(est).fit(X_fit, self.classes_[y_fit]) if needs else est
            for est, needs in zip(stages, to_fit, strict=True)
        ]
        # one class order for every stage, through the classifiers' classes_ (as
        # Cascade.from_models does); logit column j is classes_[j]
        aligned, _ = align_classes(raw, classes=self.classes_)
        self.stages_ = [as_model(m) for m in aligned]
        self.student_, self.teacher_ = self.stages_[0], self.stages_[-1]
        self._costs = [float(c) for c in check_costs(self.costs, len(stages))]
        get_score(self.routing_score)  # an unknown score name fails before any model runs
        self._calibrate(take(X, cal_idx), y_enc[cal_idx], target, n_fit=fit_idx.size)
        return self

    def _classes_for_models(self, y: Any) -> tuple[NDArray[Any], NDArray[np.int64]]:
        """Non-scikit-learn stages give one logit per class index 0..C-1."""
        arr = np.asarray(y)
        if not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
            raise LabelError(
                "With a non-scikit-learn stage, y must hold class indices 0..C-1 matching the "
                f"models' logit columns; got dtype {arr.dtype}. Encode the labels first."
            )
        c = int(arr.max()) + 1 if arr.size else 0
        for m in self._stages():
            known = getattr(as_model(m), "n_classes", None) if not _is_sklearn(m) else None
            if known:
                c = max(c, int(known))
        return np.arange(max(c, 1)), arr.astype(np.int64)

    def _split(self, n: int, y_enc: NDArray[Any]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        size = self.calibration_size
        if not isinstance(size, numbers.Real) or not (0.0 < float(size) < 1.0):
            raise ParameterError(
                f"Expected calibration_size strictly between 0 and 1; got {size!r}. For "
                "example calibration_size=0.5 holds out half of the data to calibrate."
            )
        if n < 2:
            raise ParameterError(
                f"CascadeClassifier needs at least 2 samples to fit the stages and calibrate "
                f"the threshold; got {n} sample. n_samples = {n} is too few."
            )
        counts = np.bincount(y_enc)
        n_cal = math.ceil(n * float(size))
        n_classes = int((counts > 0).sum())
        stratify = (
            y_enc if counts[counts > 0].min() >= 2 and min(n_cal, n - n_cal) >= n_classes else None
        )
        fit_idx, cal_idx = train_test_split(
            np.arange(n), test_size=float(size), random_state=self.random_state, stratify=stratify
        )
        return np.sort(fit_idx), np.sort(cal_idx)

    def _calibrate(self, X_cal: Any, y_cal: NDArray[np.int64], target: Target, n_fit: int) -> None:
        if n_inputs(X_cal) == 0:
            raise ParameterError(
                "No samples are left to calibrate the threshold; pass more data or a larger "
                "calibration_size."
            )
        logits = [m(X_cal) for m in self.stages_]
        score_fn = get_score(self.routing_score)
        scores = [np.asarray(score_fn(z, self.temperature), dtype=np.float64) for z in logits[:-1]]
        correct = [np.argmax(z, axis=1) == y_cal for z in logits]
        res = calibrate_cascade(scores, correct, target, costs=self._costs)
        n_mid = len(self.stages_) - 2
        names = ["student", *(f"intermediate{k}" for k in range(n_mid)), "teacher"]
        # the calibrated rule is a router; the router makes the cascade (as everywhere)
        self.router_ = Router.from_calibration(
            res,
            self.routing_score,
            temperature=self.temperature,
            costs=self._costs,
            stage_names=names,
        )
        self.cascade_ = self.router_.to_cascade(models=self.stages_)
        self.thresholds_ = np.asarray(self.router_.thresholds, dtype=np.float64)
        self.calibration_ = res
        self.n_fit_ = int(n_fit)

    # -- prediction ---------------------------------------------------------------------------

    def _check_X(self, X: Any) -> Any:
        check_is_fitted(self)
        n_features = getattr(self, "n_features_in_", None)
        if n_features is not None and getattr(X, "ndim", None) == 1:
            raise InputShapeError(
                f"Expected a batch of shape (n_inputs, {n_features}); got a 1-D array of shape "
                f"{X.shape}. Reshape your data: for a single example pass x.reshape(1, -1) (or "
                "x[None])."
            )
        if self._validates_arrays():
            X = validate_data(self, X, reset=False)
        return X

    def predict_cascade(self, X: Any) -> PredictResult:
        """Run the cascade and return the full :class:`~cascadekit.routing.PredictResult`.

        Its ``stage`` says which stage answered each input; ``teacher_share`` how many went to
        the teacher. Its predictions are class indices (``classes_[predictions]`` are labels).
        """
        X = self._check_X(X)
        return self.cascade_.predict(X)

    def predict(self, X: Any) -> NDArray[Any]:
        """Predicted class labels."""
        X = self._check_X(X)
        res = self.cascade_.predict(X, probabilities=False)
        out: NDArray[Any] = self.classes_[res.predictions]
        return out

    def predict_proba(self, X: Any) -> NDArray[np.floating[Any]]:
        """Class probabilities (columns ``classes_``): softmax of the answering stage's logits."""
        X = self._check_X(X)
        res = self.cascade_.predict(X)
        proba = res.probabilities
        assert proba is not None
        n_classes = len(self.classes_)
        if proba.shape[1] != n_classes:
            out = np.zeros((proba.shape[0], n_classes))
            w = min(n_classes, proba.shape[1])
            out[:, :w] = proba[:, :w]
            proba = out
        return proba
