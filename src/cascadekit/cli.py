"""The ``cascadekit`` command line: a thin layer that parses arguments and calls the library.

Stage outputs are positional, one file per stage, in cascade order. Every user mistake ends with
a one-line message on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np

from .errors import CascadeError, MissingDependencyError, ParameterError

try:
    import typer
    from rich.console import Console
    from rich.table import Table
except ImportError as exc:  # pragma: no cover - only without the cli extra
    raise MissingDependencyError(
        'The cascadekit command needs typer and rich: pip install "cascadekit[cli]".'
    ) from exc

app = typer.Typer(
    name="cascadekit",
    help="Adaptive inference with model cascades: evaluate, calibrate and apply routers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(fn: F) -> F:
    """Turn a CascadeError into a one-line message and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CascadeError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    vals = []
    for part in text.split(","):
        p = part.strip().lower()
        try:
            vals.append(math.inf if p in ("inf", "+inf") else float(p))
        except ValueError:
            raise ParameterError(
                f"Expected {what} as comma-separated numbers (e.g. 1,7); got {text!r}."
            ) from None
    return vals


def _load_stages(paths: list[Path], key: str | None) -> list[np.ndarray]:
    from .io import load_array

    if len(paths) < 2:
        raise ParameterError(
            f"Expected at least 2 stage files (student first, teacher last); got {len(paths)}."
        )
    return [load_array(p, key=key) for p in paths]


def _write_json(doc: dict[str, Any], path: Path | None) -> None:
    if path is not None:
        path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        err.print(f"wrote {path}", highlight=False)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


StagesArg = Annotated[
    list[Path],
    typer.Argument(
        help="Saved outputs, one file per stage in cascade order (.npy/.npz/.csv/.parquet)."
    ),
]
CostsOpt = Annotated[
    str | None, typer.Option(help="Per-stage costs, comma-separated (default 1 each).")
]
KeyOpt = Annotated[str | None, typer.Option(help="Array name inside .npz files.")]
ScoreOpt = Annotated[
    str, typer.Option(help="Routing score: energy, max_softmax, margin, entropy, max_logit.")
]
TempOpt = Annotated[float, typer.Option(help="Temperature of the score.")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here.")]


@app.command()
@_friendly
def evaluate(
    stages: StagesArg,
    labels: Annotated[Path, typer.Option(help="True labels (1-D integers).")],
    costs: CostsOpt = None,
    score: Annotated[
        str, typer.Option(help="Routing score, or 'all' to compare every score side by side.")
    ] = "energy",
    temperature: TempOpt = 1.0,
    threshold: Annotated[
        str | None, typer.Option(help="Report the operating point here (t, or t1,t2 for N>2).")
    ] = None,
    json_out: JsonOpt = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of the curve.")] = None,
    max_points: Annotated[int, typer.Option(help="Downsample the curve to N points.")] = 200,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for 95% intervals.")] = 0,
    top_k: Annotated[int, typer.Option(help="Count a prediction right if in the top k.")] = 1,
    key: KeyOpt = None,
) -> None:
    """Trade-off curves of a cascade on saved logits: accuracy vs teacher share and cost."""
    from .io import load_array
    from .report import evaluate_all_scores, evaluate_report, plot_evaluation, stage_correctness
    from .scores import compute_score

    outs = _load_stages(stages, key)
    y = load_array(labels)
    cost_list = _floats(costs, "--costs")
    names = [p.stem for p in stages]
    if score == "auto":
        rep = _evaluate_auto(outs, y, cost_list, max_points, bootstrap, names, top_k)
        blocks = {rep["score"]: rep}
    elif score == "all":
        if threshold is not None:
            raise ParameterError("--threshold applies to one score; drop it with --score all.")
        rep = evaluate_all_scores(
            outs,
            y,
            costs=cost_list,
            temperature=temperature,
            max_points=max_points,
            bootstrap=bootstrap,
            names=names,
            top_k=top_k,
        )
        blocks = rep["scores"]
    else:
        rep = evaluate_report(
            outs,
            y,
            costs=cost_list,
            score=score,
            temperature=temperature,
            threshold=_floats(threshold, "--threshold"),
            max_points=max_points,
            bootstrap=bootstrap,
            names=names,
            top_k=top_k,
        )
        blocks = {score: rep}
    _print_stages(rep)
    table = Table(title=f"Routers on {rep['n_samples']} samples (higher is better)")
    for col in (
        "score",
        "auc",
        "gap captured",
        "apgr",
        "teacher share @ T acc",
        "speed-up @ T acc",
    ):
        table.add_column(col, justify="right")
    for name, b in blocks.items():
        table.add_row(
            name,
            _fmt(b["auc"]),
            _fmt(b["gap_captured"], 3),
            _fmt(b["apgr"], 3),
            _fmt(b["teacher_share_at_teacher_accuracy"], 3),
            _fmt(b["speedup_at_teacher_accuracy"], 2) + "x",
        )
    first = next(iter(blocks.values()))
    table.caption = (
        f"random auc {first['random_auc']:.4f}, oracle auc {first['oracle_auc']:.4f}; "
        "gap captured = share of the random-to-oracle gap"
    )
    out.print(table)
    if "operating_point" in rep:
        op = rep["operating_point"]
        out.print(
            f"operating point: threshold {op['threshold']}, teacher share "
            f"{op['teacher_share']:.3f}, accuracy {op['accuracy']:.4f}, relative cost "
            f"{op['relative_cost']:.3f}"
        )
    _write_json(rep, json_out)
    if plot is not None:
        ref = score if score not in ("all", "auto") else "energy"
        student_scores = compute_score(ref, outs[0], temperature)
        correct = stage_correctness([np.asarray(o) for o in outs[:1]], y, top_k=top_k)[0]
        plot_evaluation(rep, plot, student_scores=student_scores, student_correct=correct)
        err.print(f"wrote {plot}", highlight=False)


def _evaluate_auto(
    outs: list[np.ndarray],
    y: np.ndarray,
    costs: list[float] | None,
    max_points: int,
    bootstrap: int,
    names: list[str],
    top_k: int,
) -> dict[str, Any]:
    """--score auto: choose by cross-fitting (cascadekit.policies.auto_select), then report
    the chosen router; a learned one is scored out of fold, so no row judges its own model."""
    from .policies import auto_select
    from .report import evaluate_report

    res = auto_select(outs, y, costs)
    oof = res.out_of_fold
    if oof is None:
        score_arg: Any = res.score
    else:

        def score_arg(logits: Any, temperature: float = 1.0) -> np.ndarray:
            return oof

    rep = evaluate_report(
        outs,
        y,
        costs=costs,
        score=score_arg,
        temperature=res.temperature,
        max_points=max_points,
        bootstrap=bootstrap,
        names=names,
        top_k=top_k,
    )
    rep["score"] = res.name
    rep["auto"] = res.to_dict()
    return rep


def _print_stages(rep: dict[str, Any]) -> None:
    table = Table(title="Stages")
    for col in ("stage", "accuracy", "cost"):
        table.add_column(col, justify="right")
    for st in rep["stages"]:
        table.add_row(st["name"], _fmt(st["accuracy"]), _fmt(st["cost"], 3))
    out.print(table)


@app.command()
@_friendly
def calibrate(
    stages: StagesArg,
    labels: Annotated[
        Path | None, typer.Option(help="True labels; not needed with --label-free.")
    ] = None,
    costs: CostsOpt = None,
    score: ScoreOpt = "energy",
    temperature: TempOpt = 1.0,
    teacher_share: Annotated[
        float | None, typer.Option(help="Send this share of inputs to the last stage.")
    ] = None,
    target_accuracy: Annotated[
        float | None, typer.Option(help="Cheapest threshold reaching this accuracy.")
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option(help="Most accurate threshold within this relative cost.")
    ] = None,
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(help="Guarantee: accuracy drop vs the last stage at most epsilon."),
    ] = None,
    confidence: Annotated[
        float, typer.Option(help="With --max-accuracy-drop: hold with this probability.")
    ] = 0.9,
    crossing: Annotated[
        bool, typer.Option(help="EBJR Fig. 4: where right/wrong score densities cross.")
    ] = False,
    label_free: Annotated[
        bool, typer.Option(help="Use agreement with the last stage instead of labels.")
    ] = False,
    method: Annotated[
        str,
        typer.Option(
            help="Guarantee test: auto (betting with labels, binomial label-free), betting, "
            "binomial or hb."
        ),
    ] = "auto",
    json_out: JsonOpt = None,
    save_router: Annotated[
        Path | None, typer.Option(help="Save the router (JSON) for `cascadekit route`.")
    ] = None,
    key: KeyOpt = None,
) -> None:
    """Choose thresholds on calibration data for a target share, accuracy, cost or guarantee."""
    from .calibration import calibrate_outputs
    from .io import load_array
    from .router import Router

    outs = _load_stages(stages, key)
    chosen = [
        name
        for name, val in (
            ("--teacher-share", teacher_share),
            ("--target-accuracy", target_accuracy),
            ("--max-cost", max_cost),
            ("--max-accuracy-drop", max_accuracy_drop),
            ("--crossing", crossing or None),
        )
        if val is not None
    ]
    if len(chosen) != 1:
        raise ParameterError(
            "Expected exactly one target: --teacher-share, --target-accuracy, --max-cost, "
            f"--max-accuracy-drop or --crossing; got {len(chosen)} ({', '.join(chosen) or 'none'})."
        )
    if labels is None and not label_free:
        raise ParameterError(
            "Expected --labels with the true labels of the calibration data; got none. Pass "
            "--labels y.npy, or --label-free to calibrate on agreement with the last stage."
        )
    if label_free and labels is not None:
        raise ParameterError("Pass either --labels or --label-free, not both.")
    y = None if labels is None else load_array(labels)
    cost_list = _floats(costs, "--costs")
    if score == "auto":
        _calibrate_auto(
            outs,
            y,
            cost_list,
            stages,
            teacher_share,
            target_accuracy,
            max_cost,
            max_accuracy_drop,
            crossing,
            json_out,
            save_router,
            allow_pickle=False,
        )
        return
    result = calibrate_outputs(
        outs,
        y,
        costs=cost_list,
        score=score,
        temperature=temperature,
        teacher_share=teacher_share,
        target_accuracy=target_accuracy,
        max_relative_cost=max_cost,
        epsilon=max_accuracy_drop,
        delta=None if max_accuracy_drop is None else 1.0 - confidence,
        crossing=crossing,
        method=method,
    )
    doc = {"score": score, "temperature": temperature, **result.to_dict()}
    table = Table(title=f"Calibrated on {len(outs[0])} samples")
    table.add_column("field")
    table.add_column("value", justify="right")
    for k, v in doc.items():
        if k in ("grid", "p_values"):
            continue  # long lists: in the JSON only
        table.add_row(k, _fmt(v) if not isinstance(v, list) else ", ".join(map(_fmt, v)))
    out.print(table)
    _write_json(doc, json_out)
    if save_router is not None:
        th = result.threshold
        ths = [float(t) for t in th] if isinstance(th, (list, tuple)) else [float(th)]
        router = Router(
            score=score,
            temperature=temperature,
            thresholds=ths,
            costs=cost_list,
            stage_names=[p.stem for p in stages],
            calibration={k: v for k, v in doc.items() if k not in ("score", "temperature")},
        )
        router.save(save_router)
        err.print(f"wrote {save_router}", highlight=False)


def _calibrate_auto(
    outs: list[np.ndarray],
    y: np.ndarray | None,
    cost_list: list[float] | None,
    stages: list[Path],
    teacher_share: float | None,
    target_accuracy: float | None,
    max_cost: float | None,
    max_accuracy_drop: float | None,
    crossing: bool,
    json_out: Path | None,
    save_router: Path | None,
    *,
    allow_pickle: bool,
) -> None:
    """--score auto for calibrate: choose the router, then its threshold on rows it left."""
    from .calibration import calibrate_cascade
    from .policies import PolicyRouter, auto_select, save_policy_router
    from .router import Router

    if y is None:
        raise ParameterError("--score auto needs --labels (it compares routers on accuracy).")
    if max_accuracy_drop is not None or crossing:
        raise ParameterError(
            "--score auto chooses the router on the calibration data, so a guarantee or "
            "crossing threshold on the same data would be void. Choose the score on separate "
            "data, then calibrate it with --score NAME."
        )
    res = auto_select(outs, y, cost_list)
    rows = res.calibration_rows
    z = outs[0][rows]
    t_out = outs[-1][rows]
    t_pred = t_out if t_out.ndim == 1 else np.argmax(t_out, axis=1)
    cs, ct = np.argmax(z, axis=1) == y[rows], t_pred == y[rows]
    result = calibrate_cascade(
        [res.scores(z)],
        [cs, ct],
        cost_list,
        teacher_share=teacher_share,
        target_accuracy=target_accuracy,
        max_relative_cost=max_cost,
    )
    th = result.threshold
    threshold = float(th[0]) if isinstance(th, tuple) else float(th)
    doc = {"score": res.name, "temperature": res.temperature, **result.to_dict()}
    doc["auto"] = res.to_dict()
    table = Table(title=f"--score auto on {len(outs[0])} samples (threshold on {rows.size})")
    table.add_column("router")
    table.add_column(f"{res.criterion} (cross-fitted)", justify="right")
    for c in res.candidates:
        table.add_row(c["name"] + (" *" if c["name"] == res.name else ""), _fmt(c["mean"], 3))
    out.print(table)
    out.print(
        f"chosen {res.name}: threshold {_fmt(threshold)}, teacher share "
        f"{result.teacher_share:.3f}, accuracy {result.accuracy:.4f}"
    )
    _write_json(doc, json_out)
    if save_router is None:
        return
    cal = {k: v for k, v in doc.items() if k not in ("score", "temperature", "auto")}
    if res.router is not None:
        pol = res.router.policy
        pol.thresholds_ = [threshold, 0.0]
        save_policy_router(
            PolicyRouter(pol, res.router.spec, cal, [p.stem for p in stages]),
            save_router,
            allow_pickle=allow_pickle,
        )
    else:
        Router(
            score=res.score,
            temperature=res.temperature,
            thresholds=[threshold],
            costs=cost_list,
            stage_names=[p.stem for p in stages],
            calibration=cal,
        ).save(save_router)
    err.print(f"wrote {save_router}", highlight=False)


@app.command()
@_friendly
def route(
    router: Annotated[Path, typer.Argument(help="Router file from `calibrate --save-router`.")],
    stages: StagesArg,
    labels: Annotated[Path | None, typer.Option(help="True labels, to report accuracy.")] = None,
    json_out: JsonOpt = None,
    key: KeyOpt = None,
    features: Annotated[
        Path | None,
        typer.Option(help="Extra features (n, k) of a learned router that needs more than logits."),
    ] = None,
) -> None:
    """Apply a saved router to new saved logits: per-input stage and prediction."""
    from .io import load_array
    from .router import Router

    rt = Router.load(router)
    outs = [load_array(p, key=key) for p in stages]
    if rt.policy is not None:
        _route_policy(router, outs, features, labels, json_out)
        return
    if features is not None:
        raise ParameterError("--features applies to learned routers only; this one uses a score.")
    result = rt.to_cascade(outs).route()
    doc: dict[str, Any] = {
        "n_samples": int(result.stage.shape[0]),
        "thresholds": [None if math.isinf(t) and t > 0 else t for t in rt.thresholds],
        "teacher_share": result.teacher_share,
        "relative_cost": result.relative_cost,
        "stage_shares": [float(v) for v in result.stage_shares],
        "stage": result.stage.tolist(),
        "prediction": result.predictions.tolist(),
    }
    if labels is not None:
        doc["accuracy"] = result.accuracy(load_array(labels))
    msg = f"routed {doc['n_samples']} inputs: teacher share {doc['teacher_share']:.3f}"
    if "accuracy" in doc:
        msg += f", accuracy {doc['accuracy']:.4f}"
    out.print(msg)
    _write_json(doc, json_out)


def _route_policy(
    router: Path,
    outs: list[np.ndarray],
    features: Path | None,
    labels: Path | None,
    json_out: Path | None,
) -> None:
    from .io import load_array
    from .policies import load_policy_router

    pr = load_policy_router(router)
    extra = None if features is None else load_array(features)
    r, preds = pr.predict(outs, extra)
    doc: dict[str, Any] = {
        "n_samples": int(r.exit_node.shape[0]),
        "score": "learned",
        "teacher_share": r.teacher_share,
        "relative_cost": r.relative_cost,
        "stage_shares": [float(v) for v in r.node_shares],
        "stage": r.exit_node.tolist(),
        "prediction": preds.tolist(),
    }
    if labels is not None:
        doc["accuracy"] = float(np.mean(preds == load_array(labels)))
    msg = f"routed {doc['n_samples']} inputs: teacher share {doc['teacher_share']:.3f}"
    if "accuracy" in doc:
        msg += f", accuracy {doc['accuracy']:.4f}"
    out.print(msg)
    _write_json(doc, json_out)


@app.command()
@_friendly
def profile(
    models: Annotated[
        list[str], typer.Argument(help="NAME=PATH.onnx, one per model, in cascade order.")
    ],
    inputs: Annotated[Path, typer.Option(help="Real inputs (.npy) to time the models on.")],
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,32,256",
    repeats: Annotated[int, typer.Option(help="Timed passes per batch size.")] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed passes first.")] = 3,
    flops: Annotated[bool, typer.Option(help="Count FLOPs from the graph.")] = True,
    json_out: JsonOpt = None,
) -> None:
    """FLOPs per input and latency per batch size of ONNX models on real inputs."""
    from .io import load_array
    from .profiling import profile_models

    named = {}
    for spec in models:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ParameterError(
                f"Expected NAME=PATH for each model (e.g. student=student.onnx); got {spec!r}."
            )
        named[name] = path
    sizes = [int(b) for b in (_floats(batch_sizes, "--batch-sizes") or [])]
    doc = profile_models(
        named, load_array(inputs), sizes, repeats=repeats, warmup=warmup, flops=flops
    )
    table = Table(title="Cost per input")
    table.add_column("model")
    table.add_column("FLOPs", justify="right")
    for b in sizes:
        table.add_column(f"ms @ batch {b}", justify="right")
    for name, m in doc["models"].items():
        lat = {r["batch_size"]: r["seconds_per_input"] for r in m["latency"]}
        f = m.get("flops_per_input")
        table.add_row(
            name, "-" if f is None else f"{f:.3g}", *[f"{1e3 * lat[b]:.4f}" for b in sizes]
        )
    out.print(table)
    _write_json(doc, json_out)


@app.command()
@_friendly
def demo(
    benchmark: Annotated[
        str,
        typer.Argument(
            help="fashion-mnist (default; trains three torch models once, then cached), "
            "fashion-mnist-reduced, digits (seconds) or text (three pretrained encoders)."
        ),
    ] = "fashion-mnist",
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the report files.")] = Path(
        "cascadekit-report"
    ),
) -> None:
    """Run the embedded real benchmark end to end and write a report."""
    from .demo import run_demo

    run_demo(benchmark, out_dir, console=out)


@app.command()
@_friendly
def serve(
    config_file: Annotated[
        Path | None,
        typer.Argument(help="YAML file describing the cascade (models, score, thresholds...)."),
    ] = None,
    demo_model: Annotated[
        bool, typer.Option("--demo", help="Serve the Fashion-MNIST demo cascade.")
    ] = False,
    reduced: Annotated[
        bool,
        typer.Option(
            "--reduced",
            help="With --demo: the reduced zoo recipe (small splits, same networks; trains in "
            "about a minute on a new machine).",
        ),
    ] = False,
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default 127.0.0.1: loopback only).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000; 0 = any free).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    backend: Annotated[
        str,
        typer.Option(
            help="local (one process, uvicorn) or ray (Ray Serve: one deployment per stage "
            "plus a router, each scaled on its own)."
        ),
    ] = "local",
    ray_config: Annotated[
        Path | None,
        typer.Option(help="With --backend ray: a Ray Serve config file (examples/ray_serve.yaml)."),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="With --backend ray: Ray cluster address ('auto').")
    ] = None,
) -> None:
    """Serve a cascade over the Open Inference Protocol (KServe v2) with uvicorn or Ray Serve."""
    from .serve import ServeConfig, create_app, fashion_mnist_model, load_config, run
    from .serve.config import with_overrides

    if backend not in ("local", "ray"):
        raise ParameterError(f"Expected --backend local or ray; got {backend!r}.")
    if backend == "ray" and ray_config is not None:
        from .serve.ray import serve_from_cli

        serve_from_cli(None, ServeConfig(), ray_config=ray_config, address=ray_address)
        return
    if reduced and not demo_model:
        raise ParameterError("--reduced goes with --demo: `cascadekit serve --demo --reduced`.")
    if demo_model == (config_file is not None):
        raise ParameterError(
            "Expected either --demo or a config file: `cascadekit serve --demo` or "
            "`cascadekit serve config.yaml`."
        )
    if config_file is not None:
        served, config = load_config(config_file)
    else:
        served, config = fashion_mnist_model(reduced=reduced), ServeConfig()
    config = with_overrides(config, host=host, port=port)
    if backend == "ray":
        from .serve.ray import serve_from_cli

        serve_from_cli(served, config, address=ray_address)
        return
    run(create_app(served, config), config, log_level=log_level)


def main() -> None:
    """Entry point of the ``cascadekit`` command."""
    # torch's OpenMP threads spin while waiting, which makes a 2-core machine under any other
    # load 10-100x slower; passive waiting costs nothing when the machine is idle.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
