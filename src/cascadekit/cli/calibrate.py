"""``cascadekit calibrate`` (a router file from saved outputs and a target) and
``cascadekit recalibrate`` (a reviewable proposal from a production log)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.table import Table

if TYPE_CHECKING:
    from ..calibration import Target

from ..errors import (
    ParameterError,
)
from .common import (
    BinaryOpt,
    ClassesOpt,
    CostsOpt,
    JsonOpt,
    KeyOpt,
    LabelsKeyOpt,
    ScoreOpt,
    StagesArg,
    TempOpt,
    app,
    err,
    fmt,
    friendly,
    load_labels,
    load_stages,
    note,
    note_costs,
    out,
    parse_classes,
    parse_floats,
    write_json,
)

__all__ = ["calibrate", "recalibrate"]


@app.command()
@friendly
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
        float | None, typer.Option(help="Cheapest threshold reaching this accuracy (labels).")
    ] = None,
    target_agreement: Annotated[
        float | None,
        typer.Option(
            help="With --label-free: cheapest threshold whose answers agree with the last "
            "stage's on this share of inputs."
        ),
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option(help="Most accurate threshold within this relative cost.")
    ] = None,
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(help="Guarantee: accuracy drop vs the last stage at most epsilon."),
    ] = None,
    delta: Annotated[
        float,
        typer.Option(
            help="With --max-accuracy-drop: the risk level, the allowed probability that the "
            "guarantee fails (0.1: it holds with probability 0.9)."
        ),
    ] = 0.1,
    crossing: Annotated[
        bool, typer.Option(help="EBJR Fig. 4: where right/wrong score densities cross.")
    ] = False,
    label_free: Annotated[
        bool, typer.Option(help="Use agreement with the last stage instead of labels.")
    ] = False,
    method: Annotated[
        str,
        typer.Option(
            help="Guarantee test: auto (trinomial with labels, binomial label-free), "
            "trinomial, betting, binomial or hb."
        ),
    ] = "auto",
    json_out: JsonOpt = None,
    save_router: Annotated[
        Path | None, typer.Option(help="Save the router (JSON) for `cascadekit route`.")
    ] = None,
    key: KeyOpt = None,
    labels_key: LabelsKeyOpt = None,
    classes: ClassesOpt = None,
    binary: BinaryOpt = None,
) -> None:
    """Choose thresholds on calibration data for a target share, accuracy, cost or guarantee.

    Without labels (--label-free) correctness is agreement with the last stage: the target is
    --target-agreement, and the report says agreement, never accuracy.
    """
    from ..calibration import calibrate_outputs
    from ..router import Router

    names_ = parse_classes(classes)
    outs = load_stages(stages, key, names_, binary)
    chosen = [
        name
        for name, val in (
            ("--teacher-share", teacher_share),
            ("--target-accuracy", target_accuracy),
            ("--target-agreement", target_agreement),
            ("--max-cost", max_cost),
            ("--max-accuracy-drop", max_accuracy_drop),
            ("--crossing", crossing or None),
        )
        if val is not None
    ]
    if len(chosen) != 1:
        raise ParameterError(
            "Expected exactly one target: --teacher-share, --target-accuracy (or "
            "--target-agreement with --label-free), --max-cost, --max-accuracy-drop or "
            f"--crossing; got {len(chosen)} ({', '.join(chosen) or 'none'})."
        )
    if labels is None and not label_free:
        raise ParameterError(
            "Expected --labels with the true labels of the calibration data; got none. Pass "
            "--labels y.npy, or --label-free to calibrate on agreement with the last stage."
        )
    if label_free and labels is not None:
        raise ParameterError("Pass either --labels or --label-free, not both.")
    if label_free and target_accuracy is not None:
        raise ParameterError(
            "--target-accuracy needs --labels: without labels cascadekit measures agreement with "
            "the last stage, not accuracy. Pass --target-agreement A (the share of inputs "
            "answered as the last stage answers them), or --labels y.npy."
        )
    if target_agreement is not None and not label_free:
        raise ParameterError(
            "--target-agreement is the label-free target: add --label-free (and drop --labels), "
            "or use --target-accuracy with --labels."
        )
    if label_free:
        note(
            "label-free: 'agreement' is the share of inputs answered as the last stage answers "
            "them, not accuracy (the last stage's accuracy is unknown without labels)"
            + (
                "; the guarantee bounds the disagreement with the last stage, which bounds the "
                "accuracy drop from above"
                if max_accuracy_drop is not None
                else ""
            )
        )
    y = None if labels is None else load_labels(labels, labels_key, names_)
    cost_list = parse_floats(costs, "--costs")
    note_costs(cost_list)
    if max_cost is not None:
        c = [1.0] * len(outs) if cost_list is None else cost_list
        cheapest = c[0] / c[-1] if len(c) == len(outs) and c[-1] > 0 else None
        if cheapest is not None and max_cost < cheapest:
            raise ParameterError(
                f"--max-cost {max_cost:g} is below the cheapest cascade: answering every input "
                f"on the first stage costs {cheapest:.4g} of the last stage alone with costs "
                f"{','.join(f'{v:g}' for v in c)}"
                + (
                    " (assumed equal). Pass the stages' real costs with --costs (e.g. --costs "
                    "1,7), or raise --max-cost."
                    if cost_list is None
                    else f". Raise --max-cost to at least {cheapest:.4g}."
                )
            )
    target = _cli_target(
        teacher_share,
        target_accuracy if target_agreement is None else target_agreement,
        max_cost,
        max_accuracy_drop,
        delta,
        method,
        crossing,
    )
    if score == "auto":
        _calibrate_auto(outs, y, cost_list, stages, target, json_out, save_router)
        return
    result = calibrate_outputs(
        outs, y, target, costs=cost_list, score=score, temperature=temperature
    )
    doc = {"score": score, "temperature": temperature, **result.to_dict()}
    table = Table(title=f"Calibrated on {len(outs[0])} samples")
    table.add_column("field")
    table.add_column("value", justify="right")
    for k, v in doc.items():
        if k in ("grid", "p_values", "notes"):
            continue  # long lists: in the JSON only
        table.add_row(k, fmt(v) if not isinstance(v, list) else ", ".join(map(fmt, v)))
    out.print(table)
    write_json(doc, json_out)
    if save_router is not None:
        router = Router.from_calibration(
            result,
            score,
            temperature=temperature,
            costs=cost_list,
            stage_names=[p.stem for p in stages],
            calibration={k: v for k, v in doc.items() if k not in ("score", "temperature")},
        )
        router.save(save_router)
        err.print(f"wrote {save_router}", highlight=False)


def _cli_target(
    teacher_share: float | None,
    accuracy: float | None,
    max_cost: float | None,
    max_accuracy_drop: float | None,
    delta: float,
    method: str,
    crossing: bool,
) -> Target:
    """The one :class:`~cascadekit.calibration.Target` the calibrate options describe (the
    caller has checked that exactly one is given)."""
    from ..calibration import Target

    if teacher_share is not None:
        return Target("teacher_share", teacher_share)
    if accuracy is not None:
        return Target("accuracy", accuracy)
    if max_cost is not None:
        return Target("relative_cost", max_cost)
    if max_accuracy_drop is not None:
        return Target("accuracy_drop", max_accuracy_drop, delta=delta, method=method)
    assert crossing
    return Target("crossing")


def _calibrate_auto(
    outs: list[np.ndarray],
    y: np.ndarray | None,
    cost_list: list[float] | None,
    stages: list[Path],
    target: Target,
    json_out: Path | None,
    save_router: Path | None,
) -> None:
    """--score auto for calibrate: choose the router, then its threshold on rows it left."""
    from ..calibration import calibrate_cascade
    from ..policies import PolicyRouter, auto_select, save_policy_router
    from ..router import Router

    if y is None:
        raise ParameterError("--score auto needs --labels (it compares routers on accuracy).")
    if target.kind in ("accuracy_drop", "crossing"):
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
    result = calibrate_cascade([res.scores(z)], [cs, ct], target, costs=cost_list)
    threshold = result.thresholds[0]
    doc = {"score": res.name, "temperature": res.temperature, **result.to_dict()}
    doc["auto"] = res.to_dict()
    table = Table(title=f"--score auto on {len(outs[0])} samples (threshold on {rows.size})")
    table.add_column("router")
    table.add_column(f"{res.criterion} (cross-fitted)", justify="right")
    for c in res.candidates:
        table.add_row(c["name"] + (" *" if c["name"] == res.name else ""), fmt(c["mean"], 3))
    out.print(table)
    out.print(
        f"chosen {res.name}: threshold {fmt(threshold)}, teacher share "
        f"{result.teacher_share:.3f}, accuracy {result.accuracy:.4f}"
    )
    write_json(doc, json_out)
    if save_router is None:
        return
    cal = {k: v for k, v in doc.items() if k not in ("score", "temperature", "auto")}
    if res.router is not None:
        pol = res.router.policy
        pol.thresholds_ = [threshold, 0.0]
        save_policy_router(
            PolicyRouter(pol, res.router.spec, cal, [p.stem for p in stages]),
            save_router,
            allow_pickle=False,
        )
    else:
        Router.from_calibration(
            result,
            res.score,
            temperature=res.temperature,
            costs=cost_list,
            stage_names=[p.stem for p in stages],
            calibration=cal,
        ).save(save_router)
    err.print(f"wrote {save_router}", highlight=False)


@app.command()
@friendly
def recalibrate(
    log: Annotated[Path, typer.Argument(help="Monitoring log (JSONL) written by the server.")],
    router: Annotated[Path, typer.Option(help="The router file the server uses.")],
    max_accuracy_drop: Annotated[
        float, typer.Option(help="Guarantee: accuracy drop vs the teacher at most this.")
    ],
    delta: Annotated[float, typer.Option(help="Hold with probability 1 - delta.")] = 0.05,
    model: Annotated[
        str | None, typer.Option(help="Model in the log (needed when it holds several).")
    ] = None,
    save_router: Annotated[
        Path | None, typer.Option(help="Write the router with the new threshold here.")
    ] = None,
    apply: Annotated[
        str | None,
        typer.Option(
            help="Apply the new threshold on this server (http://host:port) through its admin "
            "API, which audits the change; the token comes from $CASCADEKIT_ADMIN_TOKEN."
        ),
    ] = None,
    json_out: JsonOpt = None,
) -> None:
    """Propose a new student threshold from the logged shadow audits, with the label-free
    guarantee; print old and new; apply it only when asked."""
    from ..monitoring.recalibrate import apply_thresholds, propose_from_log
    from ..router import Router

    rt = Router.load(router)
    if not rt.thresholds:
        raise ParameterError(f"The router {str(router)!r} has no threshold to recalibrate.")
    name, p = propose_from_log(log, rt.thresholds[0], max_accuracy_drop, delta, model=model)
    table = Table(title=f"recalibration of {name!r} ({p.n_audits:,} audits)")
    for col in ("", "threshold", "teacher share", "disagreement", f"upper bound ({1 - delta:g})"):
        table.add_column(col)
    table.add_row(
        "old",
        fmt(p.old_threshold),
        fmt(p.old_teacher_share),
        fmt(p.old_drop.disagreement),
        fmt(p.old_drop.upper),
    )
    table.add_row(
        "new",
        fmt(p.new_threshold),
        fmt(p.new_teacher_share),
        fmt(p.new_drop.disagreement),
        f"guaranteed <= {max_accuracy_drop:g}",
    )
    out.print(table)
    out.print(
        f"the new threshold keeps the accuracy drop against the teacher <= "
        f"{max_accuracy_drop:g} with probability >= {1 - delta:g} (label-free; certifying "
        f"anything needs >= {p.needed:,} audits)",
        highlight=False,
    )
    doc: dict[str, Any] = {"model": name, **p.to_dict(), "applied": False}
    new = [p.new_threshold, *rt.thresholds[1:]]
    if save_router is not None:
        rt.thresholds = new
        rt.calibration = {
            "method": "recalibrate",
            "label_free": True,
            "epsilon": p.epsilon,
            "delta": p.delta,
            "n_calibration": p.n_audits,
            "source": str(log),
        }
        rt.save(save_router)
        err.print(f"wrote {save_router}", highlight=False)
    if apply is not None:
        from ..serve.config import ADMIN_TOKEN_ENV

        answer = apply_thresholds(apply, name, new, os.environ.get(ADMIN_TOKEN_ENV))
        doc["applied"] = True
        doc["server"] = answer
        out.print(
            f"applied on {apply}: thresholds {answer.get('previous')} -> "
            f"{answer.get('thresholds')}",
            highlight=False,
        )
    else:
        out.print("not applied (pass --apply URL to apply it through the admin API)")
    write_json(doc, json_out)
