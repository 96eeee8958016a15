"""A cascade under distribution shift: fixed thresholds, the monitor's alarms, and recalibration
from shadow audits, on the Fashion-MNIST cascade (student MLP -> teacher CNN of the demo zoo).

Simulated offline on logits (live serving is too slow for millions of requests on 2 cores): the
zoo's student and teacher run once on every corrupted test image (cached), then request streams
are drawn from these logit pools and pushed through :class:`cascadekit.monitoring.CascadeMonitor`
exactly as the server does.

Setup. The routing score and temperature are chosen on the ``select`` split
(:func:`cascadekit.serve.demo.choose_router`); the threshold is the guaranteed operating point on
the ``calibrate`` split (:func:`cascadekit.calibration.guaranteed_threshold`, betting,
``--epsilon`` 0.01, ``--delta`` 0.1); the monitor's reference is the student's scores on the
``calibrate`` split. Pools (all from the 10k ``test`` split, never used above):

* ``clean``: the 10k test images; control streams resample it (with replacement);
* ``noise-s``: Gaussian pixel noise of standard deviation ``s`` (0-255 scale);
* ``blur-s``: Gaussian blur of standard deviation ``s`` pixels;
* ``contrast-c``: contrast scaled by ``c`` around each image's mean;
* ``prior``: the clean test set resampled with the three classes where the cascade loses most
  against the teacher at the threshold (measured on the select split) five times as likely.

Measured:

1. **fixed threshold** on each pool: teacher share and accuracy drop against the teacher (labels);
   a pool whose drop exceeds epsilon *breaks the guarantee*;
2. **alarms**: streams of clean requests (3,000 + a uniform offset in [0, window)) followed by
   shifted ones; requests after the shift until the first alarm (median and max over
   ``--repeats`` streams); the audited disagreement estimate and its bound at the end of each
   stream; false alarms per 100k requests on ``--controls`` independent clean streams;
3. **recalibration**: for each guarantee-breaking shift, ``--recal-repeats`` audit samples of
   each size drawn from its pool (the audit sample of a log is a uniform random sample of
   traffic); the label-free Learn-then-Test of :func:`cascadekit.monitoring.propose_thresholds`
   picks a new threshold; its drop on the whole pool (the population the samples come from) is
   compared with epsilon. Log length = audits / audit rate;
4. **audit cost** at the default audit rate: shadow teacher calls / all teacher calls, on the
   control streams.

Run: ``.venv/bin/python benchmarks/drift.py`` (about 5 minutes the first time, corrupted logits
are then cached; ``--quick``: 1,000 images per pool, fewer severities and repeats, under a
minute). The last line is ``alarm_requests_max=<n> false_alarms_per_100k=<f>
recalibrated_violation_rate=<r> audit_cost=<c>``; ``alarm_requests_max`` is the worst delay over
the guarantee-breaking shifts (``inf`` if one never alarmed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from cascadekit import calibration as cal
from cascadekit import scores as sc
from cascadekit.curves import correctness, threshold_grid
from cascadekit.data.cache import cache_root
from cascadekit.data.zoo import load_fashion_mnist_zoo
from cascadekit.errors import InsufficientDataError
from cascadekit.monitoring import CascadeMonitor, propose_thresholds
from cascadekit.serve.demo import choose_router

FULL_SHIFTS = [
    ("noise", 20.0),
    ("noise", 40.0),
    ("noise", 80.0),
    ("blur", 1.0),
    ("blur", 1.5),
    ("contrast", 0.5),
    ("contrast", 0.3),
]
QUICK_SHIFTS = [("noise", 40.0), ("noise", 80.0), ("blur", 1.5), ("contrast", 0.3)]


@dataclass
class Pool:
    name: str
    student: np.ndarray  # logits
    teacher: np.ndarray
    labels: np.ndarray


def corrupt(images: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    x: np.ndarray = images.astype(np.float32)
    if kind == "noise":
        x = x + rng.normal(0.0, level, x.shape)
    elif kind == "blur":
        x = ndimage.gaussian_filter(x, sigma=(0, level, level))
    elif kind == "contrast":
        mean = x.mean(axis=(1, 2), keepdims=True)
        x = (x - mean) * level + mean
    else:  # pragma: no cover - fixed list
        raise ValueError(kind)
    out: np.ndarray = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return out


def corrupted_pool(zoo: Any, kind: str, level: float, n: int, seed: int) -> Pool:
    """Student and teacher logits on corrupted test images (cached by recipe)."""
    key = hashlib.sha256(json.dumps([zoo.recipe.key, kind, level, n, seed]).encode()).hexdigest()
    path = cache_root() / "drift" / f"{key[:16]}.npz"
    labels = zoo.labels["test"][:n]
    if path.is_file():
        f = np.load(path)
        return Pool(f"{kind}-{level:g}", f["student"], f["teacher"], labels)
    images = corrupt(zoo.images["test"][:n], kind, level, np.random.default_rng(seed))
    student = zoo.forward("student", images)
    teacher = zoo.forward("teacher", images)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, student=student, teacher=teacher)
    return Pool(f"{kind}-{level:g}", student, teacher, labels)


def prior_pool(clean: Pool, hard: np.ndarray, rng: np.random.Generator) -> Pool:
    w = np.where(np.isin(clean.labels, hard), 5.0, 1.0)
    idx = rng.choice(clean.labels.shape[0], size=clean.labels.shape[0], p=w / w.sum())
    return Pool("prior", clean.student[idx], clean.teacher[idx], clean.labels[idx])


class Scored:
    """A pool with its routing scores, both answers and correctness."""

    def __init__(self, pool: Pool, score: str, temperature: float) -> None:
        self.name = pool.name
        self.s = np.asarray(sc.compute_score(score, pool.student, temperature), np.float64)
        self.ps = np.argmax(pool.student, axis=1)
        self.pt = np.argmax(pool.teacher, axis=1)
        self.cs = correctness(pool.student, pool.labels)
        self.ct = correctness(pool.teacher, pool.labels)
        self.n = self.s.shape[0]

    def share(self, t: float) -> float:
        return float(np.mean(self.s < t))

    def drop(self, t: float) -> float:
        keep = self.s >= t
        return float(np.mean(self.ct) - np.mean(np.where(keep, self.cs, self.ct)))

    def disagreement(self, t: float) -> float:
        return float(np.mean((self.s >= t) & (self.ps != self.pt)))


def stream(
    mon: CascadeMonitor, pool: Scored, idx: np.ndarray, t: float, chunk: int = 250
) -> list[Any]:
    """Push requests ``idx`` of ``pool`` through the monitor (with audits); return the alarms."""
    alarms: list[Any] = []
    for a in range(0, idx.shape[0], chunk):
        rows = idx[a : a + chunk]
        s = pool.s[rows]
        stage = (s < t).astype(np.int64)
        alarms += mon.update(s, stage)
        m = mon.audit_mask(rows.shape[0])
        if m.any():
            mon.add_audits(s[m], pool.ps[rows][m], pool.pt[rows][m])
    return alarms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI size: fewer images, repeats, shifts")
    ap.add_argument("--epsilon", type=float, default=0.01)
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--false-alarms-per-100k", type=float, default=0.5)
    ap.add_argument("--audit-rate", type=float, default=None, help="default: the monitor's")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--controls", type=int, default=None)
    ap.add_argument("--control-length", type=int, default=None)
    ap.add_argument("--recal-repeats", type=int, default=None)
    ap.add_argument("--random-state", type=int, default=0)
    args = ap.parse_args()
    q = args.quick
    n_img = 1000 if q else 10_000
    shifts = QUICK_SHIFTS if q else FULL_SHIFTS
    repeats = args.repeats or (5 if q else 20)
    controls = args.controls or (3 if q else 5)
    control_len = args.control_length or (50_000 if q else 200_000)
    recal_repeats = args.recal_repeats or (50 if q else 200)
    audit_sizes = (500, 2000) if q else (500, 1000, 2000, 4000)
    eps, dlt = args.epsilon, args.delta
    rng = np.random.default_rng(args.random_state)
    t0 = time.perf_counter()

    zoo = load_fashion_mnist_zoo()
    choice = choose_router(zoo)
    score, temp = choice.score, choice.temperature
    lg, y = zoo.logits, zoo.labels
    cal_pool = Scored(
        Pool("calibrate", lg["calibrate"]["student"], lg["calibrate"]["teacher"], y["calibrate"]),
        score,
        temp,
    )
    g = cal.guaranteed_threshold(cal_pool.s, cal_pool.cs, cal_pool.ct, eps, dlt)
    t = g.thresholds[0]
    audit_rate = args.audit_rate if args.audit_rate is not None else CascadeMonitor(t).audit_rate
    print(
        f"cascade: student -> teacher, score {score} (T={temp:.3g}, chosen on select); "
        f"guaranteed threshold {t:.4g} (epsilon={eps:g}, delta={dlt:g}, betting, "
        f"{cal_pool.n} calibration rows): calibration teacher share {g.teacher_share:.3f}"
    )
    # the prior shift: the classes where the cascade loses most against the teacher at this
    # threshold (measured on the select split) become five times as likely
    sel = Scored(
        Pool("select", lg["select"]["student"], lg["select"]["teacher"], y["select"]), score, temp
    )
    keep = sel.s >= t
    loss = [float(np.mean((sel.ct & ~sel.cs & keep)[y["select"] == k])) for k in range(10)]
    hard = np.argsort(loss)[::-1][:3]
    clean_raw = Pool("clean", lg["test"]["student"], lg["test"]["teacher"], y["test"])
    raw = [clean_raw] + [corrupted_pool(zoo, k, v, n_img, args.random_state) for k, v in shifts]
    raw.append(prior_pool(clean_raw, hard, rng))
    pools = [Scored(p, score, temp) for p in raw]
    print(
        f"pools: clean and prior {clean_raw.labels.shape[0]} test images, corrupted "
        f"{n_img} each; prior shift: classes {sorted(hard.tolist())} x5; ready in "
        f"{time.perf_counter() - t0:.0f} s"
    )

    # 1. fixed threshold
    print("\n1. fixed threshold (drop against the teacher, labels; * = above epsilon)")
    print(f"{'pool':<14}{'teacher share':>14}{'drop':>9}{'disagree':>10}{'student acc':>12}")
    breaking = []
    for p in pools:
        d = p.drop(t)
        mark = "*" if d > eps else " "
        if d > eps:
            breaking.append(p)
        print(
            f"{p.name:<14}{p.share(t):>14.3f}{d:>8.4f}{mark}{p.disagreement(t):>10.4f}"
            f"{np.mean(p.cs):>12.3f}"
        )

    # 2. alarms on shifts
    print(
        f"\n2. monitor (window {args.window}, {args.false_alarms_per_100k:g} false alarms per 100k "
        f"stated, audit rate {audit_rate:g}); requests after the shift until the first alarm over "
        f"{repeats} streams"
    )
    print(
        f"{'pool':<14}{'median':>8}{'max':>8}{'missed':>8}  audited disagreement over "
        f"{10_000:,} shifted requests (estimate, upper) vs the pool's"
    )
    delays: dict[str, list[float]] = {}
    shifted_len = 10_000
    for p in pools[1:]:
        ds: list[float] = []
        est: list[Any] = []
        for r in range(repeats):
            mon = CascadeMonitor(
                t,
                reference_scores=cal_pool.s,
                window=args.window,
                false_alarms_per_100k=args.false_alarms_per_100k,
                audit_rate=audit_rate,
                delta=dlt,
                random_state=int(rng.integers(1 << 31)),
            )
            pre = 3000 + int(rng.integers(args.window))
            stream(mon, pools[0], rng.integers(pools[0].n, size=pre), t)
            shifted = rng.integers(p.n, size=shifted_len)
            alarms = stream(mon, p, shifted, t)
            after = [a.requests - pre for a in alarms if a.requests > pre]
            ds.append(float(after[0]) if after else math.inf)
            if r == 0:  # the audits of the shifted part alone
                only = CascadeMonitor(t, audit_rate=audit_rate, delta=dlt, random_state=r)
                stream(only, p, shifted, t)
                est.append(only.drop_estimate())
        delays[p.name] = ds
        fin = [v for v in ds if math.isfinite(v)]
        b = est[0]
        assert b is not None
        print(
            f"{p.name:<14}{(np.median(fin) if fin else math.inf):>8.0f}"
            f"{(max(ds)):>8.0f}{sum(1 for v in ds if not math.isfinite(v)):>8d}  "
            f"({b.disagreement:.4f}, {b.upper:.4f}) from {b.n} audits vs {p.disagreement(t):.4f}"
        )

    # control streams
    n_false = 0
    costs = []
    for _ in range(controls):
        mon = CascadeMonitor(
            t,
            reference_scores=cal_pool.s,
            window=args.window,
            false_alarms_per_100k=args.false_alarms_per_100k,
            audit_rate=audit_rate,
            random_state=int(rng.integers(1 << 31)),
        )
        alarms = stream(mon, pools[0], rng.integers(pools[0].n, size=control_len), t, chunk=1000)
        n_false += len(alarms)
        costs.append(mon.audit_cost)
    fa = n_false / (controls * control_len) * 100_000
    audit_cost = float(np.mean(costs))
    print(
        f"controls: {controls} clean streams of {control_len:,} requests: {n_false} false "
        f"alarms = {fa:.2f} per 100k (stated <= {args.false_alarms_per_100k:g})"
    )
    print(
        f"audit cost at audit rate {audit_rate:g}: {audit_cost:.4f} of the teacher's calls "
        f"(teacher share {pools[0].share(t):.3f})"
    )

    # 3. recalibration
    print(
        f"\n3. recalibration from the audit sample (label-free, epsilon={eps:g}, delta={dlt:g}), "
        f"{recal_repeats} samples per size on every shifted pool; violation = population drop "
        "(labels) > epsilon; disagreement violations (what the label-free guarantee bounds) "
        "in the last column"
    )
    print(
        f"{'pool':<14}{'audits':>8}{'log length':>12}{'certified':>10}{'teacher share':>14}"
        f"{'mean drop':>10}{'violations':>11}{'disagr. viol.':>14}"
    )
    worst_rate = 0.0
    total_viol = total_runs = total_dis = 0
    for p in pools[1:]:
        for n_a in audit_sizes:
            viol = cert = dis = 0
            shares, drops = [], []
            for _ in range(recal_repeats):
                idx = rng.integers(p.n, size=n_a)
                route = p.s[rng.integers(p.n, size=max(n_a, 5000))]  # logged scores (grid)
                try:
                    res = cal.guaranteed_threshold_label_free(
                        p.s[idx], p.ps[idx], p.pt[idx], eps, dlt, grid=threshold_grid(route, 100)
                    )
                    tn = res.thresholds[0]
                except InsufficientDataError:  # nothing certified: all to the teacher
                    tn = math.inf
                cert += math.isfinite(tn)
                d = p.drop(tn)
                drops.append(d)
                shares.append(p.share(tn))
                viol += d > eps
                dis += p.disagreement(tn) > eps
            rate = viol / recal_repeats
            if n_a == audit_sizes[-1]:
                worst_rate = max(worst_rate, rate)
                total_viol += viol
                total_dis += dis
                total_runs += recal_repeats
            print(
                f"{p.name:<14}{n_a:>8}{int(n_a / audit_rate):>12,}{cert / recal_repeats:>10.2f}"
                f"{np.mean(shares):>14.3f}{np.mean(drops):>10.4f}{rate:>11.3f}"
                f"{dis / recal_repeats:>14.3f}"
            )
    viol_rate = total_viol / total_runs if total_runs else 0.0
    if breaking:  # one proposal as the CLI prints it, for the record
        p = breaking[-1]
        idx = rng.integers(p.n, size=audit_sizes[-1])
        prop = propose_thresholds(p.s[idx], p.ps[idx], p.pt[idx], t, eps, dlt, route_scores=p.s)
        print(
            f"example proposal on {p.name}: threshold {prop.old_threshold:.4g} -> "
            f"{prop.new_threshold:.4g}, teacher share {prop.old_teacher_share:.3f} -> "
            f"{prop.new_teacher_share:.3f}, audited disagreement {prop.old_drop.disagreement:.4f} "
            f"(<= {prop.old_drop.upper:.4f}) -> {prop.new_drop.disagreement:.4f}"
        )
    worst = [max(delays[p.name]) for p in breaking if p.name in delays]
    alarm_max = max(worst) if worst else math.nan
    dis_rate = total_dis / total_runs if total_runs else 0.0
    print(
        f"\nguarantee-breaking shifts: {', '.join(p.name for p in breaking) or 'none'}; "
        f"violation rate at {audit_sizes[-1]} audits "
        f"(log of {int(audit_sizes[-1] / audit_rate):,} requests): {viol_rate:.3f} (worst pool "
        f"{worst_rate:.3f}; promised <= {dlt:g}); disagreement violation rate {dis_rate:.3f}; "
        f"worst alarm delay over all shifts {max(max(v) for v in delays.values()):.0f}; "
        f"total {time.perf_counter() - t0:.0f} s"
    )
    alarm_txt = f"{alarm_max:.0f}" if math.isfinite(alarm_max) else str(alarm_max)
    print(
        f"alarm_requests_max={alarm_txt} false_alarms_per_100k={fa:.2f} "
        f"recalibrated_violation_rate={viol_rate:.3f} audit_cost={audit_cost:.4f}"
    )


if __name__ == "__main__":
    main()
