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

``cascadekit serve --demo text`` serves :func:`tweet_sentiment_model` instead: tweets in, one of
negative / neutral / positive out, through the text pool's encoders and linear heads
(:mod:`cascadekit.data.text`). Its input ``text`` is a BYTES tensor of shape ``[-1]`` (UTF-8
strings); the pair is the tweet pool's cheapest calibrated pair into its last (largest) encoder,
routed by the same choice of score (select split) and threshold (calibrate split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.fashion_mnist import FASHION_MNIST_CLASSES
from ..errors import InfeasibleTargetError
from ..oip import TensorSpec
from ..router import Router
from .model import ServedModel, text_input

__all__ = [
    "CLASS_NAMES",
    "DEMO_INPUT",
    "TEXT_INPUT",
    "TEXT_MAX_BYTES",
    "TEXT_STAGE_TIMEOUT",
    "TEXT_TARGET",
    "DemoChoice",
    "choose_router",
    "choose_text_pair",
    "fashion_mnist_model",
    "tweet_sentiment_model",
]

#: Fashion-MNIST class names, by label.
CLASS_NAMES = FASHION_MNIST_CLASSES
#: The demo model's input tensor.
DEMO_INPUT = TensorSpec("image", ("UINT8", "FP32"), (-1, 28, 28), value_range=(0.0, 255.0))
#: The text demo's input tensor: a batch of UTF-8 strings.
TEXT_INPUT = TensorSpec("text", ("BYTES",), (-1,))
#: Longest text the text demo takes, in UTF-8 bytes (its encoders read 128 tokens at most).
TEXT_MAX_BYTES = 4096
#: Seconds the text demo's teacher may take before a request falls back to the student: an
#: MPNet-base batch of 64 tweets takes seconds on a small CPU, far beyond the image demo's 1 s.
TEXT_STAGE_TIMEOUT = 30.0
#: The text demo's calibration target: an accuracy drop of at most 0.5 point against the
#: teacher with probability 0.9. Its calibrate split has 750 tweets, on which two encoders can
#: look equally accurate and differ by points on new tweets, so the point estimate that the
#: image demo's 7,500 calibration images afford is not enough here.
TEXT_TARGET = {"accuracy_drop": 0.005, "delta": 0.1}


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


def choose_router(
    zoo: Any, student: str = "student", teacher: str = "teacher", target: Any = None
) -> DemoChoice:
    """Pick the score on the select split and the threshold on the calibrate split.

    Parameters
    ----------
    zoo : FashionMnistZoo
        Or any pool with ``select`` and ``calibrate`` splits.
    student, teacher : str
        The pool's names of the two stages.
    target : Target or its forms, optional
        What the threshold must reach on the calibrate split
        (:func:`cascadekit.calibration.calibrate_cascade`); by default the teacher's accuracy
        there (:func:`cascadekit.calibration.threshold_for_accuracy`).

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
        if target is None:
            res = calibration.threshold_for_accuracy(s, cs, ct, float(np.mean(ct)), costs=costs)
        else:
            res = calibration.calibrate_cascade([s], [cs, ct], target, costs=costs)
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
    return ServedModel(
        name=name,
        cascade=_demo_cascade(student, teacher, costs, choice, teacher_only),
        input=DEMO_INPUT,
        preprocess=_to_float32,
        class_names=list(CLASS_NAMES),
    )


def _demo_cascade(
    student: Any,
    teacher: Any,
    costs: list[float],
    choice: DemoChoice,
    teacher_only: bool,
    names: tuple[str, str] = ("student", "teacher"),
) -> Any:
    """The calibrated student -> teacher cascade, or the teacher alone behind the same code."""
    if teacher_only:  # every input stays on the teacher
        models, stages, threshold = [teacher, teacher], [names[1], "unused"], -np.inf
        costs = [costs[1], costs[1]]
    else:
        models, stages, threshold = [student, teacher], list(names), choice.threshold
    rule = Router(
        score=choice.score,
        thresholds=[threshold],
        temperature=choice.temperature,
        costs=costs,
        stage_names=stages,
    )
    return rule.to_cascade(models=models)


def choose_text_pair(
    pool: Any, teacher: str | None = None, target: Any = None
) -> tuple[str, DemoChoice]:
    """The student whose calibrated pair into ``teacher`` costs least per input.

    Each candidate student is routed by :func:`choose_router` (score on the select split,
    threshold for ``target`` on the calibrate split); the pair's expected time per input on the
    calibrate split is ``t_student + share * t_teacher`` with the pool's measured per-input
    latencies (its largest measured batch size), or its FLOPs when it has no latencies.

    Parameters
    ----------
    pool : LogitPool
        The text pool (:func:`cascadekit.data.text.load_text_pool`), or any pool.
    teacher : str, optional
        Defaults to the pool's last model.
    target : Target or its forms, optional
        Passed to :func:`choose_router`.

    Returns
    -------
    (student, DemoChoice)
    """
    teacher = teacher or pool.names[-1]
    best: tuple[float, str, DemoChoice] | None = None
    for student in pool.names:
        if student == teacher:
            continue
        choice = choose_router(pool, student, teacher, target)
        c_s, c_t = _per_input_cost(pool, student), _per_input_cost(pool, teacher)
        cost = c_s + choice.calibration_teacher_share * c_t
        if best is None or cost < best[0]:
            best = (cost, student, choice)
    if best is None:
        raise InfeasibleTargetError(
            f"The pool has no model besides the teacher {teacher!r}; a cascade needs two."
        )
    return best[1], best[2]


def _per_input_cost(pool: Any, name: str) -> float:
    measured = pool.latency.get(name) or {}
    if measured:
        return float(measured[max(measured)])
    return float(pool.flops[name])


def tweet_sentiment_model(
    pool: Any = None,
    *,
    name: str = "tweet-sentiment",
    teacher: str | None = None,
    student: str | None = None,
    teacher_only: bool = False,
    reduced: bool = False,
    model_batch_size: int = 64,
    max_bytes: int = TEXT_MAX_BYTES,
    target: Any = None,
) -> ServedModel:
    """The text demo: tweets (BYTES) in, sentiment out, through a calibrated encoder pair.

    The stages are the text pool's encoders with their linear heads
    (:func:`cascadekit.data.text.load_text_models`), so the served answers are those of the
    pool's cascade on the same texts. The pair is :func:`choose_text_pair`'s unless ``student``
    is given; the score and threshold come from :func:`choose_router`, for ``target``.

    Parameters
    ----------
    pool : TextPool, optional
        Defaults to :func:`cascadekit.data.text.load_text_pool` (all three encoders: MiniLM-L3,
        MiniLM-L6 and MPNet-base, which needs ``scripts/setup.sh --text``), or its reduced
        recipe (the two MiniLMs) with ``reduced=True``.
    name : str, default="tweet-sentiment"
    teacher : str, optional
        Defaults to the pool's last (largest) encoder.
    student : str, optional
        Defaults to the cheapest calibrated pair's.
    teacher_only : bool, default=False
        Serve the teacher alone through the same server (for comparisons).
    reduced : bool, default=False
        Use the reduced pool recipe when ``pool`` is not given.
    model_batch_size : int, default=64
        Texts per encoder call inside each model.
    max_bytes : int, default=4096
        Longest text a request may send, in UTF-8 bytes.
    target : Target or its forms, optional
        The calibration target of the threshold. By default :data:`TEXT_TARGET` (at most 0.5
        point below the teacher, with probability 0.9) for the full pool, and the teacher's
        calibration accuracy for the reduced one (its 56 calibration tweets cannot certify a
        0.5-point drop).

    Returns
    -------
    ServedModel
        Input ``text``: BYTES, shape ``[-1]``.

    Raises
    ------
    DataNotFoundError, MissingDependencyError
        The tweets, an encoder package or the cached embeddings are missing (the message names
        what to install or run).
    """
    from ..data.text import CLASSES, load_text_models, load_text_pool

    if pool is None:
        pool = load_text_pool(reduced=reduced)
    if target is None and not reduced:
        target = TEXT_TARGET
    teacher = teacher or pool.names[-1]
    if student is None:
        student, choice = choose_text_pair(pool, teacher, target)
    else:
        choice = choose_router(pool, student, teacher, target)
    live = load_text_models(
        (student, teacher),
        batch_size=model_batch_size,
        reduced=reduced,
        encode_missing=False,
    )
    costs = [float(pool.flops[student]), float(pool.flops[teacher])]
    preprocess, warmup = text_input(TEXT_INPUT, max_bytes)
    return ServedModel(
        name=name,
        cascade=_demo_cascade(
            live[student], live[teacher], costs, choice, teacher_only, (student, teacher)
        ),
        input=TEXT_INPUT,
        preprocess=preprocess,
        class_names=list(CLASSES),
        warmup_input=warmup,
    )
