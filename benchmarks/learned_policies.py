"""Learned routing policies (Bolukbasi et al. 2017) vs every fixed score vs the oracle.

Real pools, honest splits: policies are trained and temperatures tuned on the ``select`` split
(which the models never saw in training); every figure is on ``test``.

* **2 stages** (student -> teacher): each fixed score at its tuned temperature; learned policies
  on logit features, + hidden activations of the student, + a committee (a second cheap MLP,
  whose FLOPs are added to the student's cost), as a learned score (one policy, threshold swept)
  and as a lambda sweep. Figures: share of the random-to-oracle gap captured (on the teacher
  share axis, :func:`cascadekit.curves.summarize`) and speed-up at the teacher's accuracy.
* **3-model network selection** (student, intermediate, teacher): the paper's DAG (after the
  student: exit, intermediate or jump to the teacher) and the chain, each a lambda sweep, vs the
  best 2-stage fixed score and the DAG oracle. Figures on the relative-cost axis (cost / teacher
  alone): speed-up at the teacher's accuracy, and "cost gap captured" = area under the Pareto
  envelope of accuracy vs relative cost over [student alone, student + teacher], between the
  random 2-stage line (0) and the DAG oracle's sweep (1).
* **Early exit** inside the frozen Fashion-MNIST teacher: linear heads after its two conv
  blocks; a learned policy vs a max-softmax threshold at each exit (same threshold quantile
  everywhere) vs the oracle.
* **Text pool** (if cached): the same 2-stage and DAG comparisons; hidden features = the
  student encoder's sentence embedding.

Run::

    nice -n 10 .venv/bin/python benchmarks/learned_policies.py
    nice -n 10 .venv/bin/python benchmarks/learned_policies.py --quick    # fewer lambdas, no hgb
    nice -n 10 .venv/bin/python benchmarks/learned_policies.py --skip early-exit text
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from cascadekit import curves, selection
from cascadekit.data.cache import atomic_write_npz, cache_root, recipe_hash
from cascadekit.policies import (
    LearnedPolicy,
    PolicyGraph,
    committee_features,
    default_lambdas,
    hidden_features,
    lambda_sweep,
    logit_features,
    oracle_route,
    policy_curve,
    stack_features,
)
from cascadekit.scores import compute_score

SCORES = selection.SCORES


def _row(
    name: str, gap: float, speed: float, ref: tuple[float, float] | None, note: str = ""
) -> str:
    rg = "" if ref is None or not math.isfinite(ref[0]) or ref[0] == 0 else f"{gap / ref[0]:6.2f}"
    rs = "" if ref is None or not math.isfinite(ref[1]) or ref[1] == 0 else f"{speed / ref[1]:6.2f}"
    sp = "  never" if not math.isfinite(speed) else f"{speed:6.2f}x"
    return f"  {name:<44} {gap:7.3f} {rg:>7} {sp:>8} {rs:>7}  {note}"


def _head(what: str) -> None:
    print(f"\n{what}")
    print(f"  {'router':<44} {'gap':>7} {'/best':>7} {'speedup':>8} {'/best':>7}")


def _table(what: str, rows: list[tuple[str, float, float, str]], oracle: tuple[str, float]) -> None:
    """Print ``rows`` under ``what``, each against the best "fixed" router, then the oracle."""
    ref_gap = max(r[1] for r in rows if r[0].startswith("fixed"))
    ref_sp = max(
        (r[2] for r in rows if r[0].startswith("fixed") and math.isfinite(r[2])), default=math.nan
    )
    _head(what)
    for name, gap, sp, note in rows:
        print(_row(name, gap, sp, (ref_gap, ref_sp), note))
    print(_row(oracle[0], 1.0, oracle[1], (ref_gap, ref_sp), "hindsight"))


# ----------------------------------------------------------------------------------------------
# 2 stages


def _summ(curve: curves.Curve, cs: np.ndarray, ct: np.ndarray) -> tuple[float, float]:
    s = curves.summarize(curve, cs, ct)
    return float(s["gap_captured"]), float(s["speedup_at_teacher_accuracy"])


def two_stage(
    title: str,
    z: dict[str, np.ndarray],
    corr: dict[str, tuple[np.ndarray, np.ndarray]],
    costs: np.ndarray,
    extras: dict[str, tuple[dict[str, np.ndarray], float]],
    lams: np.ndarray,
    classifiers: Sequence[str],
) -> dict[str, tuple[float, float]]:
    """extras: name -> ({split: features}, extra cost added to the student)."""
    cs_sel, ct_sel = corr["select"]
    cs, ct = corr["test"]
    res: dict[str, tuple[float, float]] = {}
    rows: list[tuple[str, float, float, str]] = []
    for choice in selection.compare_scores(z["select"], cs_sel, ct_sel, costs, scores=SCORES):
        name = choice.score
        c = curves.cascade_curve(choice.scores(z["test"]), cs, ct, costs)
        res[name] = _summ(c, cs, ct)
        rows.append((f"{name} (T={choice.temperature:.2f})", *res[name], "fixed"))
    best_fixed = max((res[n] for n in SCORES), key=lambda r: r[0])
    best_speed = max(res[n][1] for n in SCORES)
    ref = (best_fixed[0], best_speed)
    feats = {"select": logit_features(z["select"]), "test": logit_features(z["test"])}
    sets: list[tuple[str, dict[str, np.ndarray], float]] = [("logits", feats, 0.0)]
    for nm, (fx, extra_cost) in extras.items():
        sets.append(
            (
                f"logits+{nm}",
                {s: stack_features(feats[s], fx[s]) for s in ("select", "test")},
                extra_cost,
            )
        )
    for fname, F, extra_cost in sets:
        c2 = np.array([costs[0] + extra_cost, costs[1]])
        for clf in classifiers:
            t0 = time.perf_counter()
            pol = LearnedPolicy(c2, lam=0.2, classifier=clf).fit([F["select"]], [cs_sel, ct_sel])
            c = curves.cascade_curve(pol.exit_score(F["test"]), cs, ct, c2)
            key = f"learned score {clf} [{fname}]"
            res[key] = _summ(c, cs, ct)
            rows.append((key, *res[key], f"{time.perf_counter() - t0:.1f}s fit"))
        if fname == "logits" or len(classifiers) == 1:
            t0 = time.perf_counter()
            pols = lambda_sweep(c2, [F["select"]], [cs_sel, ct_sel], lams)
            c = policy_curve([p.route([F["test"]]) for p in pols], [cs, ct])
            key = f"lambda sweep logistic [{fname}] ({len(lams)})"
            res[key] = _summ(c, cs, ct)
            rows.append((key, *res[key], f"{time.perf_counter() - t0:.1f}s"))
    acc_s, acc_t = float(np.mean(cs)), float(np.mean(ct))
    base = selection.baselines(cs, ct, costs)
    _head(
        f"{title}: 2 stages, test n={cs.size}, student acc {acc_s:.4f}, teacher acc {acc_t:.4f}, "
        f"cost ratio {costs[0] / costs[1]:.4f}"
    )
    for name, g, sp, note in rows:
        print(_row(name, g, sp, ref, note))
    for name, note in (("oracle", "hindsight"), ("random", "")):
        b = base[name]
        print(
            _row(name, float(b["gap_captured"]), float(b["speedup_at_teacher_accuracy"]), ref, note)
        )
    return res


# ----------------------------------------------------------------------------------------------
# 3 models and early exit: cost-axis metrics


def envelope(rc: np.ndarray, acc: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Best accuracy at relative cost <= x, linear between Pareto points (a mixture)."""
    o = np.argsort(rc, kind="stable")
    r, a = rc[o], np.maximum.accumulate(acc[o])
    keep = np.concatenate([[True], a[1:] > a[:-1]])  # the first point of each new maximum
    r, a = r[keep], a[keep]
    out = np.interp(xs, r, a)
    out[xs < r[0]] = np.nan
    return out


def cost_metrics(
    curve: curves.Curve,
    lo: float,
    hi: float,
    rand: tuple[float, float],
    orc: curves.Curve,
    acc_teacher: float,
) -> tuple[float, float]:
    xs = np.linspace(lo, hi, 401)
    e = envelope(curve.relative_cost, curve.accuracy, xs)
    eo = envelope(orc.relative_cost, orc.accuracy, xs)
    er = np.interp(xs, [lo, hi], list(rand))
    a, ao, ar = (float(np.trapezoid(np.nan_to_num(v, nan=rand[0]), xs)) for v in (e, eo, er))
    gap = (a - ar) / (ao - ar) if ao > ar else math.nan
    ok = curve.accuracy >= acc_teacher - 1e-12
    speed = float(1.0 / curve.relative_cost[ok].min()) if ok.any() else math.nan
    return gap, speed


def network_selection(
    title: str,
    names: Sequence[str],
    z: dict[str, dict[str, np.ndarray]],
    y: dict[str, np.ndarray],
    costs: np.ndarray,
    lams: np.ndarray,
) -> None:
    corr = {s: np.vstack([z[s][m].argmax(1) == y[s] for m in names]) for s in ("select", "test")}
    feats = {s: [logit_features(z[s][m]) for m in names[:-1]] for s in ("select", "test")}
    ct = corr["test"]
    acc_s, acc_t = float(ct[0].mean()), float(ct[-1].mean())
    lo, hi = costs[0] / costs[-1], (costs[0] + costs[-1]) / costs[-1]
    dag = PolicyGraph.skip_dag(costs, names)
    chain = PolicyGraph.chain(costs, names)
    olams = np.concatenate([[0.0], np.geomspace(1e-4, 3.0, 60)])
    orc = policy_curve([oracle_route(dag, ct, lam) for lam in olams], ct)
    rows = []
    for label, g in (("learned DAG (exit / middle / jump)", dag), ("learned chain", chain)):
        t0 = time.perf_counter()
        pols = lambda_sweep(g, feats["select"], corr["select"], lams)
        c = policy_curve([p.route(feats["test"]) for p in pols], ct)
        rows.append(
            (
                f"{label} ({len(lams)} lambdas)",
                *cost_metrics(c, lo, hi, (acc_s, acc_t), orc, acc_t),
                f"{time.perf_counter() - t0:.1f}s",
            )
        )
    # best 2-stage fixed score (chosen on select), student -> teacher
    best = selection.select_score(
        z["select"][names[0]], corr["select"][0], corr["select"][-1], temperatures=[1.0]
    )
    c2 = curves.cascade_curve(
        compute_score(best.score, z["test"][names[0]]), ct[0], ct[-1], [costs[0], costs[-1]]
    )
    rows.append(
        (
            f"fixed {best.score} student->teacher (2 stages)",
            *cost_metrics(c2, lo, hi, (acc_s, acc_t), orc, acc_t),
            "chosen on select",
        )
    )
    # fixed score chain: the same score-quantile level at both decision nodes
    srt = [np.sort(compute_score(best.score, z["select"][m])) for m in names[:-1]]
    pts = []
    for lv in np.linspace(0, 1, 41):
        ths = [s[min(int(lv * s.size), s.size - 1)] if lv < 1 else np.inf for s in srt]
        stage = np.full(ct.shape[1], len(names) - 1)
        und = np.ones(ct.shape[1], bool)
        for k, t in enumerate(ths):
            keep = und & (compute_score(best.score, z["test"][names[k]]) >= t)
            stage[keep] = k
            und &= ~keep
        pts.append(
            (
                float(np.mean(np.cumsum(costs)[stage]) / costs[-1]),
                float(np.mean(ct[stage, np.arange(ct.shape[1])])),
            )
        )
    fc = curves.Curve(
        np.full(len(pts), np.nan),
        np.zeros(len(pts)),
        np.array([p[1] for p in pts]),
        np.array([p[0] for p in pts]),
    )
    rows.append(
        (
            f"fixed {best.score} chain, same quantile per stage",
            *cost_metrics(fc, lo, hi, (acc_s, acc_t), orc, acc_t),
            "",
        )
    )
    _table(
        f"{title}: network selection over {' / '.join(names)}, test n={ct.shape[1]}, accuracies "
        f"{', '.join(f'{v:.4f}' for v in ct.mean(axis=1))}, costs / teacher "
        f"{', '.join(f'{v:.3f}' for v in costs / costs[-1])} (gap on the cost axis)",
        rows,
        ("oracle (DAG, lambda sweep)", cost_metrics(orc, lo, hi, (acc_s, acc_t), orc, acc_t)[1]),
    )


def early_exit(zoo: Any, lams: np.ndarray, n_train: int) -> None:
    from cascadekit.policies.early_exit import fit_exit_heads

    net = zoo.models["teacher"]
    layers = ["features.3", "features.7"]
    t0 = time.perf_counter()
    heads = fit_exit_heads(
        net,
        layers,
        zoo.images["train"][:n_train],
        zoo.labels["train"][:n_train],
        recipe={"zoo": zoo.recipe.key, "split": f"train[:{n_train}]"},
    )
    key = recipe_hash({"heads": heads.key, "splits": ["select", "test"], "zoo": zoo.recipe.key})
    path = cache_root() / "exit_heads" / f"logits-{key}.npz"
    if path.is_file():
        with np.load(path) as f:
            z = {s: [f[f"{s}/{j}"] for j in range(len(layers) + 1)] for s in ("select", "test")}
    else:
        z = {s: heads.exit_logits(net, zoo.images[s]) for s in ("select", "test")}
        atomic_write_npz(path, {f"{s}/{j}": a for s in z for j, a in enumerate(z[s])})
    secs = time.perf_counter() - t0
    g = heads.graph(["exit1 (conv block 1)", "exit2 (conv block 2)", "final"])
    names = g.names
    y = {s: zoo.labels[s] for s in ("select", "test")}
    corr = {s: np.vstack([zz.argmax(1) == y[s] for zz in z[s]]) for s in z}
    ct = corr["test"]
    acc_final = float(ct[-1].mean())
    feats = {s: [logit_features(zz) for zz in z[s][:-1]] for s in z}
    costs_rel = np.cumsum(g.costs) / g.reference_cost
    olams = np.concatenate([[0.0], np.geomspace(1e-4, 3.0, 60)])
    orc = policy_curve([oracle_route(g, ct, lam) for lam in olams], ct)
    lo, hi = costs_rel[0], 1.0 + g.costs[0] / g.reference_cost
    rand = (float(ct[0].mean()), acc_final)
    rows = []
    t1 = time.perf_counter()
    pols = lambda_sweep(g, feats["select"], corr["select"], lams)
    c = policy_curve([p.route(feats["test"]) for p in pols], ct)
    rows.append(
        (
            f"learned exit policy ({len(lams)} lambdas)",
            *cost_metrics(c, lo, hi, rand, orc, acc_final),
            f"{time.perf_counter() - t1:.1f}s",
        )
    )
    for score in ("max_softmax", "margin"):
        srt = [np.sort(compute_score(score, zz)) for zz in z["select"][:-1]]
        pts = []
        for lv in np.linspace(0, 1, 41):
            ths = [s[min(int(lv * s.size), s.size - 1)] if lv < 1 else np.inf for s in srt]
            stage = np.full(ct.shape[1], len(names) - 1)
            und = np.ones(ct.shape[1], bool)
            for k, t in enumerate(ths):
                keep = und & (compute_score(score, z["test"][k]) >= t)
                stage[keep] = k
                und &= ~keep
            pts.append(
                (
                    float(np.mean(costs_rel[stage])),
                    float(np.mean(ct[stage, np.arange(ct.shape[1])])),
                )
            )
        fc = curves.Curve(
            np.full(len(pts), np.nan),
            np.zeros(len(pts)),
            np.array([p[1] for p in pts]),
            np.array([p[0] for p in pts]),
        )
        rows.append(
            (
                f"fixed {score}, same quantile per exit",
                *cost_metrics(fc, lo, hi, rand, orc, acc_final),
                "",
            )
        )
        # exit1 -> final only (skip exit 2), exact 2-stage curve
        s1 = compute_score(score, z["test"][0])
        rest = g.reference_cost - (g.costs[0] - heads.head_flops[0])  # layers after block 1
        c1 = curves.cascade_curve(s1, ct[0], ct[-1])
        c1 = curves.Curve(
            c1.thresholds,
            c1.teacher_share,
            c1.accuracy,
            (g.costs[0] + c1.teacher_share * rest) / g.reference_cost,
        )
        rows.append(
            (
                f"fixed {score}, exit1 -> final only",
                *cost_metrics(c1, lo, hi, rand, orc, acc_final),
                "",
            )
        )
    _table(
        f"Fashion-MNIST early exit in the frozen teacher (heads trained on train[:{n_train}], "
        f"{secs:.0f}s incl. activations), test n={ct.shape[1]}, exit accuracies "
        f"{', '.join(f'{v:.4f}' for v in ct.mean(axis=1))}, cumulative FLOPs / network "
        f"{', '.join(f'{v:.3f}' for v in costs_rel)}",
        rows,
        ("oracle (lambda sweep)", cost_metrics(orc, lo, hi, rand, orc, acc_final)[1]),
    )


# ----------------------------------------------------------------------------------------------
# Fashion-MNIST extras: hidden activations and a committee member


def committee_logits(zoo: Any) -> tuple[dict[str, np.ndarray], float]:
    """A second cheap MLP (784-64-10, other seed) trained on train; cached. Returns its logits
    on select/test and its FLOPs per input."""
    import torch

    from cascadekit.costs import count_flops

    recipe = {"what": "committee-mlp-784-64-10", "zoo": zoo.recipe.key, "epochs": 3, "seed": 1}
    path = cache_root() / "policies" / f"committee-{recipe_hash(recipe)}.npz"
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )
    flops = float(count_flops(net, torch.zeros(1, 28, 28)))
    if path.is_file():
        with np.load(path) as f:
            return {s: f[s] for s in ("select", "test")}, flops
    torch.manual_seed(1)
    x = (torch.as_tensor(zoo.images["train"]).float() / 255 - 0.286) / 0.353
    yt = torch.as_tensor(zoo.labels["train"])
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for _ in range(3):
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], 128):
            b = perm[i : i + 128]
            loss = torch.nn.functional.cross_entropy(net(x[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    out = {}
    with torch.no_grad():
        for s in ("select", "test"):
            out[s] = net((torch.as_tensor(zoo.images[s]).float() / 255 - 0.286) / 0.353).numpy()
    atomic_write_npz(path, out)
    return out, flops


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="8 lambdas, logistic only")
    ap.add_argument("--lambdas", type=int, default=14, help="lambda values per sweep")
    ap.add_argument("--classifiers", nargs="+", default=["logistic", "hgb"])
    ap.add_argument("--heads-train", type=int, default=20000, help="train images for exit heads")
    ap.add_argument(
        "--skip", nargs="*", default=[], choices=["fashion-mnist", "dag", "early-exit", "text"]
    )
    args = ap.parse_args(argv)
    lams = default_lambdas(8 if args.quick else args.lambdas, 1e-3, 1.0)
    classifiers = ["logistic"] if args.quick else args.classifiers
    t_start = time.perf_counter()
    from cascadekit.demo import load_pool

    if "fashion-mnist" not in args.skip or "dag" not in args.skip or "early-exit" not in args.skip:
        pool = load_pool("fashion-mnist")
        zoo = pool.extra["zoo"]
        S, M, T = pool.names
        split_z = {s: pool.logits[s] for s in ("select", "test")}
        if "fashion-mnist" not in args.skip:
            corr = {s: (pool.correct(s, S), pool.correct(s, T)) for s in ("select", "test")}
            costs = np.array([pool.flops[S], pool.flops[T]])
            hid = {
                s: hidden_features(zoo.models[S], zoo.images[s], "body.1")[0]
                for s in ("select", "test")
            }
            comm, comm_flops = committee_logits(zoo)
            cf = {s: committee_features(pool.logits[s][S], comm[s]) for s in ("select", "test")}
            two_stage(
                "Fashion-MNIST MLP -> CNN teacher",
                {s: pool.logits[s][S] for s in ("select", "test")},
                corr,
                costs,
                {"hidden128": (hid, 0.0), "committee": (cf, comm_flops)},
                lams,
                classifiers,
            )
            print(
                f"  (committee member: MLP 784-64-10, {comm_flops:.0f} FLOPs = "
                f"{comm_flops / costs[0]:.2f}x the student, added to the student's cost)"
            )
        if "dag" not in args.skip:
            network_selection(
                "Fashion-MNIST",
                [S, M, T],
                split_z,
                {s: pool.labels[s] for s in ("select", "test")},
                np.array([pool.flops[S], pool.flops[M], pool.flops[T]]),
                lams,
            )
        if "early-exit" not in args.skip:
            early_exit(zoo, lams, args.heads_train)
    if "text" not in args.skip:
        text_pool(lams, classifiers)
    print(f"\ntotal {time.perf_counter() - t_start:.0f}s")


def text_pool(lams: np.ndarray, classifiers: Sequence[str]) -> None:
    from cascadekit.data import text as text_mod

    root = cache_root()
    if not any(root.glob("text-*/pool.npz")):
        print("\ntext pool: not cached (build it with benchmarks/text_pool.py); skipped")
        return
    try:
        tp = text_mod.load_text_pool()
    except Exception as exc:  # pragma: no cover - cache of another recipe
        print(f"\ntext pool: could not load from the cache ({exc}); skipped")
        return
    if not tp.from_cache:
        print("  (text pool was rebuilt)")
    names = list(tp.names)
    S, T = names[0], names[-1]
    y = {s: tp.labels[s] for s in ("select", "test")}
    z = {s: tp.logits[s] for s in ("select", "test")}
    corr = {s: (z[s][S].argmax(1) == y[s], z[s][T].argmax(1) == y[s]) for s in ("select", "test")}
    costs = np.array([tp.flops[S], tp.flops[T]])
    extras: dict[str, tuple[dict[str, np.ndarray], float]] = {}
    recipe = tp.info.get("recipe")
    if recipe is not None:
        emb_file = root / "text-embeddings" / f"{S}-{text_mod._embedding_key(recipe, S)}.npz"
        if emb_file.is_file():
            sizes = recipe["sizes"]
            bounds = np.cumsum([0] + [sizes[s] for s in text_mod.SPLITS])
            with np.load(emb_file, allow_pickle=False) as f:
                emb = f["embeddings"].astype(np.float64)
            sl = {
                s: slice(int(bounds[k]), int(bounds[k + 1])) for k, s in enumerate(text_mod.SPLITS)
            }
            extras["embedding"] = ({s: emb[sl[s]] for s in ("select", "test")}, 0.0)
    two_stage(
        f"Tweets {S} -> {T}", {s: z[s][S] for s in z}, corr, costs, extras, lams, classifiers[:1]
    )
    if len(names) == 3:
        network_selection("Tweets", names, z, y, np.array([tp.flops[m] for m in names]), lams)


if __name__ == "__main__":
    main()
