"""The command line on real saved logits (digits student/teacher): evaluate, calibrate, route."""

from __future__ import annotations

import json
import re
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
        "--n-resamples",
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
        (["--crossing"], "thresholds"),
        (["--max-accuracy-drop", "0.03", "--delta", "0.1"], "epsilon"),
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
    for k in ("thresholds", "teacher_share", "relative_cost", "accuracy"):
        assert k in doc
    if target[0] == "--teacher-share":
        assert doc["teacher_share"] == pytest.approx(0.3, abs=0.01)
    if target[0] == "--target-accuracy":
        assert doc["accuracy"] >= 0.9
    if target[0] == "--max-cost":
        assert doc["relative_cost"] <= 0.5
    if target[0] == "--max-accuracy-drop":
        assert doc["epsilon"] == 0.03 and doc["delta"] == pytest.approx(0.1)
        assert doc["n_calibration"] == 450 and doc["method"] == "trinomial"
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


def test_calibrate_guarantee_method_option(files: dict[str, Path]) -> None:
    shares = {}
    for method in ("trinomial", "betting", "binomial"):
        out = files["dir"] / f"cal-{method}.json"
        code, text = _run(
            "calibrate",
            files["calibrate_student"],
            files["calibrate_teacher"],
            "--labels",
            files["calibrate_labels"],
            "--score",
            "margin",
            "--max-accuracy-drop",
            "0.03",
            "--method",
            method,
            "--json",
            out,
        )
        assert code == 0, text
        doc = json.loads(out.read_text())
        assert doc["method"] == method
        shares[method] = doc["teacher_share"]
    assert shares["trinomial"] <= min(shares["betting"], shares["binomial"]) < 1.0
    code, text = _run(
        "calibrate",
        files["calibrate_student"],
        files["calibrate_teacher"],
        "--labels",
        files["calibrate_labels"],
        "--max-accuracy-drop",
        "0.03",
        "--method",
        "exact",
    )
    assert code != 0 and "Unknown guarantee method 'exact'" in text and "'trinomial'" in text


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
                "--max-accuracy-drop",
                "0.003",
                "--delta",
                "0.01",
                "--method",
                "binomial",
            ],
            r"probability 1 - delta = 0\.99 needs at least 1,533",
        ),
        (
            [
                "calibrate",
                "{calibrate_student}",
                "{calibrate_teacher}",
                "--labels",
                "{calibrate_labels}",
                "--max-accuracy-drop",
                "0.03",
                "--delta",
                "1.5",
            ],
            r"Expected delta strictly between 0 and 1; got 1\.5\. For example --delta 0\.1",
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


def _joined(text: str) -> str:
    return " ".join(text.split())


def test_label_free_targets_say_agreement(files: dict[str, Path]) -> None:
    s, t = files["calibrate_student"], files["calibrate_teacher"]
    code, text = _run("calibrate", s, t, "--label-free", "--target-accuracy", "0.9")
    assert code == 1
    assert re.search(r"--target-accuracy needs --labels: .* Pass --target-agreement", _joined(text))
    code, text = _run(
        "calibrate", s, t, "--labels", files["calibrate_labels"], "--target-agreement", "0.9"
    )
    assert code == 1 and "add --label-free" in _joined(text)
    out, router = files["dir"] / "agree.json", files["dir"] / "agree_router.json"
    code, text = _run(
        "calibrate",
        s,
        t,
        "--label-free",
        "--target-agreement",
        "0.95",
        "--score",
        "margin",
        "--json",
        out,
        "--save-router",
        router,
    )
    assert code == 0, text
    assert "teacher_accuracy" not in text and "accuracy_drop" not in text
    assert "agreement" in text and "not accuracy" in _joined(text)
    doc = json.loads(out.read_text())
    assert doc["measured_against"] == "agreement with the last stage"
    assert doc["agreement"] >= 0.95 and "accuracy" not in doc and "teacher_accuracy" not in doc
    assert doc["method"] == "agreement"
    cal = json.loads(router.read_text())["calibration"]
    assert cal["measured_against"] == "agreement with the last stage" and "agreement" in cal
    code, text = _run(
        "calibrate",
        s,
        t,
        "--labels",
        files["calibrate_labels"],
        "--target-accuracy",
        "0.9",
        "--score",
        "margin",
        "--json",
        out,
    )
    assert code == 0, text
    assert json.loads(out.read_text())["measured_against"] == "labels"


def _digits_csv(files: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    import pandas as pd

    z = np.load(files["test_student"])
    cols = [f"class_{k}" for k in range(z.shape[1])]
    df = pd.DataFrame(z, columns=cols)
    paths = {"reversed": tmp_path / "student_reversed.csv", "index": tmp_path / "student_index.csv"}
    df[cols[::-1]].to_csv(paths["reversed"], index=False)
    df.to_csv(paths["index"])  # pandas' default: the index as an unnamed first column
    df.insert(0, "id", np.arange(len(df)))
    paths["parquet"] = tmp_path / "student_id.parquet"
    df.to_parquet(paths["parquet"])
    return paths


def test_named_and_index_columns_on_the_command_line(
    files: dict[str, Path], tmp_path: Path
) -> None:
    csvs = _digits_csv(files, tmp_path)
    ref = tmp_path / "ref.json"
    base = ["--labels", files["test_labels"], "--score", "margin"]
    code, text = _run(
        "evaluate", files["test_student"], files["test_teacher"], *base, "--json", ref
    )
    assert code == 0, text
    acc = json.loads(ref.read_text())["stages"][0]["accuracy"]
    for name, note in [
        ("reversed", "put in numeric order"),
        ("index", "dropped column ''"),
        ("parquet", "dropped column 'id'"),
    ]:
        out = tmp_path / f"{name}.json"
        code, text = _run("evaluate", csvs[name], files["test_teacher"], *base, "--json", out)
        assert code == 0, text
        assert note in text
        rep = json.loads(out.read_text())
        assert rep["stages"][0]["accuracy"] == acc
        assert any(note in n for n in rep["notes"])


def test_class_count_mismatch_gets_command_line_advice(
    files: dict[str, Path], tmp_path: Path
) -> None:
    z = np.load(files["test_student"])
    np.save(tmp_path / "nine.npy", z[:, :9])
    code, text = _run(
        "evaluate", tmp_path / "nine.npy", files["test_teacher"], "--labels", files["test_labels"]
    )
    assert code == 1
    assert "nine.npy has 9, test_teacher.npy has 10 columns" in _joined(text)
    assert "class_map" not in text


def test_probability_files_are_said_to_be_probabilities(
    files: dict[str, Path], tmp_path: Path
) -> None:
    z = np.load(files["test_student"])
    p = np.exp(z - z.max(1, keepdims=True))
    np.save(tmp_path / "proba.npy", p / p.sum(1, keepdims=True))
    code, text = _run(
        "evaluate",
        tmp_path / "proba.npy",
        files["test_teacher"],
        "--labels",
        files["test_labels"],
        "--score",
        "margin",
    )
    assert code == 0, text
    assert "proba.npy: outputs are probabilities (rows sum to 1): using their logs" in _joined(text)


def test_binary_outputs_on_the_command_line(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    s = LogisticRegression(max_iter=500).fit(X[:300, :5], y[:300])
    t = RandomForestClassifier(n_estimators=30, random_state=0).fit(X[:300], y[:300])
    np.save(tmp_path / "s.npy", s.decision_function(X[300:, :5]))
    np.save(tmp_path / "t.npy", t.predict_proba(X[300:])[:, 1])
    np.save(tmp_path / "y.npy", y[300:])
    args = ["evaluate", tmp_path / "s.npy", tmp_path / "t.npy", "--labels", tmp_path / "y.npy"]
    code, text = _run(*args)
    assert code == 1 and "Say which with --binary decision or --binary probability" in _joined(text)
    code, text = _run(*args, "--binary", "probability", "--score", "margin")
    assert code == 1 and "use --binary decision" in _joined(text)  # s.npy is a decision function
    np.save(tmp_path / "s.npy", s.predict_proba(X[300:, :5])[:, 1])
    out = tmp_path / "b.json"
    code, text = _run(*args, "--binary", "probability", "--score", "margin", "--json", out)
    assert code == 0, text
    assert "read as a binary classifier's probability of class 1" in _joined(text)
    stages = json.loads(out.read_text())["stages"]
    assert stages[0]["accuracy"] == pytest.approx(s.score(X[300:, :5], y[300:]))
    assert stages[1]["accuracy"] == pytest.approx(t.score(X[300:], y[300:]))


def test_labels_key_and_text_labels_with_classes(files: dict[str, Path], tmp_path: Path) -> None:
    y = np.load(files["test_labels"])
    np.savez(tmp_path / "bundle.npz", logits=np.load(files["test_teacher"]), y=y)
    words = np.array([f"digit{k}" for k in range(10)])
    np.save(tmp_path / "words.npy", words[y])
    base = ["evaluate", files["test_student"], files["test_teacher"], "--score", "margin"]
    ref = tmp_path / "ref.json"
    assert _run(*base, "--labels", files["test_labels"], "--json", ref)[0] == 0
    out = tmp_path / "k.json"
    code, text = _run(
        *base, "--labels", tmp_path / "bundle.npz", "--labels-key", "y", "--json", out
    )
    assert code == 0, text
    assert json.loads(out.read_text())["stages"] == json.loads(ref.read_text())["stages"]
    code, text = _run(*base, "--labels", tmp_path / "words.npy")
    assert code == 1 and "--classes NAME,NAME,..." in _joined(text) and "classes=[" not in text
    code, text = _run(
        *base, "--labels", tmp_path / "words.npy", "--classes", ",".join(words), "--json", out
    )
    assert code == 0, text
    assert json.loads(out.read_text())["stages"] == json.loads(ref.read_text())["stages"]


def test_costs_assumed_equal_are_said_and_max_cost_names_the_option(files: dict[str, Path]) -> None:
    s, t = files["calibrate_student"], files["calibrate_teacher"]
    code, text = _run("evaluate", s, t, "--labels", files["calibrate_labels"], "--score", "margin")
    assert code == 0 and "costs assumed equal (1 per stage)" in _joined(text)
    code, text = _run(
        "evaluate",
        s,
        t,
        "--labels",
        files["calibrate_labels"],
        "--score",
        "margin",
        "--costs",
        "1,7",
    )
    assert code == 0 and "costs assumed equal" not in text
    code, text = _run("calibrate", s, t, "--labels", files["calibrate_labels"], "--max-cost", "0.5")
    assert code == 1
    assert re.search(
        r"--max-cost 0.5 is below the cheapest cascade: .* costs 1 of the last stage "
        r"alone with costs 1,1 \(assumed equal\)\. Pass .* --costs",
        _joined(text),
    )
    assert "max_relative_cost" not in text
    code, text = _run(
        "calibrate",
        s,
        t,
        "--labels",
        files["calibrate_labels"],
        "--max-cost",
        "0.1",
        "--costs",
        "1,7",
    )
    assert code == 1 and "alone with costs 1,7. Raise --max-cost to at least 0.1429." in _joined(
        text
    )


def test_threshold_outside_the_scores_range_is_a_note(files: dict[str, Path]) -> None:
    code, text = _run(
        "evaluate",
        files["test_student"],
        files["test_teacher"],
        "--labels",
        files["test_labels"],
        "--score",
        "margin",
        "--threshold",
        "1000",
        "--costs",
        "1,25",
    )
    assert code == 0, text
    assert re.search(
        r"note: Threshold 1000 of stage .* is above every margin score .* all of "
        r"them move on",
        _joined(text),
    )


def test_profile_fixed_batch_onnx_says_how_to_fix(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"]),
            helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        ],
        "fixed_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 8])],  # batch fixed at 2
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 10])],
        initializer=[
            numpy_helper.from_array(rng.normal(size=(64, 10)).astype(np.float32), "W"),
            numpy_helper.from_array(np.zeros(10, dtype=np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "fixed.onnx"
    onnx.save(model, str(path))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((64, 8, 8), dtype=np.float32))
    code, text = _run(
        "profile",
        f"student={path}",
        "--inputs",
        tmp_path / "x.npy",
        "--batch-sizes",
        "1,8",
        "--repeats",
        "1",
    )
    assert code == 1 and "Traceback" not in text
    assert re.search(
        r"fixed batch size of 2 .* cannot be timed at batch size 1, 8\. Export it with "
        r"a dynamic batch axis .* --batch-sizes 2\.",
        _joined(text),
    )
    code, text = _run(
        "profile",
        f"student={path}",
        "--inputs",
        tmp_path / "x.npy",
        "--batch-sizes",
        "2",
        "--repeats",
        "1",
    )
    assert code == 0, text


def test_the_command_needs_only_the_core_dependencies() -> None:
    """``pip install cascadekit`` gives a working command for saved logits: typer and rich are
    core dependencies, and importing the command pulls no optional one."""
    import subprocess
    import sys
    from pathlib import Path

    import tomllib

    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    core = {re.split(r"[<>=\[ ]", d)[0] for d in meta["project"]["dependencies"]}
    assert {"numpy", "scipy", "typer", "rich"} <= core
    optional = ["torch", "sklearn", "fastapi", "yaml", "matplotlib", "onnxruntime", "ray", "pandas"]
    code = f"import sys, cascadekit.cli; print(sorted(m for m in {optional!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_serve_teacher_only_needs_demo() -> None:
    res = runner.invoke(app, ["serve", "--teacher-only"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "--teacher-only goes with --demo" in " ".join(res.output.split())
