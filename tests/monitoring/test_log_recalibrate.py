"""The rotating JSONL log, recalibration proposals and the adaptive threshold."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cascadekit.calibration import guaranteed_threshold_label_free, min_calibration_size
from cascadekit.errors import InsufficientDataError, MonitorLogError, ParameterError
from cascadekit.monitoring import (
    AdaptiveThreshold,
    MonitorLog,
    audit_sample,
    propose_thresholds,
    read_log,
)


def test_log_round_trip_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "m.jsonl"
    log = MonitorLog(path, max_bytes=2048, backups=2)
    for i in range(60):
        log.route("a", 0.5, [float(i)], [i % 2])
        log.audit("a", math.inf, float(i), student=1, teacher=2, shadow=True)
    log.route("b", -math.inf, [1.0], [0], inputs=[[1, 2]])  # inputs not asked for: not logged
    log.close()
    assert (tmp_path / "sub" / "m.jsonl.1").exists() and (tmp_path / "sub" / "m.jsonl.2").exists()
    assert not (tmp_path / "sub" / "m.jsonl.3").exists()  # at most `backups` kept
    for f in tmp_path.joinpath("sub").iterdir():
        assert f.stat().st_size <= 2048
    recs = list(read_log(path))
    assert recs[-1]["model"] == "b" and recs[-1]["threshold"] == "-inf"
    assert "inputs" not in recs[-1]
    assert [r["score"] for r in recs if r["kind"] == "route" and r["model"] == "a"] == sorted(
        r["score"] for r in recs if r["kind"] == "route" and r["model"] == "a"
    )  # oldest first across the rotated files
    audits = [r for r in read_log(path, model="a") if r["kind"] == "audit"]
    assert audits[0]["threshold"] is None and audits[0]["shadow"] is True
    s, ps, pt, route = audit_sample(list(read_log(path, model="a")))
    assert s.shape == ps.shape == pt.shape == (len(audits),)
    assert set(ps.tolist()) == {1} and set(pt.tolist()) == {2} and route.size > 0


def test_log_inputs_only_when_asked(tmp_path: Path) -> None:
    log = MonitorLog(tmp_path / "m.jsonl", log_inputs=True)
    log.route("m", [0.5], [1.0, 2.0], [0, 1], inputs=np.array([[1.0], [2.0]]))
    log.close()
    (rec,) = read_log(tmp_path / "m.jsonl")
    assert rec["inputs"] == [[1.0], [2.0]] and rec["threshold"] == [0.5]


def test_log_skips_a_cut_last_line(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    log = MonitorLog(p)
    log.route("m", 0.0, [1.0], [0])
    log.close()
    with open(p, "a") as f:
        f.write('{"kind": "rou')
    assert len(list(read_log(p))) == 1


def test_log_rejects(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="max_bytes >= 1024"):
        MonitorLog(tmp_path / "x", max_bytes=10)
    with pytest.raises(ParameterError, match="backups >= 1"):
        MonitorLog(tmp_path / "x", backups=0)
    (tmp_path / "file").write_text("")
    with pytest.raises(MonitorLogError, match="Cannot open the monitoring log"):
        MonitorLog(tmp_path / "file" / "m.jsonl")
    log = MonitorLog(tmp_path / "m.jsonl")
    log.close()
    with pytest.raises(MonitorLogError, match="is closed"):
        log.route("m", 0.0, [1.0], [0])
    with pytest.raises(MonitorLogError, match="no such file.*monitoring.log"):
        list(read_log(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n{}\n")
    with pytest.raises(MonitorLogError, match="Line 1 of .* is not JSON"):
        list(read_log(bad))
    bad.write_text('{"kind": "other"}\n')
    with pytest.raises(MonitorLogError, match='"kind": "route" or "audit"'):
        list(read_log(bad))
    with pytest.raises(MonitorLogError, match="lacks a valid 'teacher' field"):
        audit_sample([{"kind": "audit", "score": 1.0, "student": 1}])


def _audits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.uniform(size=n)
    teacher = rng.integers(0, 10, size=n)
    student = np.where(rng.uniform(size=n) < 0.7 + 0.3 * s, teacher, (teacher + 1) % 10)
    return s, student, teacher


def test_proposal_is_the_label_free_guarantee() -> None:
    s, ps, pt = _audits(5000, 0)
    route = np.random.default_rng(1).uniform(size=50_000)
    p = propose_thresholds(s, ps, pt, 0.2, 0.05, 0.1, route_scores=route)
    from cascadekit.curves import threshold_grid

    ref = guaranteed_threshold_label_free(s, ps, pt, 0.05, 0.1, grid=threshold_grid(route, 100))
    assert p.new_threshold == ref.thresholds[0] and p.calibration.n_certified == ref.n_certified
    assert p.new_teacher_share == pytest.approx(np.mean(route < p.new_threshold))
    assert p.old_teacher_share == pytest.approx(np.mean(route < 0.2))
    # the old threshold keeps too much: its audited disagreement is above epsilon
    assert p.old_drop.disagreement > 0.05 and p.new_threshold > 0.2
    assert p.needed == min_calibration_size(0.05, 0.1, "binomial")
    d = p.to_dict()
    assert d["n_audits"] == 5000 and json.dumps(d)


def test_proposal_rejects() -> None:
    s, ps, pt = _audits(50, 2)
    with pytest.raises(InsufficientDataError, match="needs at least") as info:
        propose_thresholds(s, ps, pt, 0.5, 0.01, 0.05)
    assert info.value.needed == min_calibration_size(0.01, 0.05, "binomial")
    with pytest.raises(ParameterError, match="epsilon strictly between 0 and 1"):
        propose_thresholds(s, ps, pt, 0.5, 1.0, 0.05)
    with pytest.raises(ParameterError, match="old_threshold to be a number"):
        propose_thresholds(s, ps, pt, math.nan, 0.1, 0.05)


def test_adaptive_threshold_holds_the_budget_within_bounds() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=5000)
    a = AdaptiveThreshold(ref, budget=0.3, gamma=0.01)
    s = rng.normal(1.0, 1, size=10_000)
    deferred = []
    for v in s:
        d = bool(v < a.threshold)
        deferred.append(d)
        a.update([d])
    assert abs(np.mean(deferred[2000:]) - 0.3) < 0.03
    lo = AdaptiveThreshold(ref, budget=0.3, min_threshold=0.0, max_threshold=0.5)
    for _ in range(500):
        lo.update([True])  # everything deferred: the level falls, the threshold stops at 0
    assert lo.threshold == 0.0 and lo.level == 0.0


def test_adaptive_threshold_rejects() -> None:
    with pytest.raises(ParameterError, match="budget strictly between 0 and 1"):
        AdaptiveThreshold([0.0, 1.0], budget=0.0)
    with pytest.raises(ParameterError, match="gamma strictly between 0 and 1"):
        AdaptiveThreshold([0.0, 1.0], budget=0.2, gamma=2.0)
    with pytest.raises(ParameterError, match="min_threshold <= max_threshold"):
        AdaptiveThreshold([0.0, 1.0], budget=0.2, min_threshold=1.0, max_threshold=0.0)
