"""A small, real, offline student/teacher pair on scikit-learn's bundled handwritten digits.

The student is a logistic regression on 4x4 average-pooled images (16 features); the teacher a
one-hidden-layer MLP on the full 8x8 images. Both are trained by this code with fixed seeds on a
training split, and their logits on the held-out splits are real model outputs. It needs
scikit-learn (``pip install "cascadekit[sklearn]"``) and takes about a second.

Examples
--------
>>> from cascadekit.data.digits import load_digits_pair
>>> pair = load_digits_pair()
>>> pair.logits["test"]["student"].shape
(450, 10)
>>> pair.accuracy("test", "teacher") > pair.accuracy("test", "student")
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._optional import require
from .pool import LogitPool

__all__ = ["DigitsPair", "load_digits_pair"]

SPLITS = ("train", "select", "calibrate", "test")


@dataclass(kw_only=True)
class DigitsPair(LogitPool):
    """Logits of a student and a teacher on the digits splits (a :class:`LogitPool`).

    Attributes
    ----------
    logits : dict
        ``logits[split][model]`` with model in ``("student", "teacher")``, shape (n, 10).
    labels : dict
        ``labels[split]``, int64 of shape (n,).
    flops : dict
        Multiply-add FLOPs per input of each model, counted from the fitted weights' shapes.
    """

    names: tuple[str, ...] = ("student", "teacher")
    title: str = "Handwritten digits (scikit-learn): logistic regression -> MLP"


def _pool(x: NDArray[Any]) -> NDArray[np.float64]:
    imgs = x.reshape(-1, 8, 8)
    out: NDArray[np.float64] = imgs.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)
    return out


def load_digits_pair(random_state: int = 0) -> DigitsPair:
    """Train the digits student and teacher and return their logits on every split.

    Splits of the 1,797 images (stratified, fixed seed): train 597, select 300, calibrate 450,
    test 450.

    Parameters
    ----------
    random_state : int, default=0
        Seed of the split and of the MLP's initialisation.
    """
    require("sklearn", "sklearn", "The digits example")
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    idx = np.arange(y.shape[0])
    rest, test = train_test_split(idx, test_size=450, random_state=random_state, stratify=y)
    rest, cal = train_test_split(rest, test_size=450, random_state=random_state, stratify=y[rest])
    train, select = train_test_split(
        rest, test_size=300, random_state=random_state, stratify=y[rest]
    )
    parts = {"train": train, "select": select, "calibrate": cal, "test": test}

    student = LogisticRegression(C=1.0, max_iter=5000)
    student.fit(_pool(x[train]), y[train])
    teacher = MLPClassifier(hidden_layer_sizes=(64,), max_iter=600, random_state=random_state)
    teacher.fit(x[train], y[train])

    pair = DigitsPair()
    for split, ix in parts.items():
        s_logits = student.decision_function(_pool(x[ix]))
        t_logits = _mlp_logits(teacher, x[ix])
        pair.logits[split] = {
            "student": np.asarray(s_logits, dtype=np.float64),
            "teacher": t_logits,
        }
        pair.labels[split] = y[ix].astype(np.int64)
    pair.flops = {
        "student": float(64 + 2 * student.coef_.size),
        "teacher": float(sum(2 * w.size for w in teacher.coefs_)),
    }
    return pair


def _mlp_logits(mlp: Any, x: NDArray[Any]) -> NDArray[np.float64]:
    """Pre-softmax outputs of a fitted MLPClassifier (ReLU hidden layers)."""
    h = x
    for w, b in zip(mlp.coefs_[:-1], mlp.intercepts_[:-1], strict=True):
        h = np.maximum(h @ w + b, 0.0)
    out: NDArray[np.float64] = h @ mlp.coefs_[-1] + mlp.intercepts_[-1]
    return out
