"""The runtime state of one served model (:class:`ModelState`) and what its stages run.

Examples
--------
>>> import numpy as np
>>> from cascadekit import Cascade, Stage
>>> from cascadekit.oip import TensorSpec
>>> m = lambda x: np.stack([x[:, 0], -x[:, 0]], axis=1)
>>> served = ServedModel("toy", Cascade([Stage(model=m), Stage(model=m)], thresholds=[0.5]),
...                      TensorSpec("x", ("FP32",), (-1, 2)))
>>> warmup_input(served, 3).shape
(3, 2)
>>> state = ModelState(served)
>>> state.see_scores(0, [0.2, 0.9, float("nan")])
>>> state.scores
[(0.2, 0.9)]
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

from ..adapters import n_inputs
from ..cascade import Cascade
from ..oip import DATATYPES
from .batching import StageBatcher
from .model import ServedModel

__all__ = ["ModelState", "stage_fn", "warmup_input"]


class ModelState:
    """Runtime state of one served model inside :class:`~cascadekit.serve.InferenceService`: its
    stage batchers and time-outs, readiness (warmed up, first stage answering), failing stages,
    the score range seen per stage (admin thresholds are checked against it) and the shared
    health probe."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self.batchers: list[StageBatcher] = []
        self.timeouts: list[float | None] = []
        self.warmed = False
        self.student_ok = True
        self.error: str | None = None
        self.failing: set[int] = set()
        self.scores: list[tuple[float, float] | None] = []
        self.probe: asyncio.Task[bool] | None = None
        # the thresholds the model was configured with (calibrated on real scores): admin
        # values are checked against them as well as against the scores seen
        self.configured: tuple[float, ...] = tuple(served.cascade.thresholds or ())

    def see_scores(self, k: int, scores: Any) -> None:
        """Widen stage k's observed score range."""
        arr = np.asarray(scores, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if not arr.size:
            return
        while len(self.scores) <= k:
            self.scores.append(None)
        lo, hi = float(arr.min()), float(arr.max())
        old = self.scores[k]
        self.scores[k] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))


def stage_fn(cascade: Cascade, k: int, model: Any) -> Callable[[Any], Any]:
    """What stage k's batcher runs on a batch: the stage's logits; a non-final stage without
    an ``other_class`` gate also returns its scores and predictions (a tuple)."""
    st = cascade.stages[k]
    if k == cascade.n_stages - 1 or st.other_class is not None:

        def run(batch: Any) -> Any:
            return cascade.call_stage(k, model, batch, n_inputs(batch))

        return run

    def run_and_score(batch: Any) -> Any:
        # a non-final stage scores the whole batch once, in its thread: each request then
        # only compares its rows' scores with its threshold
        logits = cascade.call_stage(k, model, batch, n_inputs(batch))
        d = st.decide(logits, 0.0)
        return logits, d.scores, d.predictions

    return run_and_score


def warmup_input(served: ServedModel, n: int) -> Any:
    """``n`` warm-up inputs for ``served`` (its ``warmup_input``, else zeros of its input's
    shape and datatype)."""
    if served.warmup_input is not None:
        return served.warmup_input(n)
    shape = [n] + [1 if d == -1 else d for d in served.input.shape[1:]]
    return np.zeros(shape, dtype=DATATYPES[served.input.datatypes[0]])
