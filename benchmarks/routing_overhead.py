"""Where the routing overhead of ``Cascade.predict`` goes, against the student's own time.

On the Fashion-MNIST zoo's test images, at one batch size (256 by default), one run measures
per input (minimum over ``--repeats``):

* ``student``: the student's forward pass (torch, ``--threads`` threads);
* ``score``: the routing score of its logits (``--score``, validated, as ``predict`` does);
* ``gather``: gathering the deferred images (teacher share ``--share``) into dense batches, as
  ``predict`` hands them to the teacher;
* ``copy``: a plain copy of every image (the floor of any gather);
* ``predict_overhead``: ``Cascade.predict``'s own time outside both models
  (``PredictResult.overhead_seconds``) with the real student and teacher.

Each is printed in microseconds per input and as a share of the student's time. A student whose
forward pass costs about as much as copying its input can never have routing under a few per
cent of its time when the deferred inputs must be gathered.

Run::

    .venv/bin/python benchmarks/routing_overhead.py
    .venv/bin/python benchmarks/routing_overhead.py --student intermediate
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _best(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="student")
    ap.add_argument("--teacher", default="teacher")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--share", type=float, default=0.5)
    ap.add_argument("--score", default="max_softmax")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reduced", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from cascadekit import Cascade, Stage
    from cascadekit.adapters import TorchModel
    from cascadekit.calibration import threshold_for_teacher_share
    from cascadekit.data.zoo import load_fashion_mnist_zoo
    from cascadekit.scores import compute_score

    torch.set_num_threads(args.threads)
    zoo = load_fashion_mnist_zoo(reduced=args.reduced)
    x = np.asarray(zoo.images["test"], dtype=np.float32)
    n, b = x.shape[0], args.batch
    student = TorchModel(zoo.models[args.student].eval(), batch_size=b, name="student")
    teacher = TorchModel(zoo.models[args.teacher].eval(), batch_size=b, name="teacher")
    logits = student(x)
    rng = np.random.default_rng(0)
    deferred = np.sort(rng.choice(n, int(args.share * n), replace=False))
    th = threshold_for_teacher_share(
        compute_score(args.score, zoo.logits["calibrate"][args.student]), args.share
    )
    cascade = Cascade(
        [Stage(model=student, score=args.score), Stage(model=teacher, cost=1.0)], thresholds=[th]
    )
    starts = range(0, n, b)
    parts = {
        "student": _best(lambda: student(x), args.repeats),
        "score": _best(
            lambda: [compute_score(args.score, logits[i : i + b]) for i in starts], args.repeats
        ),
        "gather": _best(
            lambda: [x[deferred[i : i + b]] for i in range(0, deferred.size, b)], args.repeats
        ),
        "copy": _best(lambda: [x[i : i + b].copy() for i in starts], args.repeats),
    }
    over = float("inf")
    for _ in range(args.repeats):
        over = min(over, cascade.predict(x, probabilities=False).overhead_seconds)
    parts["predict_overhead"] = over
    us = {k: 1e6 * v / n for k, v in parts.items()}
    print(
        f"student={args.student} teacher={args.teacher} batch={b} share={args.share} "
        f"score={args.score} threads={args.threads} n={n} repeats={args.repeats}"
    )
    for k, v in us.items():
        print(f"{k:>17}: {v:8.3f} us per input = {v / us['student']:7.2%} of the student's time")
    return us


if __name__ == "__main__":
    main()
