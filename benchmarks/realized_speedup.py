"""Realised vs ideal speed-up of a live cascade (Cascade.predict) on the Fashion-MNIST pair.

The student (MLP 784-128-10) and the teacher (CNN conv32-conv64 with batch norm, FC 128) come
from ``cascadekit.data.zoo`` (trained once, then cached). Thresholds are set on the *calibrate*
split's student scores for teacher shares 0.1 .. 0.9, and everything is timed on the *test*
images in one run, with ``torch.set_num_threads(2)``:

* ``t_S``, ``t_T``: seconds per input of the student alone and the teacher alone, run over the
  test images in batches of ``b``;
* ``t_C``: seconds per input of ``Cascade.predict`` over the same images with both stages'
  batch size ``b`` (the student on every image, the teacher only on the undecided ones,
  re-batched into dense batches of ``b``), routing included;
* ideal ``t_S + share * t_T`` with the teacher share realised on the test images;
* ``realized_over_ideal = ideal / t_C`` (1 = no loss; > 1 is possible when the teacher's
  per-input time on its sub-batches is below its average);
* routing overhead: the time of ``predict`` outside the two models (scoring, gather, scatter,
  output checks) per input (``ovh_us``, microseconds), and as a share of the student's time
  (``ovh/t_S``) and of the cascade's (``ovh/t_C``).

Every timing is the minimum over ``--repeats`` interleaved rounds (robust to other load on the
machine). The last line is ``realized_over_ideal_min=<value>``: the minimum over teacher shares
at the largest batch size (256 by default). Targets: >= 0.9, and overhead < 2%.

``--mode request`` times the other way of serving: ``predict`` called once per request batch of
``b`` inputs, so the teacher sees sub-batches of about ``share * b`` inputs.

``--pool text`` runs the same measurement on the tweet sentiment pool
(:mod:`cascadekit.data.text`): the student is MiniLM-L3 on ONNX Runtime, the teacher MPNet-base
on sentence-transformers (torch), each followed by the pool's logistic-regression head and run
live on lists of tweet strings (:func:`cascadekit.data.text.load_text_models`, whose logits equal
the pool's saved ones). Thresholds come from the calibrate split's saved student logits; the
first ``--n`` test tweets are timed (tokenisation included). MPNet encodes about 19 tweets per
second on 2 idle cores, so the text defaults are small (``--n 256 --n-batch1 16 --shares
0.2,0.5,0.8 --batch-sizes 1,32 --repeats 1``, a few minutes on 2 busy cores) and the last line
is the minimum at batch 32. It needs the text extra and the pool's cache (the first
``load_text_pool()`` takes about 12 minutes).

Usage::

    .venv/bin/python benchmarks/realized_speedup.py              # full zoo (trains once)
    .venv/bin/python benchmarks/realized_speedup.py --reduced --n 2000 --repeats 2   # small
    .venv/bin/python benchmarks/realized_speedup.py --student intermediate   # a CNN student
    nice -n 10 .venv/bin/python benchmarks/realized_speedup.py --pool text     # tweets, live
    .venv/bin/python benchmarks/realized_speedup.py --pool text --n 64 --batch-sizes 32  # small
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# Per-pool defaults of the options left unset on the command line.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "fashion": {
        "n": 10000,
        "n_batch1": 500,
        "batch_sizes": "1,32,256",
        "shares": "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
        "repeats": 3,
    },
    "text": {
        "n": 256,
        "n_batch1": 16,
        "batch_sizes": "1,32",
        "shares": "0.2,0.5,0.8",
        "repeats": 1,
    },
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--pool",
        choices=("fashion", "text"),
        default="fashion",
        help="fashion: the Fashion-MNIST MLP/CNN pair; text: MiniLM-L3 (ONNX) / MPNet on tweets",
    )
    ap.add_argument("--reduced", action="store_true", help="the small zoo (trains in seconds)")
    ap.add_argument(
        "--n", type=int, default=None, help="test inputs to time (fashion 10,000, text 256)"
    )
    ap.add_argument(
        "--n-batch1",
        type=int,
        default=None,
        help="inputs for batch size 1 (slow in Python; fashion 500, text 16)",
    )
    ap.add_argument("--batch-sizes", default=None, help="fashion 1,32,256; text 1,32")
    ap.add_argument(
        "--shares", default=None, help="target teacher shares (fashion 0.1..0.9; text 0.2,0.5,0.8)"
    )
    ap.add_argument("--repeats", type=int, default=None, help="fashion 3, text 1")
    ap.add_argument("--score", default="max_softmax")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", choices=("stream", "request"), default="stream")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument(
        "--student", default="student", help="fashion: the zoo model used as the student"
    )
    ap.add_argument(
        "--teacher", default="teacher", help="fashion: the zoo model used as the teacher"
    )
    args = ap.parse_args(argv)
    for key, value in _DEFAULTS[args.pool].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _say(msg: str) -> None:
    print(msg, flush=True)


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


@dataclass
class _Pair:
    """A student/teacher pair to time: inputs, calibrate logits and adapter factories."""

    inputs: Any  # the test inputs (an array of images or a list of tweets)
    cal_student_logits: Any  # the student's saved logits on the calibrate split
    make: Callable[[int], tuple[Any, Any]]  # batch size -> (student, teacher) adapters
    teacher_cost: float  # FLOPs per input of the teacher (the cascade's cost bookkeeping)
    n_warm: Callable[[int], int]  # batch size -> inputs to warm each model up on


def _fashion_pair(args: argparse.Namespace) -> _Pair:
    from cascadekit.adapters import TorchModel
    from cascadekit.data.zoo import load_fashion_mnist_zoo

    t0 = time.perf_counter()
    zoo = load_fashion_mnist_zoo(reduced=args.reduced, cache_dir=args.cache_dir)
    s_name, t_name = args.student, args.teacher
    _say(
        f"zoo: {'trained' if zoo.trained else 'loaded from cache'} in "
        f"{time.perf_counter() - t0:.1f}s; test accuracy student ({s_name}) "
        f"{zoo.accuracy('test', s_name):.4f}, teacher ({t_name}) "
        f"{zoo.accuracy('test', t_name):.4f}; FLOPs student {zoo.flops[s_name]:,}, teacher "
        f"{zoo.flops[t_name]:,}"
    )
    student_net, teacher_net = zoo.models[s_name].eval(), zoo.models[t_name].eval()

    def make(b: int) -> tuple[Any, Any]:
        return (
            TorchModel(student_net, batch_size=b, name="student"),
            TorchModel(teacher_net, batch_size=b, name="teacher"),
        )

    return _Pair(
        inputs=np.asarray(zoo.images["test"], dtype=np.float32),
        cal_student_logits=zoo.logits["calibrate"][s_name],
        make=make,
        teacher_cost=float(zoo.flops[t_name]),
        n_warm=lambda b: 2 * b,
    )


def _text_pair(args: argparse.Namespace) -> _Pair:
    from cascadekit.adapters import TextEncoderModel
    from cascadekit.data.text import load_text_models, load_text_pool

    names = ("minilm-l3", "mpnet")
    t0 = time.perf_counter()
    # the default pool holds all three encoders; the reduced one only what is asked for
    models_arg = names if args.reduced else None
    pool = load_text_pool(reduced=args.reduced, cache_dir=args.cache_dir, models=models_arg)
    t1 = time.perf_counter()
    models = load_text_models(names, reduced=args.reduced, cache_dir=args.cache_dir)
    live = [models[n] for n in names]  # encoder + head, re-wrapped per batch size below
    _say(
        f"text pool: {'loaded from cache' if pool.from_cache else 'built'} in {t1 - t0:.1f}s, "
        f"live models (encoders + refit heads) in {time.perf_counter() - t1:.1f}s; test "
        f"accuracy student {names[0]} {pool.accuracy('test', names[0]):.4f}, teacher "
        f"{names[1]} {pool.accuracy('test', names[1]):.4f}; FLOPs per tweet student "
        f"{pool.flops[names[0]]:,.0f}, teacher {pool.flops[names[1]]:,.0f}"
    )
    if hasattr(os, "getloadavg"):  # timings on shared cores: say how busy they were
        _say(f"load average (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    def make(b: int) -> tuple[Any, Any]:
        return (
            TextEncoderModel(live[0].encoder, live[0].head, batch_size=b, name="student"),
            TextEncoderModel(live[1].encoder, live[1].head, batch_size=b, name="teacher"),
        )

    return _Pair(
        inputs=list(pool.texts["test"]),
        cal_student_logits=pool.logits["calibrate"][names[0]],
        make=make,
        teacher_cost=float(pool.flops[names[1]]),
        n_warm=lambda b: min(2 * b, 8),  # MPNet is slow: a short warm-up
    )


def main(argv: list[str] | None = None) -> float:
    args = _parse(argv)
    import torch

    from cascadekit import Cascade, Stage
    from cascadekit.calibration import threshold_for_teacher_share
    from cascadekit.scores import compute_score

    torch.set_num_threads(args.threads)
    pair = _text_pair(args) if args.pool == "text" else _fashion_pair(args)
    inputs = pair.inputs
    n = min(args.n, len(inputs))
    shares = [float(s) for s in args.shares.split(",")]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    cal_scores = compute_score(args.score, pair.cal_student_logits)
    thresholds = [threshold_for_teacher_share(cal_scores, s) for s in shares]

    _say(
        f"mode={args.mode} score={args.score} threads={args.threads} n={n} "
        f"repeats={args.repeats} (times are seconds per input, min over repeats)"
    )
    header = (
        f"{'batch':>5} {'share':>5} {'real':>6} {'t_S':>9} {'t_T':>9} {'ideal':>9} "
        f"{'t_C':>9} {'speedup':>7} {'ideal_su':>8} {'real/ideal':>10} {'ovh_us':>7} "
        f"{'ovh/t_S':>8} {'ovh/t_C':>8}"
    )
    _say(header)
    result: dict[int, list[float]] = {}
    for b in sizes:
        m = min(n, args.n_batch1) if b == 1 else n
        X = inputs[:m]
        student, teacher = pair.make(b)
        cascade = Cascade(
            [
                Stage(model=student, name="student", score=args.score),
                Stage(model=teacher, name="teacher", cost=pair.teacher_cost),
            ]
        )

        def run_cascade(th: float, X: Any = X, b: int = b, cascade: Cascade = cascade) -> Any:
            if args.mode == "stream":
                return cascade.predict(X, thresholds=[th], probabilities=False)
            parts = [
                cascade.predict(X[i : i + b], thresholds=[th], probabilities=False)
                for i in range(0, len(X), b)
            ]
            return parts

        student(X[: pair.n_warm(b)]), teacher(X[: pair.n_warm(b)])  # warm up
        t_s = t_t = float("inf")
        t_c = [float("inf")] * len(shares)
        over = [float("inf")] * len(shares)  # seconds per input outside the models
        real_share = [0.0] * len(shares)
        for _ in range(args.repeats):
            t_s = min(t_s, _timed(lambda X=X, student=student: student(X))[0] / m)
            t_t = min(t_t, _timed(lambda X=X, teacher=teacher: teacher(X))[0] / m)
            for j, th in enumerate(thresholds):
                dt, res = _timed(lambda th=th: run_cascade(th))
                t_c[j] = min(t_c[j], dt / m)
                results = res if isinstance(res, list) else [res]
                over[j] = min(over[j], sum(r.overhead_seconds for r in results) / m)
                real_share[j] = float(np.mean(np.concatenate([r.stage for r in results]) == 1))
        ratios = []
        for j, share in enumerate(shares):
            ideal = t_s + real_share[j] * t_t
            ratio = ideal / t_c[j]
            ratios.append(ratio)
            _say(
                f"{b:>5} {share:>5.2f} {real_share[j]:>6.3f} {t_s:>9.3g} {t_t:>9.3g} "
                f"{ideal:>9.3g} {t_c[j]:>9.3g} {t_t / t_c[j]:>7.2f} {t_t / ideal:>8.2f} "
                f"{ratio:>10.3f} {over[j] * 1e6:>7.3f} {over[j] / t_s:>8.2%} "
                f"{over[j] / t_c[j]:>8.2%}"
            )
        result[b] = ratios
        _say(
            f"batch {b}: realized_over_ideal min {min(ratios):.3f} mean {np.mean(ratios):.3f}; "
            f"routing overhead max {max(over) * 1e6:.3f} us per input = {max(over) / t_s:.2%} "
            f"of the student's time"
        )
    final = min(result[max(sizes)])
    _say(f"realized_over_ideal_min={final:.4f}")
    return final


if __name__ == "__main__":
    main(sys.argv[1:])
