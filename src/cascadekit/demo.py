"""The embedded benchmark behind ``cascadekit demo``: real models, real data, honest splits.

Protocol (DESIGN.md, "keep choices and guarantees on separate data"):

1. **select** split: tune each score's temperature and pick the score to deploy (by the share of
   the random-to-oracle gap it captures);
2. **calibrate** split: choose thresholds (reach the teacher's accuracy; and a guaranteed
   threshold with the accuracy-drop guarantee), using data no choice has seen;
3. **test** split: every reported figure.

The benchmark is a :class:`~cascadekit.data.LogitPool` of saved logits per split and model, with
measured costs; scores are compared and chosen with :mod:`cascadekit.selection`. The digits pool
(scikit-learn's bundled data set, seconds) needs nothing beyond scikit-learn; the Fashion-MNIST
pool trains three torch models once and caches them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import calibration, curves, selection, stats
from ._validation import encode_threshold
from .data.pool import LogitPool
from .errors import CascadeError, InfeasibleTargetError, UnknownNameError
from .scores import compute_score, near_threshold

__all__ = ["BENCHMARKS", "evaluate_pool", "load_pool", "run_demo"]

BENCHMARKS = ("fashion-mnist", "digits", "fashion-mnist-reduced", "text")


Progress = Callable[[str, float], None]


def load_pool(benchmark: str, progress: Progress | None = None) -> LogitPool:
    """Load (training and caching if needed) the pool of ``benchmark``."""
    if benchmark == "digits":
        from .data.digits import load_digits_pair

        pair = load_digits_pair()
        return LogitPool(
            title="Handwritten digits (scikit-learn): logistic regression -> MLP",
            names=("student", "teacher"),
            logits={s: dict(v) for s, v in pair.logits.items()},
            labels=dict(pair.labels),
            flops=dict(pair.flops),
        )
    if benchmark in ("fashion-mnist", "fashion-mnist-reduced"):
        from .data.quantized import load_quantized_teacher
        from .data.zoo import load_fashion_mnist_zoo

        zoo = load_fashion_mnist_zoo(reduced=benchmark.endswith("reduced"), progress=progress)
        quantized = load_quantized_teacher(
            zoo,
            progress=None if progress is None else (lambda d, f: progress(d, 0.5 + 0.1 * f)),
        )
        from .training.zoo import train_zoo_student

        trained = train_zoo_student(
            zoo,
            progress=None if progress is None else (lambda d, f: progress(d, 0.55 + 0.05 * f)),
        )
        return LogitPool(
            title="Fashion-MNIST: MLP student -> CNN -> CNN teacher (trained here, cached)",
            names=tuple(zoo.names),
            logits={s: {m: zoo.logits[s][m] for m in zoo.names} for s in zoo.logits},
            labels=dict(zoo.labels),
            flops={m: float(zoo.flops[m]) for m in zoo.names},
            latency={m: dict(zoo.latency[m]) for m in zoo.names},
            extra={
                "trained": bool(zoo.trained),
                "zoo": zoo,
                "quantized": quantized,
                "cascade_student": trained,
            },
        )
    if benchmark == "text":
        from .data.text import load_text_pool

        tp = load_text_pool(
            progress=None if progress is None else (lambda d, i, n: progress(d, i / max(n, 1)))
        )
        return LogitPool(
            title="Tweet sentiment: MiniLM-L3 (ONNX) -> MiniLM-L6 -> MPNet-base, linear heads",
            names=tuple(tp.names),
            logits={s: {m: tp.logits[s][m] for m in tp.names} for s in tp.logits},
            labels=dict(tp.labels),
            flops={m: float(tp.flops[m]) for m in tp.names},
            latency={m: dict(tp.latency[m]) for m in tp.names},
        )
    raise UnknownNameError(
        f"Unknown benchmark {benchmark!r}; expected one of {', '.join(BENCHMARKS)}."
    )


def _curve_metrics(
    pool: LogitPool, split: str, score: str, temperature: float, costs: NDArray[Any]
) -> tuple[dict[str, Any], curves.Curve]:
    s_name, t_name = pool.names[0], pool.names[-1]
    scores = compute_score(score, pool.logits[split][s_name], temperature).astype(np.float64)
    cs, ct = pool.correct(split, s_name), pool.correct(split, t_name)
    curve = curves.cascade_curve(scores, cs, ct, costs=costs)
    return curves.summarize(curve, cs, ct, costs=costs), curve


def _router_rows(
    pool: LogitPool, costs: NDArray[Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Tune temperatures on select, report every router on test."""
    s_name, t_name = pool.names[0], pool.names[-1]
    sel = (pool.logits["select"][s_name], pool.correct("select", s_name))
    chosen = selection.compare_scores(*sel, pool.correct("select", t_name), costs)
    t1 = selection.tune_temperature("energy", *sel, pool.correct("select", t_name), costs,
                                    temperatures=[1.0])  # fmt: skip
    candidates = [("energy (T=1)", t1)] + [
        (f"{c.score} (T={c.temperature:.2f}, tuned)" if c.score == "energy" else c.score, c)
        for c in chosen
    ]
    rows = []
    for label, c in candidates:
        test, _ = _curve_metrics(pool, "test", c.score, c.temperature, costs)
        rows.append(
            {
                "router": label,
                "score": c.score,
                "temperature": c.temperature,
                "select_gap_captured": c.value,
                **{k: test[k] for k in _METRICS},
            }
        )
    best = max(rows, key=lambda r: r["select_gap_captured"])
    base = selection.baselines(pool.correct("test", s_name), pool.correct("test", t_name), costs)
    for name, gap in (("random", 0.0), ("oracle", 1.0)):
        rows.append(
            {
                "router": name,
                "score": name,
                "temperature": None,
                "select_gap_captured": gap,
                **{k: base[name][k] for k in _METRICS},
            }
        )
    return rows, best


_METRICS = (
    "auc",
    "random_auc",
    "oracle_auc",
    "gap_captured",
    "apgr",
    "teacher_share_at_teacher_accuracy",
    "speedup_at_teacher_accuracy",
)


def evaluate_pool(
    pool: LogitPool, *, epsilon: float = 0.005, delta: float = 0.1, progress: Progress | None = None
) -> dict[str, Any]:
    """Run the select / calibrate / test protocol on ``pool`` and return the report dict."""
    s_name, t_name = pool.names[0], pool.names[-1]
    costs = np.array([pool.flops[s_name], pool.flops[t_name]], dtype=np.float64)
    rows, best = _router_rows(pool, costs)
    score, temperature = best["score"], best["temperature"]
    if progress:
        progress("routers compared", 0.7)

    def split_scores(split: str) -> NDArray[np.float64]:
        return compute_score(score, pool.logits[split][s_name], temperature).astype(np.float64)

    cal_s = split_scores("calibrate")
    cal_cs, cal_ct = pool.correct("calibrate", s_name), pool.correct("calibrate", t_name)
    test_s = split_scores("test")
    test_cs, test_ct = pool.correct("test", s_name), pool.correct("test", t_name)

    def on_test(threshold: float) -> dict[str, Any]:
        keep = test_s >= threshold
        correct = np.where(keep, test_cs, test_ct)
        share = float(np.mean(~keep))
        return {
            "threshold": encode_threshold(threshold),
            # inputs whose score lies within numerical resolution of the threshold: which side
            # they fall on could depend on rounding (the batch they arrive in)
            "near_threshold_share": float(np.mean(near_threshold(test_s, threshold))),
            "teacher_share": share,
            "accuracy": float(np.mean(correct)),
            "flops": float(costs[0] + share * costs[1]),
            "relative_cost": float((costs[0] + share * costs[1]) / costs[1]),
            "_correct": correct,
        }

    target = float(np.mean(cal_ct))
    try:
        op_res = calibration.threshold_for_accuracy(cal_s, cal_cs, cal_ct, target, costs=costs)
        operating = on_test(op_res.thresholds[0])
        operating["numerical_margin"] = op_res.numerical_margin
    except InfeasibleTargetError:
        operating = on_test(math.inf)
    operating["rule"] = "cheapest threshold reaching the teacher's calibration accuracy"
    guaranteed: dict[str, Any]
    try:
        g = calibration.guaranteed_threshold(
            cal_s, cal_cs, cal_ct, epsilon=epsilon, delta=delta, costs=costs
        )
        guaranteed = on_test(g.thresholds[0])
        guaranteed.update(
            {
                "epsilon": epsilon,
                "delta": delta,
                "calibration_teacher_share": float(g.teacher_share),
                "test_accuracy_drop": float(np.mean(test_ct)) - guaranteed["accuracy"],
            }
        )
    except CascadeError as exc:
        guaranteed = {"epsilon": epsilon, "delta": delta, "error": str(exc)}

    significance = {}
    if "_correct" in operating:
        for other, corr in (("student", test_cs), ("teacher", test_ct)):
            significance[f"cascade_vs_{other}"] = stats.mcnemar(
                operating["_correct"], corr
            ).to_dict()
    for d in (operating, guaranteed):
        d.pop("_correct", None)

    table1 = []
    lat = pool.latency
    for name in pool.names:
        table1.append(
            {
                "model": name,
                "accuracy": pool.accuracy("test", name),
                "flops": pool.flops[name],
                **{f"latency_ms_b{b}": 1e3 * v for b, v in lat.get(name, {}).items()},
            }
        )
    casc_row: dict[str, Any] = {
        "model": f"cascade {s_name}->{t_name} ({score})",
        "accuracy": operating["accuracy"],
        "flops": operating["flops"],
    }
    for b in lat.get(s_name, {}):
        if b in lat.get(t_name, {}):
            casc_row[f"latency_ms_b{b}"] = 1e3 * (
                lat[s_name][b] + operating["teacher_share"] * lat[t_name][b]
            )
    table1.append(casc_row)

    report: dict[str, Any] = {
        "benchmark": pool.title,
        "splits": {s: len(pool.labels[s]) for s in ("select", "calibrate", "test")},
        "models": list(pool.names),
        "chosen_router": {"score": score, "temperature": temperature, "chosen_on": "select"},
        "table1": table1,
        "routers_on_test": rows,
        "operating_point": operating,
        "guaranteed": guaranteed,
        "significance": significance,
    }
    if "cascade_student" in pool.extra:
        report["cascade_student"] = _cascade_student(pool, table1)
    if "quantized" in pool.extra:
        report["quantized_teacher"] = _quantized(pool, score, temperature, table1)
    if len(pool.names) >= 3:
        report["pool_frontier"] = _frontier(pool, score, temperature)
    return report


def _cascade_student(pool: LogitPool, table1: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows for the student trained for the cascade (:mod:`cascadekit.training`), alone and
    routed to the teacher: max-softmax, temperature chosen on select, the threshold reaching the
    teacher's calibration accuracy; student latency measured here (the others: the zoo's)."""
    import torch

    from .costs import measure_latency

    st = pool.extra["cascade_student"]
    t_name = pool.names[-1]
    costs = np.array([st.flops, pool.flops[t_name]], dtype=np.float64)
    correct = {s: curves.correctness(st.logits[s], pool.labels[s]) for s in st.logits}
    t_correct = {s: pool.correct(s, t_name) for s in st.logits}
    temperature = selection.tune_temperature(
        "max_softmax", st.logits["select"], correct["select"], t_correct["select"], costs
    ).temperature
    sc = {s: compute_score("max_softmax", st.logits[s], temperature) for s in st.logits}
    target = float(np.mean(t_correct["calibrate"]))
    try:
        thr = calibration.threshold_for_accuracy(
            sc["calibrate"], correct["calibrate"], t_correct["calibrate"], target
        ).thresholds[0]
    except InfeasibleTargetError:
        thr = math.inf
    keep = sc["test"] >= thr
    share = float(np.mean(~keep))
    acc = float(np.mean(np.where(keep, correct["test"], t_correct["test"])))
    images = torch.from_numpy(np.asarray(pool.extra["zoo"].images["test"][:1024], np.float32))
    lat_t = pool.latency.get(t_name, {})

    def run(b: Any) -> Any:
        with torch.inference_mode():
            return st.result.model(b)

    lat = {b: measure_latency(run, images, int(b), repeats=10, warmup=2) for b in lat_t}
    table1.append(
        {
            "model": f"{st.label} (trained for the cascade)",
            "accuracy": float(np.mean(correct["test"])),
            "flops": float(st.flops),
            **{f"latency_ms_b{b}": 1e3 * v for b, v in lat.items()},
        }
    )
    table1.append(
        {
            "model": f"cascade {st.label}->{t_name} (max_softmax)",
            "accuracy": acc,
            "flops": float(costs[0] + share * costs[1]),
            **{f"latency_ms_b{b}": 1e3 * (lat[b] + share * lat_t[b]) for b in lat},
        }
    )
    return {
        "name": st.name,
        "label": st.label,
        "recipe": st.recipe,
        "from_cache": bool(st.result.from_cache),
        "temperature": temperature,
        "gap_captured": selection.criterion_value(
            sc["test"], correct["test"], t_correct["test"], costs
        ),
        "threshold": None if math.isinf(thr) else thr,
        "teacher_share": share,
        "accuracy": acc,
        "speedup_flops": float(costs[1] / (costs[0] + share * costs[1])),
    }


def _quantized(
    pool: LogitPool, score: str, temperature: float, table1: list[dict[str, Any]]
) -> dict[str, Any]:
    """Rows for the int8 teacher and the cascade student -> int8 teacher (appended to table1).

    The cascade's threshold is chosen on the calibrate split by the same rule as the float
    cascade (cheapest threshold reaching the int8 teacher's calibration accuracy); latencies of
    the student, the float teacher and the int8 teacher come from one run, so ratios are fair.
    """
    q = pool.extra["quantized"]
    s_name, t_name = pool.names[0], pool.names[-1]
    lat = q.latency
    batches = sorted(set(lat["student"]) & set(lat["int8"]) & set(lat["fp32"]))
    table1.append(
        {
            "model": f"{t_name} int8",
            "accuracy": q.accuracy("test"),
            "flops": None,
            "int8_macs": q.int8_macs,
            "size_mb": q.size_bytes["int8"] / 1e6,
            **{f"latency_ms_b{b}": 1e3 * lat["int8"][b] for b in batches},
        }
    )
    for row in table1:
        if row["model"] == t_name:
            row["size_mb"] = q.size_bytes["fp32"] / 1e6
    sc = {
        s: compute_score(score, pool.logits[s][s_name], temperature).astype(np.float64)
        for s in ("calibrate", "test")
    }
    q_correct = {s: curves.correctness(q.logits[s], pool.labels[s]) for s in ("calibrate", "test")}
    cal_cs = pool.correct("calibrate", s_name)
    target = float(np.mean(q_correct["calibrate"]))
    try:
        thr = calibration.threshold_for_accuracy(
            sc["calibrate"], cal_cs, q_correct["calibrate"], target
        ).thresholds[0]
    except InfeasibleTargetError:
        thr = math.inf
    keep = sc["test"] >= thr
    share = float(np.mean(~keep))
    acc = float(np.mean(np.where(keep, pool.correct("test", s_name), q_correct["test"])))
    casc_lat = {b: lat["student"][b] + share * lat["int8"][b] for b in batches}
    table1.append(
        {
            "model": f"cascade {s_name}->{t_name} int8 ({score})",
            "accuracy": acc,
            "flops": pool.flops[s_name],
            "int8_macs": share * q.int8_macs,
            **{f"latency_ms_b{b}": 1e3 * casc_lat[b] for b in batches},
        }
    )
    return {
        "recipe": q.recipe,
        "compiled": q.compiled,
        "compile_error": q.compile_error,
        "accuracy_fp32": pool.accuracy("test", t_name),
        "accuracy_int8": q.accuracy("test"),
        "int8_macs": q.int8_macs,
        "flops_fp32": q.flops_fp32,
        "size_bytes": q.size_bytes,
        "latency_same_run_ms": {k: {b: 1e3 * v[b] for b in batches} for k, v in lat.items()},
        "int8_speedup_over_fp32": {b: lat["fp32"][b] / lat["int8"][b] for b in batches},
        "cascade_int8": {
            "threshold": None if math.isinf(thr) else thr,
            "teacher_share": share,
            "accuracy": acc,
            "latency_ms": {b: 1e3 * v for b, v in casc_lat.items()},
            "speedup_over_int8_teacher": {b: lat["int8"][b] / casc_lat[b] for b in batches},
            "speedup_over_fp32_teacher": {b: lat["fp32"][b] / casc_lat[b] for b in batches},
        },
    }


def _frontier(pool: LogitPool, score: str, temperature: float) -> dict[str, Any]:
    front = curves.pool_frontier(
        [pool.logits["test"][m] for m in pool.names],
        pool.labels["test"],
        costs=[pool.flops[m] for m in pool.names],
        names=pool.names,
        score=score,
        temperature=temperature,
    )
    return front.to_dict()


def run_demo(benchmark: str, out_dir: Path, console: Any = None) -> dict[str, Any]:
    """Run ``benchmark`` end to end and write report.json, report.png and report.html."""
    from rich.progress import Progress as RichProgress

    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with RichProgress(transient=True) as bar:
        task = bar.add_task(f"{benchmark}: loading models", total=1.0)

        def progress(desc: str, frac: float) -> None:
            bar.update(task, description=f"{benchmark}: {desc}", completed=min(frac, 1.0))

        pool = load_pool(benchmark, progress=progress)
        progress("comparing routers", 0.6)
        report = evaluate_pool(pool, progress=progress)
        progress("writing report", 0.95)
    report["seconds"] = time.perf_counter() - start
    _save_logits(pool, out_dir / "logits")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    _plots(pool, report, out_dir / "report.png")
    _html(pool, report, out_dir)
    if console is not None:
        _print(report, console)
        console.print(
            f"report: {out_dir}/report.json, report.png, report.html; saved logits and labels "
            f"per split in {out_dir}/logits/"
        )
    return report


def _save_logits(pool: LogitPool, folder: Path) -> None:
    """Save every split's logits and labels as .npy, for `cascadekit evaluate` and friends."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, per_model in pool.logits.items():
        if split not in pool.labels:
            continue
        np.save(folder / f"{split}_labels.npy", pool.labels[split])
        for name, logits in per_model.items():
            np.save(folder / f"{split}_{name}.npy", np.asarray(logits))


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _plots(pool: LogitPool, report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import format_count, plot_score_histogram

    s_name, t_name = pool.names[0], pool.names[-1]
    costs = np.array([pool.flops[s_name], pool.flops[t_name]])
    chosen = report["chosen_router"]
    fig, (ax, hx) = plt.subplots(1, 2, figsize=(13, 5.4))
    for row in report["routers_on_test"]:
        if row["score"] in ("random", "oracle") or row["router"].startswith("energy (T=1)"):
            continue
        _, curve = _curve_metrics(pool, "test", row["score"], row["temperature"], costs)
        is_chosen = row["score"] == chosen["score"]
        ax.plot(
            curve.relative_cost * costs[1],
            curve.accuracy,
            lw=2.4 if is_chosen else 1.1,
            alpha=1.0 if is_chosen else 0.7,
            label=row["router"] + (" (chosen)" if is_chosen else ""),
        )
    _, e1 = _curve_metrics(pool, "test", "energy", 1.0, costs)
    ax.plot(e1.relative_cost * costs[1], e1.accuracy, lw=1.1, ls="-.", label="energy (T=1)")
    acc = {m: pool.accuracy("test", m) for m in pool.names}
    ax.plot([costs[0], costs.sum()], [acc[s_name], acc[t_name]], "k--", lw=1, label="random")
    cs, ct = pool.correct("test", s_name), pool.correct("test", t_name)
    q = float(np.mean(~cs & ct))
    ks = np.array([0.0, q, 1.0])
    ax.plot(
        costs[0] + ks * costs[1], acc[s_name] + np.minimum(ks, q), ":", c="grey", label="oracle"
    )
    for m in pool.names:
        ax.scatter([pool.flops[m]], [acc[m]], zorder=5, c="black", s=14)
        ax.annotate(m, (pool.flops[m], acc[m]), textcoords="offset points", xytext=(4, -12))
    op = report["operating_point"]
    ax.scatter([op["flops"]], [op["accuracy"]], zorder=6, c="#dd5555", edgecolors="black", s=60)
    ax.annotate(
        "operating point",
        (op["flops"], op["accuracy"]),
        textcoords="offset points",
        xytext=(-20, 10),
        ha="right",
    )
    ax.set_ylim(min(acc.values()) - 0.01, max(acc[s_name] + q, acc[t_name]) + 0.005)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: format_count(v)))
    ax.set_xlabel("FLOPs per input")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy against cost (test split)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)
    sc = compute_score(chosen["score"], pool.logits["test"][s_name], chosen["temperature"])
    th = report["operating_point"]["threshold"]
    plot_score_histogram(
        hx,
        sc,
        cs,
        th if isinstance(th, float | int) else None,
        label=f"student's {chosen['score']} score",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _html(pool: LogitPool, report: dict[str, Any], out_dir: Path) -> None:
    from .report import (
        Section,
        describe_router,
        format_count,
        format_ratio,
        threshold_knob_html,
        write_html,
    )

    s_name, t_name = pool.names[0], pool.names[-1]
    costs = np.array([pool.flops[s_name], pool.flops[t_name]])
    chosen, op, splits = report["chosen_router"], report["operating_point"], report["splits"]
    t1 = report["table1"]
    acc = {r["model"]: r["accuracy"] for r in t1}
    th = op["threshold"] if isinstance(op["threshold"], float | int) else None

    def ms(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * float(v):.1f}%"

    notes = [
        report["benchmark"] + ".",
        describe_router(chosen["score"], chosen["temperature"], th, student=s_name, teacher=t_name)
        + f" The score and its temperature were chosen on the select split ({splits['select']:,}"
        " images) as the best share of the random-to-oracle gap captured; the threshold is the "
        f"{op['rule']} on the calibrate split ({splits['calibrate']:,}); every figure below is "
        f"measured on the test split ({splits['test']:,}).",
        f"On the test split the cascade is {op['accuracy']:.4f} accurate ({s_name} "
        f"{acc.get(s_name, float('nan')):.4f}, {t_name} {acc.get(t_name, float('nan')):.4f}) and "
        f"sends {pct(op['teacher_share'])} of the images on to the {t_name}: "
        f"{format_count(op['flops'], 'FLOPs')} per image instead of "
        f"{format_count(pool.flops[t_name], 'FLOPs')}, {format_ratio(1 / op['relative_cost'])} "
        f"fewer. Run time {report.get('seconds', 0):.1f} s.",
    ]
    _, curve = _curve_metrics(pool, "test", chosen["score"], chosen["temperature"], costs)
    knob = threshold_knob_html(
        curve, teacher_cost=float(costs[1]), start_share=float(op["teacher_share"])
    )
    lat_cols = sorted({k for r in t1 for k in r if k.startswith("latency")})
    routers = report["routers_on_test"]
    g = report["guaranteed"]
    sections = [
        Section(
            "Models and cascades",
            "Each row is one model alone or a cascade at its operating point, on the test split. "
            "A cascade's FLOPs count every stage an input actually ran; latencies were measured "
            "on this machine at batch 1 and 256 and vary between runs, accuracies and FLOPs do "
            "not.",
            ["model", "accuracy", "FLOPs per input", "int8 MACs", "size (MB)"]
            + [c.replace("latency_ms_b", "ms at batch ") for c in lat_cols],
            [
                [
                    r["model"],
                    f"{r['accuracy']:.4f}",
                    format_count(r.get("flops")),
                    format_count(r.get("int8_macs")),
                    "-" if r.get("size_mb") is None else f"{r['size_mb']:.3g}",
                    *[ms(r.get(c)) for c in lat_cols],
                ]
                for r in t1
            ],
        ),
        Section(
            "Every score side by side",
            "Each row routes the same student and teacher by a different score. Gap captured "
            "places its curve between the random router (0) and the oracle (1); the last two "
            "columns are read at the cheapest threshold that reaches the teacher's accuracy. "
            "Temperatures and the choice were made on the select split, these figures on test.",
            [
                "router",
                "AUC",
                "gap captured",
                "teacher share at the teacher's accuracy",
                "speed-up at the teacher's accuracy",
            ],
            [
                [
                    r["router"],
                    f"{r['auc']:.4f}",
                    "-" if r["gap_captured"] is None else f"{r['gap_captured']:.3f}",
                    pct(r["teacher_share_at_teacher_accuracy"]),
                    format_ratio(r["speedup_at_teacher_accuracy"]),
                ]
                for r in routers
            ],
        ),
        Section(
            "A threshold with a guarantee",
            f"Learn-then-Test certified, on the calibrate split, that the cascade loses at most "
            f"{100 * float(g.get('epsilon', 0)):.1f} points of accuracy against the teacher with "
            f"probability at least {1 - float(g.get('delta', 0)):.0%} over the calibration draw. "
            "The test row shows how the promise held on this one draw.",
            ["", "threshold", "teacher share", "accuracy", "accuracy drop", "FLOPs per input"],
            [
                [
                    "calibrate split",
                    "-" if g.get("threshold") is None else f"{g['threshold']:.4g}",
                    pct(g.get("calibration_teacher_share")),
                    "-",
                    "-",
                    "-",
                ],
                [
                    "test split",
                    "-" if g.get("threshold") is None else f"{g['threshold']:.4g}",
                    pct(g.get("teacher_share")),
                    "-" if g.get("accuracy") is None else f"{g['accuracy']:.4f}",
                    "-"
                    if g.get("test_accuracy_drop") is None
                    else f"{100 * g['test_accuracy_drop']:.2f} points",
                    format_count(g.get("flops")),
                ],
            ],
        ),
        Section(
            "Does the cascade differ from each model? (McNemar)",
            "b counts the test images the cascade gets right and the other model wrong, c the "
            "reverse; the exact p-value says how likely so uneven a split would be if the two "
            "were equally accurate (b = c = 0: they answered every image alike).",
            ["comparison", "b", "c", "p (exact)", "odds ratio b/c"],
            [
                [
                    k.replace("_", " "),
                    f"{v['b']:,}",
                    f"{v['c']:,}",
                    f"{v['p_exact']:.2g}",
                    "-" if v["odds_ratio"] is None else f"{v['odds_ratio']:.3g}",
                ]
                for k, v in report["significance"].items()
            ],
        ),
    ]
    write_html(
        out_dir / "report.html",
        "cascadekit demo",
        sections,
        [out_dir / "report.png"],
        notes,
        knob=knob,
    )


def _print(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    t = Table(title=f"Table 1: {report['benchmark']} (test split)")
    cols = ("model", "accuracy", "FLOPs", "int8 MACs", "size (MB)", "ms b1", "ms b256")
    for col in cols:
        t.add_column(col, justify="right")
    for r in report["table1"]:
        t.add_row(
            r["model"],
            f"{r['accuracy']:.4f}",
            _g(r.get("flops")),
            _g(r.get("int8_macs")),
            _g(r.get("size_mb")),
            _ms(r.get("latency_ms_b1")),
            _ms(r.get("latency_ms_b256")),
        )
    console.print(t)
    if "quantized_teacher" in report:
        q = report["quantized_teacher"]
        sp = q["int8_speedup_over_fp32"]
        c = q["cascade_int8"]
        console.print(
            f"int8 teacher ({q['recipe']}{'' if q['compiled'] else ', NOT compiled'}): "
            f"accuracy {q['accuracy_int8']:.4f} vs {q['accuracy_fp32']:.4f} float; "
            + ", ".join(f"{v:.2f}x faster at batch {b}" for b, v in sp.items())
            + "; cascade with it: "
            + ", ".join(
                f"{v:.2f}x faster than the int8 teacher at batch {b}"
                for b, v in c["speedup_over_int8_teacher"].items()
            )
            + f" (teacher share {c['teacher_share']:.3f}; latencies measured in one run)"
        )
    if "cascade_student" in report:
        cs = report["cascade_student"]
        console.print(
            f"student trained for the cascade ({cs['name']}; cascadekit.training): gap captured "
            f"{cs['gap_captured']:.3f}, {cs['speedup_flops']:.2f}x fewer FLOPs than the teacher "
            f"at the threshold calibrated for its accuracy (test accuracy {cs['accuracy']:.4f}, "
            f"teacher share {cs['teacher_share']:.3f})"
        )
    t2 = Table(title="Routers side by side (test split)")
    for col in ("router", "AUC", "gap captured", "teacher share @ T acc", "speed-up @ T acc"):
        t2.add_column(col, justify="right")
    for r in report["routers_on_test"]:
        t2.add_row(
            r["router"],
            f"{r['auc']:.4f}",
            f"{r['gap_captured']:.3f}",
            f"{r['teacher_share_at_teacher_accuracy']:.3f}",
            f"{r['speedup_at_teacher_accuracy']:.2f}x",
        )
    console.print(t2)
    op = report["operating_point"]
    margin = op.get("numerical_margin")
    console.print(
        f"operating point: threshold {op['threshold']} (numerical margin "
        f"{'-' if margin is None else f'{margin:.3g}'}), "
        f"{op['near_threshold_share']:.2%} of test inputs within numerical resolution of it"
    )
    g = report["guaranteed"]
    if "error" in g:
        console.print(f"guaranteed calibration: {g['error']}")
    else:
        console.print(
            f"guaranteed (drop <= {g['epsilon']}, prob >= {1 - g['delta']:.2f}): teacher share "
            f"{g['teacher_share']:.3f}, test accuracy {g['accuracy']:.4f}, test drop "
            f"{g['test_accuracy_drop']:+.4f}"
        )
    for k, v in report["significance"].items():
        console.print(
            f"McNemar {k}: b={v['b']} c={v['c']} p_exact={_g(v['p_exact'])} "
            f"odds ratio={_g(v['odds_ratio'])}"
        )


def _g(v: float | None) -> str:
    """Short number, '-' for None (an infinite odds ratio is written as null)."""
    return "-" if v is None else f"{v:.3g}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"
