"""The tweet-sentiment model pool: accuracy, FLOPs and latency of three pretrained encoders.

Builds (or loads from the cache) ``cascadekit.data.text.load_text_pool`` and prints one row per
model: test accuracy (with a 95 % Wilson interval), FLOPs per tweet, latency per tweet at batch 1
and batch 64, each cost also as a ratio to the cheapest model measured in the same run. If
``cascadekit.curves.pool_frontier`` exists, it also prints the Pareto front of single models vs
2- and 3-model cascades (the ICLR 2023 analysis).

Run::

    .venv/bin/python benchmarks/text_pool.py                 # 4,000 tweets, ~5 min first time
    .venv/bin/python benchmarks/text_pool.py --reduced       # 300 tweets, the two MiniLMs
    .venv/bin/python benchmarks/text_pool.py --n-tweets 2000 --models minilm-l3 mpnet
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter

from cascadekit.data.text import MODEL_NAMES, SPLITS, TextPool, load_text_pool


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return mid - half, mid + half


def print_table(pool: TextPool, split: str = "test") -> None:
    n = pool.labels[split].size
    base = pool.names[0]
    print(f"\nSingle models on the {split} split ({n} tweets):")
    head = (
        f"{'model':<10} {'params':>8} {'tokens':>6} {'acc':>6} {'95% CI':>13} "
        f"{'GFLOPs':>7} {'xFLOPs':>7} {'ms@1':>7} {'x@1':>6} {'ms@64':>7} {'x@64':>6}"
    )
    print(head)
    print("-" * len(head))
    for name in pool.names:
        acc = pool.accuracy(split, name)
        lo, hi = _wilson(round(acc * n), n)
        lat1, lat64 = pool.latency[name][1], pool.latency[name][64]
        print(
            f"{name:<10} {pool.params.get(name, 0) / 1e6:>7.1f}M {pool.mean_tokens[name]:>6.1f} "
            f"{acc:>6.3f} [{lo:.3f},{hi:.3f}] {pool.flops[name] / 1e9:>7.3f} "
            f"{pool.flops[name] / pool.flops[base]:>6.2f}x {lat1 * 1e3:>7.2f} "
            f"{lat1 / pool.latency[base][1]:>5.2f}x {lat64 * 1e3:>7.2f} "
            f"{lat64 / pool.latency[base][64]:>5.2f}x"
        )
    others = ", ".join(
        f"{s} " + "/".join(f"{pool.accuracy(s, m):.3f}" for m in pool.names)
        for s in SPLITS
        if s != split
    )
    print(f"accuracy on other splits ({'/'.join(pool.names)}): {others}")
    print(f"FLOPs counted by: {pool.flops_method}; latency = seconds per tweet incl. tokenisation")


def _cost_of(pool: TextPool, name: str, cost: str) -> float:
    if cost == "flops":
        return pool.flops[name]
    return pool.latency[name][1 if cost == "latency1" else 64]


def print_frontier(pool: TextPool, split: str = "test", cost: str = "flops") -> None:
    """Single models vs the best 2- and 3-model cascades, if ``curves.pool_frontier`` exists.

    Thresholds are swept on ``split`` itself: the front describes what the pool can do (as in
    the ICLR 2023 analysis); it is not an operating point chosen on held-out data.
    """
    import numpy as np

    from cascadekit import curves

    frontier = getattr(curves, "pool_frontier", None)
    if frontier is None or len(pool.names) < 2:
        print("\n(cascadekit.curves.pool_frontier not available or < 2 models: no cascade front)")
        return
    costs = [_cost_of(pool, n, cost) for n in pool.names]
    pf = frontier(
        [pool.logits[split][n] for n in pool.names], pool.labels[split], costs, list(pool.names)
    )

    def cheapest(depth: int, target: float) -> tuple[float, tuple[str, ...]]:
        best: tuple[float, tuple[str, ...]] = (math.inf, ())
        for key, curve in pf.curves.items():
            if len(key) != depth:
                continue
            absolute = np.asarray(curve.relative_cost) * float(np.asarray(curve.costs)[-1])
            ok = np.asarray(curve.accuracy) >= target - 1e-12
            if ok.any():
                c = float(absolute[ok].min())
                if c < best[0]:
                    best = (c, key)
        return best

    unit = {"flops": "GFLOPs", "latency1": "ms@1", "latency64": "ms@64"}[cost]
    scale = 1e-9 if cost == "flops" else 1e3
    print(f"\nCascades vs single models on {split} (cost = {unit}; score max-softmax, T=1;")
    print("thresholds swept on the same split, so this is the pool's front, not a held-out pick):")
    print(
        f"{'reach acc of':<13} {'acc':>6} {'single':>9} {'best 2-model':>22} {'best 3-model':>22}"
    )
    for name, acc, c_single in zip(pool.names, pf.accuracies, pf.costs, strict=True):
        cells = []
        for depth in (2, 3):
            c, key = cheapest(depth, float(acc))
            if math.isinf(c):
                cells.append(f"{'-':>22}")
            else:
                tag = "+".join(k.replace("minilm-", "") for k in key)
                cells.append(f"{c * scale:>8.3f} ({c_single / c:4.2f}x) {tag:<7}")
        print(f"{name:<13} {acc:>6.3f} {c_single * scale:>9.3f} {cells[0]} {cells[1]}")
    sv = pf.saving
    depths = Counter(len(p.models) for p in pf.cascade_front)
    print(
        f"saving of the cascade front over the single-model front at equal accuracy: mean "
        f"{sv.mean:.2f}x, max {sv.max:.2f}x; per model "
        + ", ".join(f"{k} {v:.2f}x" for k, v in sv.per_model.items())
    )
    print(f"points on the combined front by number of models: {dict(sorted(depths.items()))}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-tweets", type=int, default=4000, help="subset size (default 4000)")
    ap.add_argument("--reduced", action="store_true", help="CI size: 300 tweets, two MiniLMs")
    ap.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=None)
    ap.add_argument("--cache-dir", default=None, help="default $CASCADEKIT_CACHE_DIR or ~/.cache")
    ap.add_argument("--split", default="test", choices=SPLITS)
    ap.add_argument("--no-frontier", action="store_true")
    ap.add_argument(
        "--cost",
        nargs="+",
        choices=("flops", "latency1", "latency64"),
        default=["flops", "latency64"],
        help="cost axis (or axes) of the cascade front",
    )
    args = ap.parse_args(argv)

    last: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - last.get(stage, 0.0) > 15:
            last[stage] = now
            print(f"  {stage}: {done}/{total}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    pool = load_text_pool(
        n_tweets=args.n_tweets,
        cache_dir=args.cache_dir,
        progress=progress,
        reduced=args.reduced,
        models=args.models,
    )
    wall = time.perf_counter() - t0
    how = "loaded from cache" if pool.from_cache else "computed"
    print(f"pool {how} in {wall:.1f} s: {pool.cache_path}")
    print_table(pool, args.split)
    if not args.no_frontier:
        for cost in args.cost:
            print_frontier(pool, args.split, cost)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
