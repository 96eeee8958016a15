"""How much teacher share does a guarantee cost? Guaranteed calibration vs the hindsight optimum
and vs MAPIE, on real logits.

For each random split of the pooled calibrate+test rows into a calibration half and a test
half, and each epsilon (the tolerated accuracy drop against the teacher, delta = 0.1):

* **cascadekit** ``guaranteed_threshold`` with ``betting`` (exact drop) and ``binomial``
  (conservative binary loss), and ``guaranteed_threshold_label_free`` (binomial, agreement with
  the teacher, no labels), calibrated on the calibration half;
* **MAPIE** ``BinaryClassificationController`` on the same calibration half and the same
  threshold grid, with fixed-sequence testing, the binary "student wrong, teacher right" risk
  and the smallest valid threshold (fewest inputs to the teacher);
* **no guarantee**: the smallest teacher share whose drop *on the test half* is <= epsilon
  (the hindsight optimum the guarantee is paying to approach).

It prints the mean teacher share on the test half, its ratio to the hindsight optimum, the
mean test drop and how often the test drop exceeded epsilon (that includes test-set noise: the
promise is about the population drop, see tests/statistical/test_guarantee.py). An epsilon that
the calibration half is too small to certify is reported with the sample size it needs.

Data (``--data``): ``digits`` (default; 900 pooled rows, 450 to calibrate), ``zoo`` (the
Fashion-MNIST zoo of :mod:`cascadekit.data.zoo`, trained and cached on first use; pick the pair
with ``--student``/``--teacher``), or a path to an ``.npz`` with ``student`` and ``teacher``
logits and ``labels``. The routing score is chosen on the ``select`` split when there is one.

Run: ``.venv/bin/python benchmarks/guarantee_tightness.py`` (``--splits 20`` to run smaller).
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cascadekit import calibration as cal
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


METHODS = ("betting", "binomial", "label-free", "MAPIE")


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
        f"  {args.splits} random splits: {n_cal:,} calibration / {n - n_cal:,} test rows; "
        f"delta = {args.delta}; grid = {args.n_grid} calibration-score quantiles\n"
    )

    rng = np.random.default_rng(args.seed)
    perms = [rng.permutation(n) for _ in range(args.splits)]
    for eps in epsilons:
        needed = {m: cal.min_calibration_size(eps, args.delta, m) for m in ("betting", "binomial")}
        rows: dict[str, dict[str, list[float]]] = {
            m: {"share": [], "drop": [], "viol": []} for m in (*methods, "no guarantee")
        }
        infeasible: dict[str, int] = {}
        same_as_binomial, sec = 0, dict.fromkeys(methods, 0.0)
        for perm in perms:
            ci, ti = perm[:n_cal], perm[n_cal:]

            def on_test(t: float, ti: np.ndarray = ti) -> tuple[float, float]:
                keep = s[ti] >= t
                return float(np.mean(~keep)), float(
                    np.mean(ct[ti]) - np.mean(np.where(keep, cs[ti], ct[ti]))
                )

            opt = optimal_share(s[ti], cs[ti], ct[ti], eps)
            rows["no guarantee"]["share"].append(opt)
            grid = cal.quantile_grid(s[ci], args.n_grid)
            th: dict[str, float] = {}
            for m in methods:
                t0 = time.perf_counter()
                try:
                    if m in ("betting", "binomial"):
                        r = cal.guaranteed_threshold(
                            s[ci], cs[ci], ct[ci], eps, args.delta, method=m, grid=grid
                        )
                        th[m] = r.thresholds[0]
                    elif m == "label-free":
                        th[m] = cal.guaranteed_threshold_label_free(
                            s[ci], ps[ci], pt[ci], eps, args.delta, grid=grid
                        ).thresholds[0]
                    else:
                        th[m] = mapie_threshold(s[ci], cs[ci], ct[ci], grid, eps, args.delta)
                except InsufficientDataError as e:
                    infeasible[m] = int(e.needed or 0)
                    continue
                sec[m] += time.perf_counter() - t0
                share, drop = on_test(th[m])
                rows[m]["share"].append(share)
                rows[m]["drop"].append(drop)
                rows[m]["viol"].append(float(drop > eps))
            if "MAPIE" in th and "binomial" in th:
                same_as_binomial += th["MAPIE"] == th["binomial"]
        print(
            f"epsilon = {eps} (needs >= {needed['binomial']:,} calibration rows for binomial, "
            f">= {needed['betting']:,} for betting):"
        )
        opt_mean = float(np.mean(rows["no guarantee"]["share"]))
        print(
            f"  {'method':<14}{'teacher share':>14}{'x optimum':>11}{'test drop':>11}"
            f"{'drop > eps':>12}{'ms/split':>10}"
        )
        for m in (*methods, "no guarantee"):
            if m in infeasible:
                print(f"  {m:<14}  infeasible: {n_cal:,} calibration rows, needs {infeasible[m]:,}")
                continue
            sh = float(np.mean(rows[m]["share"]))
            if m == "no guarantee":
                print(f"  {m:<14}{sh:>14.3f}{1.0:>11.2f}{'(= eps on test)':>23}")
                continue
            ms = 1e3 * sec[m] / max(len(rows[m]["share"]), 1)
            ratio = f"{sh / opt_mean:.2f}" if opt_mean > 0 else "n/a"
            print(
                f"  {m:<14}{sh:>14.3f}{ratio:>11}{np.mean(rows[m]['drop']):>11.4f}"
                f"{np.mean(rows[m]['viol']):>12.2f}{ms:>10.1f}"
            )
        if "MAPIE" in methods and rows["MAPIE"]["share"] and rows["betting"]["share"]:
            b, mp = np.mean(rows["betting"]["share"]), np.mean(rows["MAPIE"]["share"])
            print(
                f"  betting / MAPIE teacher share: {b / mp:.3f}; MAPIE picked the same threshold "
                f"as cascadekit binomial in {same_as_binomial}/{len(perms)} splits"
            )
        print()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="digits", help="digits | zoo | path/to/pair.npz")
    ap.add_argument("--student", default="student", help="zoo model used as the student")
    ap.add_argument("--teacher", default="teacher", help="zoo model used as the teacher")
    ap.add_argument("--reduced", action="store_true", help="the reduced (CI) zoo")
    ap.add_argument("--cache-dir", default=None, help="zoo cache folder")
    ap.add_argument("--epsilons", default="0.005,0.01,0.02,0.03,0.05")
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--splits", type=int, default=100)
    ap.add_argument("--cal-size", type=int, default=0, help="calibration rows (0: half)")
    ap.add_argument("--n-grid", type=int, default=100)
    ap.add_argument("--score", default=None, help="routing score (default: chosen on select)")
    ap.add_argument("--seed", type=int, default=0)
    args: Any = ap.parse_args(argv)
    run(args)


if __name__ == "__main__":
    main()
