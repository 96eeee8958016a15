"""Reference answers and a fault-injecting model wrapper for the server tests."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np


class FaultyModel:
    """Wraps a real model; ``mode`` switches it to ``"slow"`` (sleeps ``delay`` s per call) or
    ``"fail"`` (raises) at any time, from any thread."""

    def __init__(self, inner: Any, delay: float = 0.5) -> None:
        self.inner = inner
        self.delay = delay
        self.mode = "ok"
        self.calls = 0
        self._lock = threading.Lock()
        self.batch_size = getattr(inner, "batch_size", None)
        self.name = "faulty-" + str(getattr(inner, "name", "model"))

    def __call__(self, x: Any) -> Any:
        with self._lock:
            self.calls += 1
        if self.mode == "slow":
            time.sleep(self.delay)
        elif self.mode == "fail":
            raise RuntimeError("injected teacher failure")
        return self.inner(x)


def reference(served: Any, images: np.ndarray, thresholds: Any = None) -> dict[str, np.ndarray]:
    """What the cascade answers offline (in-process ``Cascade.predict``), plus each stage alone."""
    x = images.astype(np.float32)
    cascade = served.cascade
    r = cascade.predict(x, thresholds=thresholds, probabilities=False)
    models = cascade.live_models()
    student = np.argmax(models[0](x), axis=1)
    return {
        "label": r.predictions,
        "stage": r.stage,
        "score": r.stage_scores[:, 0],
        "student": student,
    }


def check_correct_or_flagged(
    label: np.ndarray,
    stage: np.ndarray,
    fallback: np.ndarray,
    score: np.ndarray,
    ref: dict[str, np.ndarray],
    idx: np.ndarray,
    threshold: float,
) -> tuple[int, int]:
    """Every answer equals the offline cascade's, or is flagged and equals the student's.

    An input whose score lies within float noise of the threshold may legitimately route the
    other way in a different batch composition; it must then equal that stage's answer.
    Returns (n_correct, n_flagged).
    """
    np.testing.assert_allclose(score, ref["score"][idx], rtol=1e-4, atol=1e-4)
    flagged = fallback.astype(bool)
    assert np.array_equal(label[flagged], ref["student"][idx][flagged]), "flagged != student"
    assert np.all(stage[flagged] == 0)
    ok = ~flagged
    same_route = stage[ok] == ref["stage"][idx][ok]
    near = np.abs(ref["score"][idx][ok] - threshold) < 1e-4
    assert np.all(same_route | near), "routing differs from the offline cascade"
    sel = same_route
    assert np.array_equal(label[ok][sel], ref["label"][idx][ok][sel]), "wrong labels"
    return int(ok.sum()), int(flagged.sum())


# -- toy stages of the driver tests: each input row holds every stage's logits side by side ----
#: Columns of each toy stage in an input row: a specialized student (2 real classes + "other"),
#: an intermediate model and the teacher (5 classes each).
TOY_SLICES = (slice(0, 3), slice(3, 8), slice(8, 13))


def toy_student(x: Any) -> np.ndarray:
    """The specialized student's logits: its classes are the teacher's 4 and 2, then "other"."""
    return np.asarray(x)[:, TOY_SLICES[0]]


def toy_middle(x: Any) -> np.ndarray:
    """The intermediate stage's logits (the teacher's 5 classes)."""
    return np.asarray(x)[:, TOY_SLICES[1]]


def toy_teacher(x: Any) -> np.ndarray:
    """The teacher's logits (5 classes)."""
    return np.asarray(x)[:, TOY_SLICES[2]]


def toy_teacher_down(x: Any) -> np.ndarray:
    """A teacher that cannot be reached (a remote stage timing out, for instance)."""
    from cascadekit.errors import StageUnavailableError

    raise StageUnavailableError("the toy teacher is down")


def toy_inputs(n: int = 400, seed: int = 0) -> np.ndarray:
    """Rows of toy logits (float32): some confident, some not, some whose student says "other"."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=2.0, size=(n, 13)).astype(np.float32)
    x[: n // 8, 2] += 6.0  # the student's "other" wins, however confident it is otherwise
    return x
