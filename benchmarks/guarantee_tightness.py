"""How much teacher share does a guarantee cost? Guaranteed calibration vs the optimum and vs
MAPIE, on real logits, all methods on the same splits.

For each random split of the pooled calibrate+test rows into a calibration part and a test
part (halves by default; ``--cal-size``/``--test-size`` to fix them), and each epsilon (the
tolerated accuracy drop against the teacher, delta = 0.1 by default):

* **cascadekit** ``guaranteed_threshold`` with ``trinomial`` (exact unconditional test of the
  exact drop, the default), ``betting`` (exact drop, betting p-value) and ``binomial``
  (conservative binary loss "student wrong, teacher right"), and
  ``guaranteed_threshold_label_free`` (binomial on disagreement with the teacher, no labels);
* **MAPIE** ``BinaryClassificationController`` on the same calibration rows and the same
  threshold grid, with fixed-sequence testing, the binary "student wrong, teacher right" risk
  and the smallest valid threshold (fewest inputs to the teacher);
* **optimum (test)**: the smallest teacher share whose drop *on the test part* is <= epsilon
  (hindsight, no guarantee); **optimum (pool)**: the same on all pooled rows, the best any
  threshold can do on this population.

The threshold grid (100 score quantiles) is computed on the ``select`` split when there is one
(``--grid select``, the default), so it is fixed without the calibration or test rows, as
Learn-then-Test assumes; ``--grid calibration`` uses the calibration rows' scores (what
``guaranteed_threshold`` does when no grid is passed).

It prints the mean teacher share on the test part, its ratio to the test optimum, the mean
test drop, how often the test drop exceeded epsilon ("viol test": includes the test part's own
sampling noise), how often the drop on all pooled rows did ("viol pool": the pool stands in for
the population, but the calibration rows are part of it) and, in a separate draw per split,
"viol pop": the calibration rows are drawn i.i.d. (with replacement) from the pool, which then
*is* the population, and the drop on all pooled rows is the exact population drop, the quantity
the guarantee is about (violation rate <= delta up to the simulation error). An epsilon that
the calibration part is too small to certify is reported with the sample size it needs. The
last line is a summary.

Data (``--data``): ``digits`` (default; 900 pooled rows, 450 to calibrate), ``zoo`` (the
Fashion-MNIST zoo of :mod:`cascadekit.data.zoo`, trained and cached on first use; pick the pair
with ``--student``/``--teacher``), ``text`` (the tweet pool of :mod:`cascadekit.data.text`,
built and cached on first use; ``--student minilm-l3 --teacher minilm-l6``), or a path to an
``.npz`` with ``student`` and ``teacher`` logits and ``labels``. The routing score is chosen on
the ``select`` split when there is one.

Run (the figures in docs/guarantee.md)::

    python benchmarks/guarantee_tightness.py --data zoo --epsilons 0.005 --splits 200
    python benchmarks/guarantee_tightness.py --data zoo --epsilons 0.005 --splits 200 \
        --cal-size 5000 --test-size 5000
    python benchmarks/guarantee_tightness.py --data text --student minilm-l3 \
        --teacher minilm-l6 --epsilons 0.02 --splits 200
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cascadekit import calibration as cal
from cascadekit import curves
from cascadekit import scores as sc
from cascadekit.errors import InsufficientDataError


@dataclass
class Pair:
    name: str
    pool: tuple[np.ndarray, np.ndarray, np.ndarray]  # student logits, teacher logits, labels
    select: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)


def load_pair(
    data: str, student: str, teacher: str, reduced: bool, cache_dir: str | None = None
) -> Pair:
    if data == "digits":
        from cascadekit.data.digits import load_digits_pair

        d = load_digits_pair()
        logits, labels = d.logits, d.labels
        models = ("student", "teacher")
        name = "digits (logistic regression on 4x4 pooled pixels -> MLP)"
    elif data == "text":
        from cascadekit.data.text import load_text_pool

        tp = load_text_pool(models=[student, teacher], cache_dir=cache_dir, reduced=reduced)
        logits, labels = tp.logits, tp.labels
        models = (student, teacher)
        name = f"tweets{' (reduced)' if reduced else ''}: {student} -> {teacher}"
    elif data == "zoo":
        try:
            from cascadekit.data.zoo import load_fashion_mnist_zoo
        except ImportError as exc:  # pragma: no cover - depends on the checkout
            raise SystemExit(f"--data zoo needs cascadekit.data.zoo: {exc}") from exc
        t0 = time.perf_counter()
        z = load_fashion_mnist_zoo(reduced=reduced, cache_dir=cache_dir)
        logits, labels = z.logits, z.labels
        models = (student, teacher)
        name = f"Fashion-MNIST zoo{' (reduced)' if reduced else ''}: {student} -> {teacher}"
        if z.trained:
            print(f"(trained the zoo in {time.perf_counter() - t0:.0f} s; cached for next time)")
    else:
        f = np.load(data)
        return Pair(name=data, pool=(f["student"], f["teacher"], f["labels"].astype(np.int64)))

    def part(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.asarray(logits[split][models[0]], np.float64),
            np.asarray(logits[split][models[1]], np.float64),
            np.asarray(labels[split], np.int64),
        )

    cal_p, test_p = part("calibrate"), part("test")
    pool = tuple(np.concatenate([a, b]) for a, b in zip(cal_p, test_p, strict=True))
    return Pair(name=name, pool=pool, select=part("select"))  # type: ignore[arg-type]


def optimal_share(s: np.ndarray, cs: np.ndarray, ct: np.ndarray, eps: float) -> float:
    """Smallest teacher share whose drop on these rows is <= eps (exact, tie blocks together)."""
    n = s.shape[0]
    order = np.argsort(-s)
    ss = s[order]
    ends = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])
    drop = np.r_[0, np.cumsum((ct.astype(int) - cs.astype(int))[order])[ends]] / n
    kept = np.r_[0, ends + 1]
    ok = np.flatnonzero(drop <= eps + 1e-12)
    return float(1 - kept[ok].max() / n)


def choose_score(pair: Pair, epsilons: list[float], given: str | None) -> str:
    if given is not None:
        return given
    if pair.select is None:
        pair.notes.append("no select split: score fixed to margin (pass --score to change)")
        return "margin"
    s_log, t_log, y = pair.select
    cs, ct = s_log.argmax(1) == y, t_log.argmax(1) == y
    best = min(
        sorted(sc.available_scores()),
        key=lambda nm: np.mean(
            [optimal_share(sc.compute_score(nm, s_log), cs, ct, e) for e in epsilons]
        ),
    )
    pair.notes.append(f"score chosen on the select split ({y.shape[0]} rows): {best}")
    return best


def safest_first(scores: np.ndarray, n_thresholds: int) -> np.ndarray:
    """``curves.threshold_grid`` in the order the guarantee tests it: largest first, no +inf."""
    out: np.ndarray = curves.threshold_grid(scores, n_thresholds)[-2::-1]
    return out


def mapie_threshold(
    s: np.ndarray, cs: np.ndarray, ct: np.ndarray, grid: np.ndarray, eps: float, delta: float
) -> float:
    """MAPIE's fixed-sequence LTT for the binary risk "kept, student wrong, teacher right".

    The risk is MAPIE's ``BinaryRisk`` with ``y_true`` = harm indicator and ``y_pred`` = kept
    on the student (``score >= threshold``); among the valid thresholds it picks the one with
    the fewest inputs sent to the teacher. Returns ``inf`` when none is valid.
    """
    from mapie.risk_control import BinaryClassificationController, BinaryRisk

    harm = BinaryRisk(
        risk_occurrence=lambda y_true, y_pred: (y_pred == 1) & (y_true == 1),
        risk_condition=lambda y_true, y_pred: np.repeat(True, len(y_true)),
        higher_is_better=False,
    )
    to_teacher = BinaryRisk(
        risk_occurrence=lambda y_true, y_pred: y_pred == 0,
        risk_condition=lambda y_true, y_pred: np.repeat(True, len(y_true)),
        higher_is_better=False,
    )
    ctrl = BinaryClassificationController(
        predict_function=lambda x: np.column_stack([-x[:, 0], x[:, 0]]),
        risk=harm,
        target_level=float(eps),
        confidence_level=1.0 - delta,
        best_predict_param_choice=to_teacher,
        list_predict_params=np.asarray(grid, dtype=np.float64),  # safest (largest) first
        fwer_method="fixed_sequence",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctrl.calibrate(s[:, None], (~cs & ct).astype(int))
    bp = ctrl.best_predict_param
    return float("inf") if bp is None else float(bp)  # type: ignore[arg-type]


METHODS = ("trinomial", "betting", "binomial", "label-free", "MAPIE")
OPTIMA = ("optimum (test)", "optimum (pool)")


def _threshold_at_share(s: np.ndarray, cs: np.ndarray, ct: np.ndarray, eps: float) -> float:
    """The threshold of :func:`optimal_share` on these rows (keep scores >= it)."""
    n = s.shape[0]
    order = np.argsort(-s)
    ss = s[order]
    ends = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])
    drop = np.r_[0, np.cumsum((ct.astype(int) - cs.astype(int))[order])[ends]] / n
    ok = np.flatnonzero(drop <= eps + 1e-12)
    j = int(ok.max())
    return float("inf") if j == 0 else float(ss[ends[j - 1]])


def run(args: argparse.Namespace) -> None:
    pair = load_pair(args.data, args.student, args.teacher, args.reduced, args.cache_dir)
    epsilons = [float(e) for e in args.epsilons.split(",")]
    score = choose_score(pair, epsilons, args.score)
    s_log, t_log, y = pair.pool
    s = sc.compute_score(score, s_log)
    ps, pt = s_log.argmax(1), t_log.argmax(1)
    cs, ct = ps == y, pt == y
    n = y.shape[0]
    n_cal = args.cal_size or n // 2
    n_test = args.test_size or n - n_cal
    if n_cal + n_test > n:
        raise SystemExit(f"--cal-size + --test-size = {n_cal + n_test:,} > {n:,} pooled rows")
    fixed_grid = None
    if args.grid == "select" and pair.select is not None:
        fixed_grid = safest_first(sc.compute_score(score, pair.select[0]), args.n_thresholds)
        grid_note = f"{args.n_thresholds} quantiles of the select split's scores (fixed in advance)"
    else:
        grid_note = f"{args.n_thresholds} quantiles of the calibration rows' scores"
    try:
        import mapie  # noqa: F401

        methods = METHODS
    except ImportError:
        methods = METHODS[:-1]
        pair.notes.append("MAPIE not installed: skipped")

    print(f"data: {pair.name}")
    print(
        f"  pooled rows {n:,}: student acc {cs.mean():.4f}, teacher acc {ct.mean():.4f}, "
        f"student-only-right {np.mean(cs & ~ct):.4f}, teacher-only-right {np.mean(~cs & ct):.4f}"
    )
    for note in pair.notes:
        print(f"  {note}")
    print(
        f"  {args.splits} random splits: {n_cal:,} calibration / {n_test:,} test rows; "
        f"delta = {args.delta}; grid = {grid_note}\n"
    )
    summary: list[str] = []

    rng = np.random.default_rng(args.random_state)
    boot_rng = np.random.default_rng(args.random_state + 1)
    perms = [rng.permutation(n) for _ in range(args.splits)]
    for eps in epsilons:
        needed = {
            m: cal.min_calibration_size(eps, args.delta, m)
            for m in ("trinomial", "betting", "binomial")
        }
        rows: dict[str, dict[str, list[float]]] = {
            m: {"share": [], "drop": [], "viol": [], "viol_pool": [], "viol_pop": []}
            for m in (*methods, *OPTIMA)
        }
        pool_opt = optimal_share(s, cs, ct, eps)
        t_pool = _threshold_at_share(s, cs, ct, eps)
        infeasible: dict[str, int] = {}
        same_as_binomial, sec = 0, dict.fromkeys(methods, 0.0)
        for perm in perms:
            ci, ti = perm[:n_cal], perm[n_cal : n_cal + n_test]

            def on_test(t: float, ti: np.ndarray = ti) -> tuple[float, float]:
                keep = s[ti] >= t
                return float(np.mean(~keep)), float(
                    np.mean(ct[ti]) - np.mean(np.where(keep, cs[ti], ct[ti]))
                )

            def pooled_drop(t: float) -> float:
                return float(np.mean(np.where(s >= t, ct.astype(int) - cs.astype(int), 0)))

            opt = optimal_share(s[ti], cs[ti], ct[ti], eps)
            rows["optimum (test)"]["share"].append(opt)
            share_p, drop_p = on_test(t_pool)
            rows["optimum (pool)"]["share"].append(share_p)
            rows["optimum (pool)"]["drop"].append(drop_p)
            rows["optimum (pool)"]["viol"].append(float(drop_p > eps))
            rows["optimum (pool)"]["viol_pool"].append(0.0)
            grid = safest_first(s[ci], args.n_thresholds) if fixed_grid is None else fixed_grid
            th: dict[str, float] = {}

            def calibrate(
                m: str, idx: np.ndarray, grid: np.ndarray = grid, eps: float = eps
            ) -> float:
                if m in ("trinomial", "betting", "binomial"):
                    r = cal.guaranteed_threshold(
                        s[idx], cs[idx], ct[idx], eps, args.delta, method=m, grid=grid
                    )
                    return r.thresholds[0]
                if m == "label-free":
                    return float(
                        cal.guaranteed_threshold_label_free(
                            s[idx], ps[idx], pt[idx], eps, args.delta, grid=grid
                        ).thresholds[0]
                    )
                return mapie_threshold(s[idx], cs[idx], ct[idx], grid, eps, args.delta)

            # the population check: n_cal rows drawn i.i.d. from the pool, which then *is* the
            # population, so the drop on all pooled rows is the exact population drop
            boot = boot_rng.integers(0, n, n_cal) if args.population else None
            for m in methods:
                t0 = time.perf_counter()
                try:
                    th[m] = calibrate(m, ci)
                except InsufficientDataError as e:
                    infeasible[m] = int(e.needed or 0)
                    continue
                sec[m] += time.perf_counter() - t0
                share, drop = on_test(th[m])
                rows[m]["share"].append(share)
                rows[m]["drop"].append(drop)
                rows[m]["viol"].append(float(drop > eps))
                rows[m]["viol_pool"].append(float(pooled_drop(th[m]) > eps))
                if boot is not None:
                    rows[m]["viol_pop"].append(float(pooled_drop(calibrate(m, boot)) > eps))
            if "MAPIE" in th and "binomial" in th:
                same_as_binomial += th["MAPIE"] == th["binomial"]
        print(
            f"epsilon = {eps} (needs >= {needed['binomial']:,} calibration rows for binomial, "
            f">= {needed['trinomial']:,} for trinomial, >= {needed['betting']:,} for betting); "
            f"optimum on all {n:,} pooled rows: teacher share {pool_opt:.3f}"
        )
        opt_mean = float(np.mean(rows["optimum (test)"]["share"]))
        k = len(perms)
        se = float(np.sqrt(args.delta * (1 - args.delta) / k))
        print(
            f"  {'method':<16}{'teacher share':>14}{'x opt test':>11}{'test drop':>11}"
            f"{'viol test':>11}{'viol pool':>11}{'viol pop':>10}{'ms/split':>10}"
        )
        for m in (*methods, *OPTIMA):
            if m in infeasible:
                print(f"  {m:<16}  infeasible: {n_cal:,} calibration rows, needs {infeasible[m]:,}")
                continue
            sh = float(np.mean(rows[m]["share"]))
            if m == "optimum (test)":
                print(f"  {m:<16}{sh:>14.3f}{1.0:>11.2f}{'(= eps on test)':>22}")
                continue
            ms = 1e3 * sec.get(m, 0.0) / max(len(rows[m]["share"]), 1)
            vp = rows[m]["viol_pop"]
            pop = f"{np.mean(vp):.3f}" if vp else "-"
            ratio = f"{sh / opt_mean:.2f}" if opt_mean > 0 else "n/a"
            print(
                f"  {m:<16}{sh:>14.3f}{ratio:>11}{np.mean(rows[m]['drop']):>11.4f}"
                f"{np.mean(rows[m]['viol']):>11.3f}{np.mean(rows[m]['viol_pool']):>11.3f}"
                f"{pop:>10}{ms:>10.1f}"
            )
        print(
            f"  violation rates over {k} splits: binomial standard error at delta = {se:.3f} "
            f"(delta + 2 se = {args.delta + 2 * se:.3f})"
        )
        if "MAPIE" in methods and rows["MAPIE"]["share"] and rows["trinomial"]["share"]:
            tri, mp = np.mean(rows["trinomial"]["share"]), np.mean(rows["MAPIE"]["share"])
            print(
                f"  trinomial / MAPIE teacher share: {tri / mp:.3f}; MAPIE picked the same "
                f"threshold as cascadekit binomial in {same_as_binomial}/{k} splits"
            )
            summary.append(
                f"eps={eps}: trinomial {tri:.3f} vs MAPIE {mp:.3f} ({1 - tri / mp:+.1%} lower), "
                f"viol test {np.mean(rows['trinomial']['viol']):.3f} "
                f"pool {np.mean(rows['trinomial']['viol_pool']):.3f}"
                + (
                    f" pop {np.mean(rows['trinomial']['viol_pop']):.3f}"
                    if rows["trinomial"]["viol_pop"]
                    else ""
                )
                + f", optimum pool {pool_opt:.3f}"
            )
        print()
    print(f"SUMMARY {pair.name}, {len(perms)} splits: " + "; ".join(summary))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="digits", help="digits | zoo | text | path/to/pair.npz")
    ap.add_argument("--student", default="student", help="zoo model used as the student")
    ap.add_argument("--teacher", default="teacher", help="zoo model used as the teacher")
    ap.add_argument("--reduced", action="store_true", help="the reduced (CI) zoo")
    ap.add_argument("--cache-dir", default=None, help="zoo cache folder")
    ap.add_argument("--epsilons", default="0.005,0.01,0.02,0.03,0.05")
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--splits", type=int, default=100)
    ap.add_argument("--cal-size", type=int, default=0, help="calibration rows (0: half)")
    ap.add_argument("--test-size", type=int, default=0, help="test rows (0: the rest)")
    ap.add_argument(
        "--grid",
        choices=("select", "calibration"),
        default="select",
        help="threshold grid: quantiles of the select split's or of the calibration scores",
    )
    ap.add_argument("--n-thresholds", type=int, default=100)
    ap.add_argument("--score", default=None, help="routing score (default: chosen on select)")
    ap.add_argument("--random-state", type=int, default=0)
    ap.add_argument(
        "--no-population",
        dest="population",
        action="store_false",
        help="skip the population check (i.i.d. calibration draws from the pool)",
    )
    args: Any = ap.parse_args(argv)
    run(args)


if __name__ == "__main__":
    main()
