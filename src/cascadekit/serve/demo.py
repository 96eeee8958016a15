"""The embedded-default cascade of ``cascadekit serve --demo``: Fashion-MNIST, student -> teacher.

The student (MLP) and teacher (CNN) come from the cached Fashion-MNIST zoo
(:func:`cascadekit.data.load_fashion_mnist_zoo`). The routing score and its temperature are
chosen on the zoo's **select** split as ``cascadekit demo`` does (the score capturing the largest
share of the random-to-oracle gap), and the threshold on the **calibrate** split with
:func:`cascadekit.calibration.threshold_for_accuracy`: the cheapest threshold that reaches the
teacher's calibration accuracy. The test split stays untouched for reported figures.

The served model is ``fashion-mnist`` with one input ``image``: raw pixels 0..255 as UINT8 or
FP32, shape ``[-1, 28, 28]``. The server casts them to float32; the networks normalise them in
their first layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.fashion_mnist import FASHION_MNIST_CLASSES
from ..errors import InfeasibleTargetError
from ..oip import TensorSpec
from ..router import Router
from .model import ServedModel

__all__ = ["CLASS_NAMES", "DEMO_INPUT", "DemoChoice", "choose_router", "fashion_mnist_model"]

#: Fashion-MNIST class names, by label.
CLASS_NAMES = FASHION_MNIST_CLASSES
#: The demo model's input tensor.
DEMO_INPUT = TensorSpec("image", ("UINT8", "FP32"), (-1, 28, 28), value_range=(0.0, 255.0))


@dataclass(frozen=True)
class DemoChoice:
    """Routing rule of the demo: score and temperature (select split), threshold (calibrate)."""

    score: str
    temperature: float
    threshold: float
    calibration_teacher_share: float
    calibration_accuracy: float


def _to_float32(x: Any) -> Any:
    return np.asarray(x, dtype=np.float32)


def choose_router(zoo: Any, student: str = "student", teacher: str = "teacher") -> DemoChoice:
    """Pick the score on the select split and the threshold on the calibrate split.

    Parameters
    ----------
    zoo : FashionMnistZoo
    student, teacher : str
        Zoo model names.

    Returns
    -------
    DemoChoice
    """
    from .. import calibration, selection
    from ..curves import correctness

    pool = zoo.subset([student, teacher], ["select", "calibrate"])
    costs = np.array(pool.costs(), dtype=np.float64)
    best = selection.select_score(
        pool.logits["select"][student],
        pool.correct("select", student),
        pool.correct("select", teacher),
        costs,
    )
    score, temperature = best.score, best.temperature
    cal = pool.logits["calibrate"]
    s = best.scores(cal[student])
    cs = correctness(cal[student], pool.labels["calibrate"])
    ct = correctness(cal[teacher], pool.labels["calibrate"])
    try:
        res = calibration.threshold_for_accuracy(s, cs, ct, float(np.mean(ct)), costs=costs)
        threshold = res.thresholds[0]
        share, acc = float(res.teacher_share), float(res.accuracy)
    except InfeasibleTargetError:
        threshold, share, acc = float("inf"), 1.0, float(np.mean(ct))
    return DemoChoice(score, temperature, threshold, share, acc)


def fashion_mnist_model(
    zoo: Any = None,
    *,
    name: str = "fashion-mnist",
    teacher_only: bool = False,
    reduced: bool = False,
    model_batch_size: int = 256,
    choice: DemoChoice | None = None,
) -> ServedModel:
    """The demo cascade as a :class:`ServedModel` (student -> teacher, calibrated).

    Parameters
    ----------
    zoo : FashionMnistZoo, optional
        Defaults to :func:`cascadekit.data.load_fashion_mnist_zoo` (trained once, cached).
    name : str, default="fashion-mnist"
    teacher_only : bool, default=False
        Serve the teacher alone through the same server (for comparisons): every input stays
        on the first stage, which is the teacher.
    reduced : bool, default=False
        Use the reduced zoo recipe when ``zoo`` is not given.
    model_batch_size : int, default=256
        Largest chunk per forward pass inside each model.
    choice : DemoChoice, optional
        Reuse a routing rule instead of choosing it again.

    Returns
    -------
    ServedModel
    """
    from ..adapters import TorchModel

    if zoo is None:
        from ..data.zoo import load_fashion_mnist_zoo

        zoo = load_fashion_mnist_zoo(reduced=reduced)
    choice = choice or choose_router(zoo)
    costs = [float(zoo.flops["student"]), float(zoo.flops["teacher"])]
    student = TorchModel(zoo.models["student"], batch_size=model_batch_size, name="student")
    teacher = TorchModel(zoo.models["teacher"], batch_size=model_batch_size, name="teacher")
    if teacher_only:  # every input stays on the teacher
        models, names, threshold = [teacher, teacher], ["teacher", "unused"], -np.inf
        costs = [costs[1], costs[1]]
    else:
        models, names, threshold = [student, teacher], ["student", "teacher"], choice.threshold
    rule = Router(
        score=choice.score,
        thresholds=[threshold],
        temperature=choice.temperature,
        costs=costs,
        stage_names=names,
    )
    cascade = rule.to_cascade(models=models)
    return ServedModel(
        name=name,
        cascade=cascade,
        input=DEMO_INPUT,
        preprocess=_to_float32,
        class_names=list(CLASS_NAMES),
    )
