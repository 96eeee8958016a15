"""EBJR for detection: a small and a large detector on Fashion-MNIST canvases, routed per image.

Two single-shot detectors of ``cascadekit.detection.nets`` are trained once on 64 x 64 canvases
with 1-4 Fashion-MNIST items and cached by recipe hash. ``--pair`` names them
(``cascadekit.detection.train.DETECTOR_PAIRS``): the default ``s8_xl`` is the stride-8
``small_s8`` student (8 epochs) and the ``xlarge`` teacher (33x FLOPs apart); ``s8`` gives the
same student the ``large`` teacher (16x); ``v1`` is the first pair (``small`` -> ``large``, 7.4x).
In one run this script then:

1. prints each detector's COCO mAP (pycocotools: AP@[.50:.95], AP50, AP75) on the ``test``
   canvases, its FLOPs per image (``torch.utils.flop_counter``), parameters and measured
   seconds per image (forward + decode + NMS, batches of 256), and the FLOPs / time ratios;
2. computes every routing score on the student's outputs (EBJR's detection energy and its
   variants, the detector's own box scores, classification scores averaged over boxes) and, for
   each, the cascade's mAP at a grid of thresholds (quantiles of the score): mAP is not a sum
   over images, so every point is one pycocotools accumulation of the mixed per-image matchings;
   plus a random router (mean of ``--random-repeats`` draws per share);
3. prints per router: the area under mAP over teacher share, the speed-up over the teacher at
   ``--fraction`` (97%) of the teacher's mAP read off the test curve (the best threshold in
   hindsight, as papers report it), and the honest version: the threshold picked on separate
   ``val`` canvases for that fraction, applied to the test canvases (test mAP as % of the
   teacher's, and speed-up). The energy's box weight ``w``, then its box-score threshold and
   top-k, are chosen on ``val`` (largest area under the val curve);
4. adds the hindsight **oracle** (``oracle_detection_curve``: images sent to the teacher in
   decreasing order of a linearised per-image mAP gain computed with the true boxes, each point
   an exact mAP; a lower bound on the true best routing) and prints, per router, the share of
   the random-to-oracle gap in area under the curve it captures.

EBJR reports 97% of the teacher's mAP at 1.8x speed-up on COCO (EfficientDet-D0 -> D4).

Usage::

    nice -n 10 .venv/bin/python benchmarks/detection_cascade.py        # trains once (~5 min)
    .venv/bin/python benchmarks/detection_cascade.py --pair v1          # the first pair
    .venv/bin/python benchmarks/detection_cascade.py --n-test 500 --n-val 300 --n-thresholds 8
    .venv/bin/python benchmarks/detection_cascade.py --reduced         # tiny detectors
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    from cascadekit.detection.train import DEFAULT_PAIR, DETECTOR_PAIRS

    ap.add_argument("--reduced", action="store_true", help="tiny training recipe (for a smoke run)")
    ap.add_argument("--pair", default=DEFAULT_PAIR, choices=list(DETECTOR_PAIRS))
    ap.add_argument("--n-test", type=int, default=2000, help="test canvases (t10k items)")
    ap.add_argument("--n-val", type=int, default=1000, help="val canvases for threshold choice")
    ap.add_argument("--n-thresholds", type=int, default=20, help="quantile levels per score")
    ap.add_argument("--random-repeats", type=int, default=5)
    ap.add_argument("--fraction", type=float, default=0.97, help="target share of teacher mAP")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--random-state", type=int, default=0)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--json", default=None, help="also write every curve point to this file")
    return ap.parse_args(argv)


def _say(msg: str) -> None:
    print(msg, flush=True)


def _routers(energy: Any) -> dict[str, Any]:
    from cascadekit.detection import DetectionScorer

    return {
        "energy": energy,
        "energy_w1": DetectionScorer("energy", box_weight=1.0),
        "energy_top1": DetectionScorer("energy", score_threshold=0.0, top_k=1),
        "energy_all": DetectionScorer("energy", score_threshold=0.05),
        "class_energy": DetectionScorer("class_energy"),
        "box_energy": DetectionScorer("box_energy"),
        "joint_energy": DetectionScorer("joint_energy"),
        "mean_score": DetectionScorer("mean_score"),
        "max_score": DetectionScorer("max_score", score_threshold=0.0),
        "mean_max_softmax": DetectionScorer("mean_max_softmax"),
        "mean_neg_entropy": DetectionScorer("mean_neg_entropy"),
        "mean_margin": DetectionScorer("mean_margin"),
    }


def _timed_predict(det: Any, images: np.ndarray) -> tuple[list[dict[str, np.ndarray]], float]:
    det.predict(images[:64])  # warm-up
    t0 = time.perf_counter()
    out = det.predict(images)
    return out, (time.perf_counter() - t0) / images.shape[0]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    from cascadekit import curves
    from cascadekit.detection import (
        CocoMAP,
        DetectionScorer,
        default_detector_recipes,
        detection_cascade_curve,
        detection_gap_captured,
        load_detector,
        make_canvas_dataset,
        oracle_detection_curve,
        random_detection_curve,
        route_images,
        speedup_at_map_fraction,
        threshold_at_map,
    )
    from cascadekit.errors import InfeasibleTargetError

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    recipes = default_detector_recipes(args.reduced, random_state=args.random_state, pair=args.pair)

    def progress(desc: str, frac: float) -> None:
        if int(frac * 1000) % 100 == 0:
            _say(f"  {desc}: {frac:.0%}")

    dets = [load_detector(r, args.cache_dir, progress=progress) for r in recipes]
    student, teacher = dets
    test = make_canvas_dataset(args.n_test, "test", random_state=args.random_state)
    val = make_canvas_dataset(args.n_val, "val", random_state=args.random_state)
    _say(
        f"# detection cascade: {len(test)} test canvases (t10k items), {len(val)} val canvases, "
        f"{test.spec.canvas}x{test.spec.canvas}, 1-{test.spec.max_items} items, "
        f"pair {args.pair!r}, torch threads {args.threads}"
    )
    ps, t_s = _timed_predict(student, test.images)
    pt, t_t = _timed_predict(teacher, test.images)
    vs, vt = student.predict(val.images), teacher.predict(val.images)
    m_test, m_val = CocoMAP(test.targets(), 10), CocoMAP(val.targets(), 10)
    ms, mt = m_test.evaluate(ps), m_test.evaluate(pt)
    mvs, mvt = m_val.evaluate(vs), m_val.evaluate(vt)
    map_s, map_t = m_test.compute(ms), m_test.compute(mt)
    costs = [float(student.flops), float(teacher.flops)]

    _say("\n## detectors (test)")
    _say(
        f"{'detector':<9} {'arch':<8} {'FLOPs':>11} {'params':>8} {'train_s':>8} "
        f"{'s/img':>9} {'mAP':>6} {'AP50':>6} {'AP75':>6} {'boxes/img':>9}"
    )
    for d, mp, sec, preds in ((student, map_s, t_s, ps), (teacher, map_t, t_t, pt)):
        nb = np.mean([len(p["boxes"]) for p in preds])
        cached = " (cached)" if not d.trained else ""
        _say(
            f"{d.recipe.name:<9} {d.recipe.arch:<8} {d.flops:>11,} {d.params:>8,} "
            f"{d.train_seconds:>8.0f} {sec:>9.2e} {mp['map']:>6.3f} {mp['map_50']:>6.3f} "
            f"{mp['map_75']:>6.3f} {nb:>9.1f}{cached}"
        )
    _say(
        f"ratios teacher/student: FLOPs {costs[1] / costs[0]:.2f}x, time {t_t / t_s:.2f}x, "
        f"mAP {map_s['map'] / map_t['map']:.3f} of the teacher's"
    )

    # choose the energy's box weight on val (largest area under the val curve)
    weights = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    val_auc = {}
    for w in weights:
        s = DetectionScorer("energy", box_weight=w)(vs)
        val_auc[w] = curves.auc(
            detection_cascade_curve(s, m_val, mvs, mvt, costs, n_thresholds=args.n_thresholds)
        )
    w_best = max(weights, key=lambda w: val_auc[w])
    _say(
        "\nenergy box weight w chosen on val (AUC of mAP over teacher share): "
        + ", ".join(f"w={w:g}: {a:.4f}" for w, a in val_auc.items())
        + f" -> w={w_best:g}"
    )
    # then which boxes count: box-score threshold x top-k, with w fixed (val again)
    sel_auc: dict[tuple[float, int | None], float] = {}
    for thr in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5):
        for k in (None, 1, 2, 4):
            s = DetectionScorer("energy", box_weight=w_best, score_threshold=thr, top_k=k)(vs)
            sel_auc[thr, k] = curves.auc(
                detection_cascade_curve(s, m_val, mvs, mvt, costs, n_thresholds=args.n_thresholds)
            )
    thr_best, k_best = max(sel_auc, key=lambda tk: sel_auc[tk])
    _say("energy box selection on val (AUC; rows: box-score threshold, columns: top-k):")
    ks = (None, 1, 2, 4)
    _say(f"  {'thr':>5} " + " ".join(f"{'all' if k is None else k:>7}" for k in ks))
    for thr in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5):
        _say(f"  {thr:>5.2f} " + " ".join(f"{sel_auc[thr, k]:>7.4f}" for k in ks))
    _say(
        f"  -> score_threshold={thr_best:g}, top_k={k_best} (default 0.3, all: "
        f"{sel_auc[0.3, None]:.4f}; best {sel_auc[thr_best, k_best]:.4f})"
    )
    energy = DetectionScorer("energy", box_weight=w_best, score_threshold=thr_best, top_k=k_best)

    routers = _routers(energy)
    test_curves: dict[str, curves.Curve] = {}
    val_curves: dict[str, curves.Curve] = {}
    test_scores: dict[str, np.ndarray] = {}
    for name, scorer in routers.items():
        test_scores[name] = scorer(ps)
        test_curves[name] = detection_cascade_curve(
            test_scores[name], m_test, ms, mt, costs, n_thresholds=args.n_thresholds
        )
        val_curves[name] = detection_cascade_curve(
            scorer(vs), m_val, mvs, mvt, costs, n_thresholds=args.n_thresholds
        )
    test_curves["random"] = random_detection_curve(
        m_test,
        ms,
        mt,
        costs,
        n_points=args.n_thresholds + 1,
        n_repeats=args.random_repeats,
        random_state=args.random_state,
    )

    test_curves["oracle"] = oracle_detection_curve(
        m_test, ms, mt, costs, n_points=args.n_thresholds + 1
    )
    # does the (approximate) oracle dominate every router at every grid point?
    worst = max(
        float(
            np.max(
                c.accuracy
                - np.interp(
                    c.teacher_share,
                    test_curves["oracle"].teacher_share,
                    test_curves["oracle"].accuracy,
                )
            )
        )
        for k, c in test_curves.items()
        if k != "oracle"
    )

    _say("\n## mAP at each threshold of the grid (test; share = fraction sent to the teacher)")
    for name, c in test_curves.items():
        _say(f"{name:<17} share " + " ".join(f"{v:5.2f}" for v in c.teacher_share))
        _say(f"{'':<17} mAP   " + " ".join(f"{v:5.3f}" for v in c.accuracy))

    f = args.fraction
    _say(
        f"\n## speed-up over the teacher at {f:.0%} of its mAP (teacher mAP {map_t['map']:.4f}, "
        f"target {f * map_t['map']:.4f}; FLOPs cost, student always runs)"
    )
    _say(
        f"{'router':<17} {'AUC':>6} {'gap':>6} {'share@f':>8} {'speedup@f':>9} | "
        f"{'val-chosen: share':>17} {'mAP/teacher':>11} {'speedup':>8}"
    )
    summary: dict[str, dict[str, float]] = {}
    for name, c in test_curves.items():
        sp = speedup_at_map_fraction(c, f)
        share = (
            curves.teacher_share_at_teacher_accuracy(c, f * float(c.accuracy[-1]))
            if math.isfinite(sp)
            else math.nan
        )
        row = {
            "auc": curves.auc(c),
            "gap_captured": detection_gap_captured(c, test_curves["random"], test_curves["oracle"]),
            "speedup_test_hindsight": sp,
            "share_test_hindsight": share,
        }
        held = ""
        if name in val_curves:
            vc = val_curves[name]
            try:
                thr = threshold_at_map(vc, f * float(vc.accuracy[-1]))
                to_t = route_images(test_scores[name], thr)
                mp_held = m_test.mixed([ms, mt], to_t)["map"]
                rc = (costs[0] + to_t.mean() * costs[1]) / costs[1]
                row |= {
                    "val_share_test": float(to_t.mean()),
                    "val_map_ratio_test": mp_held / map_t["map"],
                    "val_speedup_test": 1.0 / rc,
                }
                held = f"{to_t.mean():>17.3f} {mp_held / map_t['map']:>11.3f} {1.0 / rc:>7.2f}x"
            except InfeasibleTargetError:
                held = f"{'not reached on val':>38}"
        summary[name] = row
        sp_txt = f"{sp:>8.2f}x" if math.isfinite(sp) else f"{'never':>9}"
        _say(
            f"{name:<17} {row['auc']:>6.4f} {row['gap_captured']:>6.3f} {share:>8.3f} {sp_txt} | "
            f"{held}"
        )
    oc = test_curves["oracle"]
    _say(
        "gap = (AUC - AUC_random) / (AUC_oracle - AUC_random); the oracle is a hindsight "
        f"routing (a lower bound on the best one), its peak mAP {oc.accuracy.max():.4f} at share "
        f"{oc.teacher_share[np.argmax(oc.accuracy)]:.2f}; largest excess of any router over it "
        f"at a grid point: {worst:+.4f}"
    )
    _say("EBJR (COCO, EfficientDet-D0 -> D4): 97% of the teacher's mAP at 1.8x speed-up.")
    _say(f"\nwall time {time.perf_counter() - t_start:.0f} s")

    if args.json:
        payload = {
            "student": {"flops": student.flops, "map": map_s, "seconds_per_image": t_s},
            "teacher": {"flops": teacher.flops, "map": map_t, "seconds_per_image": t_t},
            "pair": args.pair,
            "energy": {"box_weight": w_best, "score_threshold": thr_best, "top_k": k_best},
            "energy_selection_val_auc": {f"{t}/{k}": a for (t, k), a in sel_auc.items()},
            "summary": summary,
            "curves": {k: c.to_records(json_safe=True) for k, c in test_curves.items()},
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
