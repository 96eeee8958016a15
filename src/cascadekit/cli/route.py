"""``cascadekit route``: apply a router file to saved stage outputs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

if TYPE_CHECKING:
    pass

from ..errors import (
    ParameterError,
)
from .common import (
    BinaryOpt,
    ClassesOpt,
    JsonOpt,
    KeyOpt,
    LabelsKeyOpt,
    StagesArg,
    app,
    friendly,
    load_labels,
    load_stages,
    note_costs,
    out,
    parse_classes,
    write_json,
)

__all__ = ["route"]


@app.command()
@friendly
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
    labels_key: LabelsKeyOpt = None,
    classes: ClassesOpt = None,
    binary: BinaryOpt = None,
) -> None:
    """Apply a saved router to new saved logits: per-input stage and prediction."""
    from ..router import Router

    rt = Router.load(router)
    names_ = parse_classes(classes)
    mapped = any(m is not None for m in (rt.class_maps or []))
    outs = load_stages(stages, key, names_, binary, min_stages=1, same_classes=not mapped)
    y = None if labels is None else load_labels(labels, labels_key, names_)
    if rt.costs is None:
        note_costs(None)
    if rt.policy is not None and (features is not None or not _is_chain_policy(rt)):
        _route_policy(router, outs, features, y, json_out)  # a DAG, or extra feature columns
        return
    if features is not None:
        raise ParameterError("--features applies to learned routers only; this one uses a score.")
    result = rt.to_cascade(outs).route()  # a learned chain policy too: the same engine
    doc: dict[str, Any] = {
        "n_samples": int(result.stage.shape[0]),
        "thresholds": [None if math.isinf(t) and t > 0 else t for t in rt.thresholds],
        **({"score": "learned"} if rt.policy is not None else {}),
        "teacher_share": result.teacher_share,
        "relative_cost": result.relative_cost,
        "stage_shares": [float(v) for v in result.stage_shares],
        "stage": result.stage.tolist(),
        "prediction": result.predictions.tolist(),
    }
    if y is not None:
        doc["accuracy"] = result.accuracy(y)
    msg = f"routed {doc['n_samples']} inputs: teacher share {doc['teacher_share']:.3f}"
    if "accuracy" in doc:
        msg += f", accuracy {doc['accuracy']:.4f}"
    out.print(msg)
    write_json(doc, json_out)


def _is_chain_policy(rt: Any) -> bool:
    """A learned router that runs as a cascade (a chain on logit features alone)."""
    from ..policies import PolicyGraph

    policy = rt.policy or {}
    graph = PolicyGraph.from_dict(policy["graph"])
    return graph.is_chain and not (policy.get("features") or {}).get("n_extra")


def _route_policy(
    router: Path,
    outs: list[np.ndarray],
    features: Path | None,
    labels: np.ndarray | None,
    json_out: Path | None,
) -> None:
    from ..io import load_array
    from ..policies import load_policy_router

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
        doc["accuracy"] = float(np.mean(preds == labels))
    msg = f"routed {doc['n_samples']} inputs: teacher share {doc['teacher_share']:.3f}"
    if "accuracy" in doc:
        msg += f", accuracy {doc['accuracy']:.4f}"
    out.print(msg)
    write_json(doc, json_out)
