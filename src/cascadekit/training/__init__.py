"""Students built for the cascade: distillation, confidence tuning, learning to defer, committees.

For a *given* student, confidence-based deferral is close to the best a fixed score can do; what
is left is the student itself. These functions train a user's own torch student for the
cascade it will serve in, each deterministic (``random_state``), with a progress callback and a
cache keyed by the recipe (a second call loads the weights):

======================  ======================================================================
function                what it trains
======================  ======================================================================
:func:`fit`             the baseline: cross-entropy on the labels
:func:`distill`         knowledge distillation from the teacher (its logits computed once,
                        cached: :func:`compute_teacher_logits`)
:func:`confidence_tune` "Gatekeeper" fine-tuning: right inputs keep their labels, wrong ones
                        are pushed to a flat prediction (teacher-aware with
                        ``teacher_correct``)
:func:`train_deferral`  a deferral head on a frozen student (learning to defer, CE or
                        one-vs-all surrogate): a :class:`DeferralStudent`
:func:`train_committee` several cheap students as one :class:`Committee` stage
======================  ======================================================================

The routing scores that go with them live in :mod:`cascadekit.training.scores`
(``deferral``, ``agreement``, ``p_norm_softmax``); router files name them, and a trained
student is a torch module like any other: it plugs into :meth:`cascadekit.Cascade.from_models`,
router files and the server.

Importing this package does not import torch (each function does, when called); the torch
modules :class:`DeferralStudent` and :class:`Committee` are loaded on first access.

Examples
--------
>>> import numpy as np, torch, tempfile
>>> from cascadekit import Cascade, training
>>> torch.manual_seed(0) and None
>>> x = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
>>> y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
>>> teacher = training.fit(torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(),
...                        torch.nn.Linear(16, 2)), x, y, epochs=20, cache=False).model
>>> student = training.distill(torch.nn.Linear(4, 2), x, y, teacher=teacher,
...                            cache_dir=tempfile.mkdtemp()).model
>>> c = Cascade.from_models([student, teacher], costs=[1, 20], score="max_softmax",
...                         thresholds=[2.0])
>>> c.predict(x).predictions.shape
(256,)
"""

from __future__ import annotations

import typing as _typing

from ._common import TrainResult, fingerprint
from .deferral import SURROGATES, train_committee, train_deferral
from .scores import (
    RoutingScore,
    agreement,
    committee_agreement,
    deferral,
    p_norm_softmax,
    resolve_score,
    tune_p_norm,
)
from .students import compute_teacher_logits, confidence_tune, distill, fit

__all__ = [
    "SURROGATES",
    "Committee",
    "DeferralStudent",
    "RoutingScore",
    "TrainResult",
    "agreement",
    "committee_agreement",
    "compute_teacher_logits",
    "confidence_tune",
    "deferral",
    "distill",
    "fingerprint",
    "fit",
    "p_norm_softmax",
    "resolve_score",
    "train_committee",
    "train_deferral",
    "tune_p_norm",
]


def __getattr__(name: str) -> _typing.Any:
    """Load the torch modules on first access (importing them imports torch)."""
    if name in ("Committee", "DeferralStudent"):
        from . import _modules

        return getattr(_modules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
