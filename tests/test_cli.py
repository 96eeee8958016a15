"""The command line on real saved logits (digits student/teacher): evaluate, calibrate, route."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

from cascadekit.cli import app
from cascadekit.data.digits import load_digits_pair
from cascadekit.schemas import load_schema

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("logits")
    pair = load_digits_pair()
    paths: dict[str, Path] = {}
    for split in ("calibrate", "test"):
        for model in ("student", "teacher"):
            p = d / f"{split}_{model}.npy"
            np.save(p, pair.logits[split][model])
            paths[f"{split}_{model}"] = p
        p = d / f"{split}_labels.npy"
        np.save(p, pair.labels[split])
        paths[f"{split}_labels"] = p
    # a 3-stage pool: add a middle model (the student at a different temperature would route
    # identically, so use the average of student and teacher logits: a real, distinct predictor)
    mid = 0.5 * (pair.logits["test"]["student"] + pair.logits["test"]["teacher"])
    np.save(d / "test_mid.npy", mid)
    paths["test_mid"] = d / "test_mid.npy"
    np.save(d / "test_teacher_labels.npy", np.argmax(pair.logits["test"]["teacher"], axis=1))
    paths["test_teacher_labels"] = d / "test_teacher_labels.npy"
    np.save(d / "short.npy", pair.logits["test"]["teacher"][:100])
    paths["short"] = d / "short.npy"
    paths["dir"] = d
    return paths


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def test_evaluate_two_stages_json_schema_and_plot(files: dict[str, Path]) -> None:
    out = files["dir"] / "eval.json"
    png = files["dir"] / "eval.png"
    code, text = _run(
        "evaluate",
        files["test_student"],
        files["test_teacher"],
        "--labels",
        files["test_labels"],
        "--costs",
        "1,25",
        "--score",
        "margin",
        "--threshold",
        "2.0",
        "--json",
        out,
        "--plot",
        png,
        "--max-points",
        "50",
        "--bootstrap",
        "50",
    )
    assert code == 0, text
    rep = json.loads(out.read_text())
    jsonschema.validate(rep, load_schema("evaluate"))
    curve = rep["curve"]
    assert len(curve) <= 50
    assert curve[0]["teacher_share"] == 0.0 and curve[-1]["threshold"] is None
    assert curve[0]["accuracy"] == pytest.approx(rep["stages"][0]["accuracy"])
    assert curve[-1]["accuracy"] == pytest.approx(rep["stages"][1]["accuracy"])
    assert rep["random_auc"] <= rep["auc"] <= rep["oracle_auc"]
    lo, hi = rep["bootstrap"]["auc"]
    assert lo <= rep["auc"] <= hi
    op = rep["operating_point"]
    assert 0 < op["teacher_share"] < 1
    assert op["relative_cost"] == pytest.approx((1 + 25 * op["teacher_share"]) / 25)
    assert png.stat().st_size > 10_000
    assert "speed-up" in text


def test_evaluate_all_scores_side_by_side(files: dict[str, Path]) -> None:
    out = files["dir"] / "all.json"
    code, text = _run(
        "evaluate",
        files["test_student"],
        files["test_teacher"],
        "--labels",
        files["test_labels"],
        "--score",
        "all",
        "--json",
        out,
    )
    assert code == 0, text
    rep = json.loads(out.read_text())
    jsonschema.validate(rep, load_schema("evaluate"))
    assert set(rep["scores"]) == {"energy", "max_softmax", "margin", "entropy", "max_logit"}
    for name in rep["scores"]:
        assert name in text


def test_evaluate_three_stages(files: dict[str, Path]) -> None:
    out = files["dir"] / "three.json"
    code, text = _run(
        "evaluate",
        files["test_student"],
        files["test_mid"],
        files["test_teacher"],
        "--labels",
        files["test_labels"],
        "--costs",
        "1,10,25",
        "--threshold",
        "3,2",
        "--json",
        out,
    )
    assert code == 0, text
    rep = json.loads(out.read_text())
    jsonschema.validate(rep, load_schema("evaluate"))
    assert len(rep["operating_point"]["threshold"]) == 2
    assert all(len(p["stage_shares"]) == 3 for p in rep["curve"])
    costs = [p["relative_cost"] for p in rep["curve"]]
    accs = [p["accuracy"] for p in rep["curve"]]
    # a Pareto set, plus the all-last-stage end, which a cheaper point may beat
    assert costs == sorted(costs) and accs[:-1] == sorted(accs[:-1])


def test_evaluate_labels_only_teacher(files: dict[str, Path]) -> None:
    code, text = _run(
        "evaluate",
        files["test_student"],
        files["test_teacher_labels"],
        "--labels",
        files["test_labels"],
    )
    assert code == 0, text


@pytest.mark.parametrize(
    ("target", "key"),
    [
        (["--teacher-share", "0.3"], "teacher_share"),
        (["--target-accuracy", "0.9"], "accuracy"),
        (["--max-cost", "0.5"], "relative_cost"),
        (["--crossing"], "threshold"),
        (["--max-accuracy-drop", "0.03", "--confidence", "0.9"], "epsilon"),
    ],
)
def test_calibrate_targets_then_route(files: dict[str, Path], target: list[str], key: str) -> None:
    out = files["dir"] / "cal.json"
    router = files["dir"] / "router.json"
    code, text = _run(
        "calibrate",
        files["calibrate_student"],
        files["calibrate_teacher"],
        "--labels",
        files["calibrate_labels"],
        "--costs",
        "1,25",
        "--score",
        "max_softmax",
        *target,
        "--json",
        out,
        "--save-router",
        router,
    )
    assert code == 0, text
    doc = json.loads(out.read_text())
    assert doc["score"] == "max_softmax" and key in doc
    for k in ("threshold", "teacher_share", "relative_cost", "accuracy"):
        assert k in doc
    if target[0] == "--teacher-share":
        assert doc["teacher_share"] == pytest.approx(0.3, abs=0.01)
    if target[0] == "--target-accuracy":
        assert doc["accuracy"] >= 0.9
    if target[0] == "--max-cost":
        assert doc["relative_cost"] <= 0.5
    if target[0] == "--max-accuracy-drop":
        assert doc["epsilon"] == 0.03 and doc["delta"] == pytest.approx(0.1)
        assert doc["n_calibration"] == 450
    jsonschema.validate(json.loads(router.read_text()), load_schema("router"))
    routed = files["dir"] / "routed.json"
    code, text = _run(
        "route",
        router,
        files["test_student"],
        files["test_teacher"],
        "--labels",
        files["test_labels"],
        "--json",
        routed,
    )
    assert code == 0, text
    r = json.loads(routed.read_text())
    assert len(r["stage"]) == len(r["prediction"]) == 450
    assert r["teacher_share"] == pytest.approx(np.mean(np.array(r["stage"]) == 1))
    assert 0 <= r["accuracy"] <= 1


def test_calibrate_label_free(files: dict[str, Path]) -> None:
    out = files["dir"] / "lf.json"
    code, text = _run(
        "calibrate",
        files["calibrate_student"],
        files["calibrate_teacher"],
        "--label-free",
        "--max-accuracy-drop",
        "0.05",
        "--json",
        out,
    )
    assert code == 0, text
    doc = json.loads(out.read_text())
    assert doc["label_free"] is True


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["evaluate", "{test_student}", "--labels", "{test_labels}"], "at least 2 stage files"),
        (
            [
                "evaluate",
                "{test_student}",
                "{test_teacher}",
                "--labels",
                "{calibrate_labels}",
                "--score",
                "energi",
            ],
            "Unknown score 'energi'",
        ),
        (
            [
                "evaluate",
                "{test_student}",
                "{test_teacher}",
                "--labels",
                "{test_labels}",
                "--costs",
                "1,-2",
            ],
            "non-negative costs",
        ),
        (
            [
                "evaluate",
                "{test_student}",
                "{test_teacher}",
                "--labels",
                "{test_labels}",
                "--costs",
                "1,x",
            ],
            "comma-separated numbers",
        ),
        (
            ["evaluate", "{test_student}", "{short}", "--labels", "{test_labels}"],
            "has 450 but 'short' has 100",
        ),
        (
            ["evaluate", "{test_student}", "{test_teacher}", "--labels", "{missing}"],
            "nothing is there",
        ),
        (
            ["evaluate", "{test_labels}", "{test_teacher}", "--labels", "{test_labels}"],
            "only the last stage may give labels",
        ),
        (
            [
                "calibrate",
                "{calibrate_student}",
                "{calibrate_teacher}",
                "--labels",
                "{calibrate_labels}",
            ],
            "exactly one target",
        ),
        (
            ["calibrate", "{calibrate_student}", "{calibrate_teacher}", "--teacher-share", "0.2"],
            "Expected --labels",
        ),
        (
            [
                "calibrate",
                "{calibrate_student}",
                "{calibrate_teacher}",
                "--labels",
                "{calibrate_labels}",
                "--max-accuracy-drop",
                "1.5",
            ],
            "between 0 and 1",
        ),
        (
            [
                "calibrate",
                "{calibrate_student}",
                "{calibrate_teacher}",
                "--labels",
                "{calibrate_labels}",
                "--target-accuracy",
                "0.999",
            ],
            "No threshold reaches",
        ),
        (["route", "{missing}", "{test_student}", "{test_teacher}"], "router file"),
    ],
)
def test_cli_errors_are_one_line_messages(
    files: dict[str, Path], args: list[str], match: str
) -> None:
    fmt = {k: str(v) for k, v in files.items()} | {"missing": str(files["dir"] / "nope.npy")}
    res = runner.invoke(app, [a.format(**fmt) for a in args])
    assert res.exit_code != 0
    assert "Traceback" not in res.output
    assert "error:" in res.output
    import re

    assert re.search(match, " ".join(res.output.split())), res.output


def test_profile_onnx_model(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from cascadekit.adapters import export_onnx

    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    export_onnx(module, torch.zeros(2, 8, 8), tmp_path / "s.onnx")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((64, 8, 8), dtype=np.float32))
    out = tmp_path / "p.json"
    code, text = _run(
        "profile",
        f"student={tmp_path / 's.onnx'}",
        "--inputs",
        tmp_path / "x.npy",
        "--batch-sizes",
        "1,32",
        "--repeats",
        "2",
        "--json",
        out,
    )
    assert code == 0, text
    doc = json.loads(out.read_text())
    assert doc["models"]["student"]["flops_per_input"] == 2 * 64 * 10
    code, text = _run("profile", "student", "--inputs", tmp_path / "x.npy")
    assert code == 1 and "Expected NAME=PATH" in text


def test_serve_reduced_needs_demo() -> None:
    res = runner.invoke(app, ["serve", "--reduced"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "--reduced goes with --demo" in " ".join(res.output.split())
