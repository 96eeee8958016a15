"""`cascadekit demo` end to end on real data: the report files and their real properties."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascadekit.cli import app

runner = CliRunner()


def _check_report(rep: dict, out: Path) -> None:
    t1 = {r["model"]: r for r in rep["table1"]}
    models = rep["models"]
    assert t1[models[-1]]["accuracy"] > t1[models[0]]["accuracy"]  # teacher beats student
    routers = {r["router"]: r for r in rep["routers_on_test"]}
    assert routers["random"]["gap_captured"] == 0.0 and routers["oracle"]["gap_captured"] == 1.0
    for r in rep["routers_on_test"]:
        assert r["random_auc"] - 1e-12 <= r["oracle_auc"]
        assert r["speedup_at_teacher_accuracy"] > 0
    op = rep["operating_point"]
    assert 0.0 <= op["teacher_share"] <= 1.0
    assert rep["chosen_router"]["chosen_on"] == "select"
    for name in ("report.json", "report.png", "report.html"):
        assert (out / name).stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Models and cascades" in html
    # the choice in words, not a Python dict; the knob starts at the operating point
    assert "keeps an input when its" in html and "{'score'" not in html
    knob = json.loads(re.search(r'id="knob-data">(.*?)</script>', html, re.S).group(1))
    assert knob["share"][knob["start"]] == pytest.approx(op["teacher_share"])
    assert knob["accuracy"][knob["start"]] == pytest.approx(op["accuracy"])


def test_demo_digits(tmp_path: Path) -> None:
    res = runner.invoke(app, ["demo", "digits", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "report.json").read_text())
    _check_report(rep, tmp_path)
    assert "McNemar" in res.output
    assert (tmp_path / "logits" / "test_student.npy").exists()


def test_demo_unknown_benchmark(tmp_path: Path) -> None:
    res = runner.invoke(app, ["demo", "cifar", "--out", str(tmp_path)])
    assert res.exit_code == 1
    assert "Unknown benchmark 'cifar'" in res.output


@pytest.mark.slow
def test_demo_fashion_mnist_reduced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADEKIT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    res = runner.invoke(app, ["demo", "fashion-mnist-reduced", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    _check_report(rep, out)
    assert len(rep["models"]) == 3 and "pool_frontier" in rep
    # the int8 teacher: a real quantized model, compiled, about as accurate, 3x+ smaller
    q = rep["quantized_teacher"]
    assert q["compiled"] is True, q["compile_error"]
    assert abs(q["accuracy_int8"] - q["accuracy_fp32"]) <= 0.02
    assert q["size_bytes"]["int8"] * 3 < q["size_bytes"]["fp32"]
    assert 2 * q["int8_macs"] == q["flops_fp32"]
    assert 0.0 <= q["cascade_int8"]["teacher_share"] <= 1.0
    t1 = {r["model"]: r for r in rep["table1"]}
    assert t1["teacher int8"]["accuracy"] == q["accuracy_int8"]
    assert "int8 teacher" in res.output
    # the student trained for the cascade: a row alone and a row routed to the teacher
    cs = rep["cascade_student"]
    assert not cs["from_cache"] and 0.0 <= cs["teacher_share"] <= 1.0
    assert t1[f"{cs['label']} (trained for the cascade)"]["flops"] < t1["teacher"]["flops"]
    assert f"cascade {cs['label']}->teacher (max_softmax)" in t1
    assert "student trained for the cascade" in res.output
    # the second run reads the int8 teacher from the cache: same figures, no recompilation
    res2 = runner.invoke(app, ["demo", "fashion-mnist-reduced", "--out", str(out)])
    assert res2.exit_code == 0, res2.output
    rep2 = json.loads((out / "report.json").read_text())
    assert rep2["cascade_student"]["from_cache"]
    assert rep2["cascade_student"]["accuracy"] == cs["accuracy"]
    assert rep2["quantized_teacher"]["latency_same_run_ms"] == json.loads(
        json.dumps(q["latency_same_run_ms"])
    )
