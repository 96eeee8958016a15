"""EBJR Fig. 6 on Fashion-MNIST: a specialized student (top-C classes + "other") against the
general 10-class student, across C and across the share of inputs from the top-C classes.

Both students are the zoo's MLP architecture (784-128-out) trained on the same 50,000 training
images; they differ only in their label space (the specialized one maps every class outside the
top C to "other"). The teacher is the zoo's CNN. For each class set (the "popular" classes: the
first C of a seeded permutation), each C and each share, a skewed stream is drawn from the
select+calibrate pool (thresholds) and from the 10,000 test images (figures). Reported, on the
test stream:

* ``speed-up@T``: teacher FLOPs / cascade FLOPs at the cheapest threshold whose accuracy reaches
  the teacher's (exact curve on the test stream: an oracle-chosen threshold, like the paper);
* ``calib``: the threshold chosen on the calibration stream (cheapest reaching the teacher's
  calibration accuracy), applied to the test stream: its accuracy minus the teacher's, and its
  FLOPs speed-up;
* ``acc@0.3``: accuracy at a budget of 30% of the teacher's FLOPs.

Routers: EBJR energy (the general student's full energy; the specialized student's energy over
its C real classes plus the "other" gate). Ratios are measured in one run.

Run:  nice -n 10 .venv/bin/python benchmarks/specialized_student.py            (full, ~3 min
      when the zoo is cached)
      nice -n 10 .venv/bin/python benchmarks/specialized_student.py --reduced  (small splits)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from cascadekit.curves import accuracy_at_budget, cascade_curve, speedup_at_teacher_accuracy
from cascadekit.data import load_fashion_mnist_zoo
from cascadekit.data.specialized import load_specialized_student
from cascadekit.errors import InfeasibleTargetError
from cascadekit.scores import energy
from cascadekit.specialized import (
    Specialization,
    popular_stream,
    specialized_curve,
    specialized_scores,
)


def _calibrated(curve_cal: Any, acc_target: float) -> float:
    """Threshold of the cheapest calibration point whose accuracy reaches ``acc_target``."""
    ok = np.flatnonzero(curve_cal.accuracy >= acc_target - 1e-12)
    i = int(ok[np.argmin(curve_cal.relative_cost[ok])])
    return float(curve_cal.thresholds[i, 0])


def _point_general(s: np.ndarray, cs: np.ndarray, ct: np.ndarray, costs: list[float], t: float):
    keep = s >= t
    acc = float(np.mean(np.where(keep, cs, ct)))
    rel = (costs[0] + np.mean(~keep) * costs[1]) / costs[1]
    return acc, float(rel)


def _point_special(
    s: np.ndarray, forced: np.ndarray, cs: np.ndarray, ct: np.ndarray, costs: list[float], t: float
):
    keep = (s >= t) & ~forced
    acc = float(np.mean(np.where(keep, cs, ct)))
    rel = (costs[0] + np.mean(~keep) * costs[1]) / costs[1]
    return acc, float(rel)


def _safe_speedup(curve: Any) -> float:
    try:
        return speedup_at_teacher_accuracy(curve)
    except InfeasibleTargetError:
        return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reduced", action="store_true", help="small splits (CI size)")
    ap.add_argument("--C", type=int, nargs="+", default=[2, 3, 5], help="top-C sizes")
    ap.add_argument(
        "--shares", type=float, nargs="+", default=[0.5, 0.6, 0.75, 0.9], help="top-C shares"
    )
    ap.add_argument("--class-sets", type=int, default=3, help="seeded popular-class sets")
    ap.add_argument("--budget", type=float, default=0.3, help="relative FLOPs budget")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    zoo = load_fashion_mnist_zoo(reduced=args.reduced, cache_dir=args.cache_dir)
    sizes = dict(zoo.recipe.sizes)
    common: dict[str, Any] = dict(
        sizes=sizes, random_state=zoo.recipe.random_state, cache_dir=args.cache_dir
    )
    general = load_specialized_student(None, **common)
    for s in ("select", "calibrate", "test"):
        assert np.array_equal(general.indices[s], zoo.indices[s]), "splits differ from the zoo's"
    f_t = float(zoo.flops["teacher"])

    def pool(split_names: tuple[str, ...], z: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([z[s] for s in split_names])

    cal_splits, test_splits = ("select", "calibrate"), ("test",)
    y_cal = pool(cal_splits, zoo.labels)
    y_test = pool(test_splits, zoo.labels)
    zt_cal = np.concatenate([zoo.logits[s]["teacher"] for s in cal_splits])
    zt_test = zoo.logits["test"]["teacher"]
    zg_cal = pool(cal_splits, general.logits)
    zg_test = general.logits["test"]
    print(
        f"teacher CNN: {f_t:,.0f} FLOPs, test acc {zoo.accuracy('test', 'teacher'):.4f}; general "
        f"student MLP: {general.flops:,.0f} FLOPs ({general.flops / f_t:.3f} of the teacher), "
        f"test acc {general.accuracy('test'):.4f}; train {sizes['train']:,} images"
    )
    header = (
        f"{'set':>3} {'C':>2} {'share':>5} {'n_test':>6} {'T acc':>6} | "
        f"{'gen spd@T':>9} {'spec spd@T':>10} {'ratio':>5} | "
        f"{'gen calib dAcc/spd':>18} {'spec calib dAcc/spd':>19} | "
        f"{'gen acc@B':>9} {'spec acc@B':>10} {'other%':>6}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for cs in range(args.class_sets):
        order = np.random.default_rng(1000 + cs).permutation(10)
        for c in args.C:
            classes = tuple(int(v) for v in order[:c])
            spec = Specialization(classes, 10)
            student = load_specialized_student(spec, **common)
            zs_cal, zs_test = pool(cal_splits, student.logits), student.logits["test"]
            costs_g = [float(general.flops), f_t]
            costs_s = [float(student.flops), f_t]
            for share in args.shares:
                i_cal = popular_stream(y_cal, spec, share, random_state=cs)
                i_te = popular_stream(y_test, spec, share, random_state=cs + 1)
                yc, yt = y_cal[i_cal], y_test[i_te]
                ct_cal = np.argmax(zt_cal[i_cal], 1) == yc
                ct_te = np.argmax(zt_test[i_te], 1) == yt
                # general student
                sg_c, sg_t = energy(zg_cal[i_cal]), energy(zg_test[i_te])
                cg_c = np.argmax(zg_cal[i_cal], 1) == yc
                cg_t = np.argmax(zg_test[i_te], 1) == yt
                gen_cal = cascade_curve(sg_c, cg_c, ct_cal, costs_g)
                gen_te = cascade_curve(sg_t, cg_t, ct_te, costs_g)
                t_g = _calibrated(gen_cal, float(ct_cal.mean()))
                g_acc, g_rel = _point_general(sg_t, cg_t, ct_te, costs_g, t_g)
                # specialized student
                _ss_c, _f_c, _p_c = specialized_scores(zs_cal[i_cal], spec)
                ss_t, f_te, p_t = specialized_scores(zs_test[i_te], spec)
                spec_cal = specialized_curve(zs_cal[i_cal], zt_cal[i_cal], yc, spec, costs_s)
                spec_te = specialized_curve(zs_test[i_te], zt_test[i_te], yt, spec, costs_s)
                t_s = _calibrated(spec_cal, float(ct_cal.mean()))
                s_acc, s_rel = _point_special(ss_t, f_te, p_t == yt, ct_te, costs_s, t_s)
                t_acc = float(ct_te.mean())
                row = {
                    "set": cs,
                    "C": c,
                    "share": share,
                    "n": len(i_te),
                    "t_acc": t_acc,
                    "gen_spd": _safe_speedup(gen_te),
                    "spec_spd": _safe_speedup(spec_te),
                    "gen_cal": (g_acc - t_acc, 1 / g_rel),
                    "spec_cal": (s_acc - t_acc, 1 / s_rel),
                    "gen_b": accuracy_at_budget(gen_te, args.budget),
                    "spec_b": accuracy_at_budget(spec_te, args.budget)
                    if spec_te.relative_cost.min() <= args.budget
                    else float("nan"),
                    "other": float(f_te.mean()),
                }
                rows.append(row)
                print(
                    f"{cs:>3} {c:>2} {share:>5.2f} {row['n']:>6} {t_acc:>6.4f} | "
                    f"{row['gen_spd']:>9.2f} {row['spec_spd']:>10.2f} "
                    f"{row['spec_spd'] / row['gen_spd']:>5.2f} | "
                    f"{row['gen_cal'][0]:>+9.4f}/{row['gen_cal'][1]:>4.2f}x    "
                    f"{row['spec_cal'][0]:>+9.4f}/{row['spec_cal'][1]:>4.2f}x     | "
                    f"{row['gen_b']:>9.4f} {row['spec_b']:>10.4f} {100 * row['other']:>6.1f}"
                )
    print()
    print("Mean over class sets: speed-up at the teacher's accuracy (test curve), spec / general")
    print(f"{'C':>2} " + " ".join(f"{'share ' + format(s, '.2f'):>12}" for s in args.shares))
    for c in args.C:
        cells = []
        for share in args.shares:
            sel = [r for r in rows if r["C"] == c and r["share"] == share]
            g = np.nanmean([r["gen_spd"] for r in sel])
            s = np.nanmean([r["spec_spd"] for r in sel])
            cells.append(f"{s:5.2f}/{g:4.2f}")
        print(f"{c:>2} " + " ".join(f"{x:>12}" for x in cells))
    wins = [r for r in rows if r["spec_spd"] > r["gen_spd"]]
    print()
    print(
        f"specialized beats general (speed-up@T) in {len(wins)}/{len(rows)} settings; "
        f"mean ratio spec/gen = {np.nanmean([r['spec_spd'] / r['gen_spd'] for r in rows]):.2f}"
    )
    for c in args.C:
        for share in args.shares:
            sel = [r for r in rows if r["C"] == c and r["share"] == share]
            ratio = np.nanmean([r["spec_spd"] / r["gen_spd"] for r in sel])
            verdict = "helps" if ratio > 1.05 else ("no gain" if ratio > 0.95 else "hurts")
            print(f"  C={c} share={share:.2f}: ratio {ratio:.2f} -> {verdict}")
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
