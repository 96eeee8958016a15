"""Speed of guaranteed (Learn-then-Test) calibration: 1e6 inputs and 1,000 thresholds.

cascadekit computes the loss counts at every threshold from one sort and cumulative sums
(O(n log n + m log n)), and the p-values from the counts. This benchmark times that for the
``binomial``, ``betting`` and ``hb`` tests, against, in the same run:

* a naive vectorised baseline that builds the boolean mask of every threshold over all rows
  (O(n m); still numpy, no Python loop over rows), checked to give the same counts;
* MAPIE's ``BinaryClassificationController`` (fixed-sequence testing, binary risk) on a smaller
  ``--mapie-n`` (it materialises an (m, n) prediction matrix, ~8 GB at 1e6 x 1,000).

Synthetic data: scores ~ N(0, 1); the student is right with probability sigmoid(2 s + 1), the
teacher with probability 0.93.

Run: ``.venv/bin/python benchmarks/calibration_speed.py`` (``--n 100000`` to run smaller).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from cascadekit import calibration as cal


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n)
    cs = rng.uniform(size=n) < 1 / (1 + np.exp(-(2 * s + 1)))
    ct = rng.uniform(size=n) < 0.93
    return s, cs, ct


def _naive_counts(s: np.ndarray, cs: np.ndarray, ct: np.ndarray, grid: np.ndarray) -> Any:
    harm, gain = ~cs & ct, cs & ~ct
    n_harm = np.empty(grid.shape[0])
    n_gain = np.empty(grid.shape[0])
    for j, t in enumerate(grid):  # a loop over thresholds, vectorised over rows
        keep = s >= t
        n_harm[j] = np.count_nonzero(keep & harm)
        n_gain[j] = np.count_nonzero(keep & gain)
    return n_harm, n_gain


def _mapie(
    s: np.ndarray, cs: np.ndarray, ct: np.ndarray, grid: np.ndarray, eps: float, delta: float
) -> float:
    from mapie.risk_control import BinaryClassificationController, BinaryRisk

    harm_risk = BinaryRisk(
        risk_occurrence=lambda y_true, y_pred: (y_pred == 1) & (y_true == 1),
        risk_condition=lambda y_true, y_pred: np.repeat(True, len(y_true)),
        higher_is_better=False,
    )
    teacher_share = BinaryRisk(
        risk_occurrence=lambda y_true, y_pred: y_pred == 0,
        risk_condition=lambda y_true, y_pred: np.repeat(True, len(y_true)),
        higher_is_better=False,
    )
    ctrl = BinaryClassificationController(
        predict_function=lambda x: np.column_stack([-x[:, 0], x[:, 0]]),
        risk=harm_risk,
        target_level=float(eps),
        confidence_level=1 - delta,
        best_predict_param_choice=teacher_share,
        list_predict_params=grid,
        fwer_method="fixed_sequence",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctrl.calibrate(s[:, None], (~cs & ct).astype(int))
    bp = ctrl.best_predict_param
    return float("inf") if bp is None else float(bp)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="calibration inputs")
    ap.add_argument("--thresholds", type=int, default=1000, help="grid size")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    ap.add_argument("--epsilon", type=float, default=0.01)
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--mapie-n", type=int, default=20_000, help="size for the MAPIE run (0: skip)")
    ap.add_argument("--random-state", type=int, default=0)
    args = ap.parse_args(argv)

    s, cs, ct = _data(args.n, args.random_state)
    print(
        f"n = {args.n:,} inputs, {args.thresholds:,} thresholds, epsilon = {args.epsilon}, "
        f"delta = {args.delta}"
    )
    times: dict[str, float] = {}
    for method in cal.GUARANTEE_METHODS:
        if method == "trinomial" and args.n > cal.TRINOMIAL_MAX_N:
            print(
                f"  cascadekit trinomial: skipped (n > {cal.TRINOMIAL_MAX_N:,}: its table of "
                "rejection regions grows like n ** 1.5; method='auto' uses betting here)"
            )
            continue
        sec, r = _best_of(
            lambda m=method: cal.guaranteed_threshold(
                s, cs, ct, args.epsilon, args.delta, method=m, n_thresholds=args.thresholds
            ),
            args.repeats,
        )
        times[method] = sec
        print(
            f"  cascadekit {method:9s}: {sec:7.3f} s  (teacher share {r.teacher_share:.3f}, "
            f"{r.n_tested} of {len(r.grid)} thresholds tested)"
        )

    grid = np.array(
        cal.guaranteed_threshold(
            s, cs, ct, args.epsilon, args.delta, method="binomial", n_thresholds=args.thresholds
        ).grid
    )
    sec_naive, (nh, _) = _best_of(lambda: _naive_counts(s, cs, ct, grid), 1)
    srt = np.sort(s)
    below = np.searchsorted(srt, grid, side="left")
    cum = np.r_[0, np.cumsum((~cs & ct)[np.argsort(s, kind="stable")])]
    assert np.array_equal(nh, cum[-1] - cum[below]), "naive and sorted counts disagree"
    print(
        f"  naive masks (counts only, O(n m)): {sec_naive:7.3f} s  "
        f"-> cascadekit binomial is {sec_naive / times['binomial']:.1f}x faster, "
        f"betting {sec_naive / times['betting']:.1f}x"
    )

    if args.mapie_n > 0:
        try:
            import mapie  # noqa: F401
        except ImportError:
            print("  MAPIE not installed: skipped (pip install mapie)")
            return
        m = min(args.mapie_n, args.n)
        sm, csm, ctm = s[:m], cs[:m], ct[:m]
        ours = cal.guaranteed_threshold(
            sm, csm, ctm, args.epsilon, args.delta, method="binomial", n_thresholds=args.thresholds
        )
        g = np.array(ours.grid)
        sec_m, t_m = _best_of(lambda: _mapie(sm, csm, ctm, g, args.epsilon, args.delta), 1)
        sec_o, _ = _best_of(
            lambda: cal.guaranteed_threshold(
                sm,
                csm,
                ctm,
                args.epsilon,
                args.delta,
                method="binomial",
                n_thresholds=args.thresholds,
            ),
            args.repeats,
        )
        same = (
            "same threshold"
            if t_m == ours.thresholds[0]
            else f"thresholds differ: MAPIE {t_m:.4f}, ours {ours.thresholds[0]:.4f}; MAPIE takes "
            "ceil(n * r_hat) in floating point, which can round an integer count up"
        )
        print(
            f"  at n = {m:,}: MAPIE fixed-sequence {sec_m:.3f} s vs cascadekit binomial "
            f"{sec_o:.4f} s -> {sec_m / sec_o:.0f}x ({same})"
        )


if __name__ == "__main__":
    main()
