"""Monitoring in the server: the status endpoint, metrics, shadow audits and the log, on the real
Fashion-MNIST cascade."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import app_client, make_served
from serve_helpers import FaultyModel, reference

from cascadekit.monitoring import read_log
from cascadekit.monitoring.serving import MonitorSettings
from cascadekit.scores import compute_score
from cascadekit.serve import ServeConfig, create_app
from cascadekit.serve.config import ConfigError, load_config

pytestmark = pytest.mark.anyio
MODEL = "fashion-mnist"
URL = f"/v2/models/{MODEL}/infer"


def body(images: np.ndarray, **params: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "inputs": [
            {
                "name": "image",
                "shape": list(images.shape),
                "datatype": "UINT8",
                "data": images.reshape(-1).tolist(),
            }
        ]
    }
    if params:
        doc["parameters"] = params
    return doc


def calibration_scores(zoo: Any, choice: Any) -> np.ndarray:
    cal = zoo.logits["calibrate"]["student"]
    return np.asarray(compute_score(choice.score, cal, choice.temperature), dtype=np.float64)


async def settle(c: Any) -> dict[str, Any]:
    """The status once no shadow audit is running."""
    for _ in range(500):
        doc: dict[str, Any] = (await c.get(f"/v2/models/{MODEL}/monitor")).json()
        if doc["audits"]["in_flight"] == 0:
            return doc
        await asyncio.sleep(0.01)
    raise AssertionError("shadow audits did not finish")


async def test_status_metrics_audits_and_log(
    zoo: Any, choice: Any, test_images: Any, tmp_path: Path
) -> None:
    served = make_served(zoo, choice)
    images = test_images[0][:300]
    ref = reference(served, images)
    teacher = np.argmax(served.cascade.live_models()[1](images.astype(np.float32)), axis=1)
    settings = MonitorSettings(
        window=100,
        audit_rate=0.5,
        epsilon=0.05,
        references={MODEL: calibration_scores(zoo, choice)},
        log=tmp_path / "monitor.jsonl",
        random_state=0,
    )
    async with app_client(create_app(served, ServeConfig(monitoring=settings))) as c:
        for k in range(3):
            assert (
                await c.post(URL, json=body(images[k * 100 : (k + 1) * 100]))
            ).status_code == 200
        doc = await settle(c)
        assert doc["model"] == MODEL and doc["requests"] == 300 and doc["windows_tested"] == 3
        assert doc["teacher_share"] == pytest.approx(np.mean(ref["stage"] == 1))
        assert 0 < doc["expected_teacher_share"] < 1
        a = doc["audits"]
        kept = ref["stage"] == 0
        assert a["sample"] > 100 and a["shadow_calls"] > 0 and a["dropped"] == 0
        assert a["cost"] == pytest.approx(a["shadow_calls"] / (np.sum(~kept) + a["shadow_calls"]))
        assert a["disagreement"] is not None and a["disagreement"] <= a["disagreement_upper"]
        metrics = (await c.get("/metrics")).text
        for series in (
            f'cascadekit_monitor_windows_total{{model="{MODEL}"}} 3.0',
            f'cascadekit_monitor_alarms_total{{kind="score_drift",model="{MODEL}"}}',
            f'cascadekit_monitor_audits_total{{model="{MODEL}",outcome="shadow"}}',
            f'cascadekit_monitor_epsilon{{model="{MODEL}"}} 0.05',
            f'cascadekit_monitor_disagreement_upper{{model="{MODEL}"}} {a["disagreement_upper"]!r}',
        ):
            assert series in metrics
    # the log: every request's scores and stages; audits whose teacher answers are the teacher's
    recs = list(read_log(tmp_path / "monitor.jsonl"))
    routes = [r for r in recs if r["kind"] == "route"]
    assert np.array_equal(np.concatenate([r["stage"] for r in routes]), ref["stage"])
    assert np.allclose(np.concatenate([r["score"] for r in routes]), ref["score"], atol=1e-4)
    audits = [r for r in recs if r["kind"] == "audit"]
    assert len(audits) == a["sample"] and "inputs" not in routes[0]
    for r in audits:
        i = int(np.argmin(np.abs(ref["score"] - r["score"])))
        assert r["teacher"] == teacher[i] and r["student"] == ref["student"][i]
        assert r["shadow"] == bool(kept[i])


async def test_shift_raises_a_drift_alarm(zoo: Any, choice: Any, test_images: Any) -> None:
    served = make_served(zoo, choice)
    rng = np.random.default_rng(0)
    images = test_images[0][:400]
    noisy = np.clip(images + rng.normal(0, 90, images.shape), 0, 255).astype(np.uint8)
    settings = MonitorSettings(window=200, references={MODEL: calibration_scores(zoo, choice)})
    async with app_client(create_app(served, ServeConfig(monitoring=settings))) as c:
        await c.post(URL, json=body(images))
        clean = (await c.get(f"/v2/models/{MODEL}/monitor")).json()
        assert clean["windows_tested"] == 2 and clean["alarms"] == {
            "teacher_share": 0,
            "score_drift": 0,
        }
        out = (await c.post(URL, json=body(noisy))).json()
        doc = (await c.get(f"/v2/models/{MODEL}/monitor")).json()
        # the noise moves the student's scores on every zoo; whether it also moves the teacher
        # share enough depends on the pair (the full zoo's does, the reduced zoo's entropy
        # router barely): the share alarm must fire when the share moved far
        assert doc["alarms"]["score_drift"] >= 1
        assert doc["recent_alarms"][0]["requests"] == 600
        stage = np.asarray(next(o for o in out["outputs"] if o["name"] == "stage")["data"])
        moved = abs(float(np.mean(stage == 1)) - doc["expected_teacher_share"])
        if moved > 0.15:
            assert doc["alarms"]["teacher_share"] >= 1


async def test_audits_are_off_the_response_path_and_dropped_when_busy(
    zoo: Any, choice: Any, test_images: Any
) -> None:
    served = make_served(zoo, choice)
    images = test_images[0][:64]
    ref = reference(served, images)
    faulty = FaultyModel(served.cascade.stages[1].model, delay=0.5)
    served.cascade.stages[1].model = faulty
    settings = MonitorSettings(audit_rate=1.0, audit_max_inflight=1)
    async with app_client(create_app(served, ServeConfig(monitoring=settings))) as c:
        faulty.mode = "slow"
        # everything stays on the student: the response needs no teacher, the audits do
        r = await c.post(URL, json=body(images, threshold="-inf"))
        assert r.status_code == 200
        doc = (await c.get(f"/v2/models/{MODEL}/monitor")).json()
        assert doc["audits"]["in_flight"] == 1 and doc["audits"]["shadow_calls"] == 0
        # a second request while the audit runs: its audits are dropped, it is answered
        assert (await c.post(URL, json=body(images, threshold="-inf"))).status_code == 200
        doc = await settle(c)
        assert doc["audits"]["dropped"] == 64 and doc["audits"]["shadow_calls"] == 64
        assert doc["overridden_requests"] == 128 and doc["requests"] == 0
        assert ref["stage"].size == 64


async def test_monitor_endpoint_errors(zoo: Any, choice: Any) -> None:
    served = make_served(zoo, choice)
    async with app_client(create_app(served)) as c:
        r = await c.get(f"/v2/models/{MODEL}/monitor")
        assert r.status_code == 404 and "Monitoring is off" in r.json()["error"]
    settings = MonitorSettings()
    async with app_client(
        create_app(make_served(zoo, choice), ServeConfig(monitoring=settings))
    ) as c:
        r = await c.get("/v2/models/nope/monitor")
        assert r.status_code == 404 and "nope" in r.json()["error"]


def test_yaml_monitoring_section(tmp_path: Path) -> None:
    np.save(tmp_path / "ref.npy", np.linspace(-1, 1, 50))
    doc = {
        "name": "m",
        "input": {"name": "x", "datatypes": ["FP32"], "shape": [-1, 2]},
        "score": "margin",
        "thresholds": [0.5],
        "stages": [{"callable": "numpy:negative"}, {"callable": "numpy:positive"}],
        "monitoring": {"window": 500, "reference": "ref.npy", "log": "logs/m.jsonl"},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    _, cfg = load_config(path)
    assert cfg.monitoring is not None and cfg.monitoring.window == 500
    assert cfg.monitoring.log == tmp_path / "logs" / "m.jsonl"
    assert np.array_equal(cfg.monitoring.references["m"], np.linspace(-1, 1, 50))
    for bad, match in (
        ({"windw": 5}, "Unknown key.*'windw'.*expected some of window"),
        ({"window": 0}, r"monitoring.window to be an integer >= 1"),
        ({"audit_rate": "high"}, "monitoring.audit_rate to be a number"),
        ({"log_inputs": "yes"}, "monitoring.log_inputs to be true or false"),
        ({"log": 3}, "monitoring.log to be a file path"),
        ([1], "monitoring to be a mapping"),
    ):
        doc["monitoring"] = bad
        path.write_text(yaml.safe_dump(doc))
        with pytest.raises(ConfigError, match=match):
            load_config(path)
    doc["monitoring"] = {"reference": "missing.npy"}
    path.write_text(yaml.safe_dump(doc))
    from cascadekit.errors import DataNotFoundError

    with pytest.raises(DataNotFoundError, match="reference scores .* nothing is there"):
        load_config(path)
    (tmp_path / "bad.npy").write_text("nope")
    doc["monitoring"] = {"reference": "bad.npy"}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="Cannot read reference scores"):
        load_config(path)
    with pytest.raises(ConfigError, match="Expected monitoring to be a .*MonitorSettings"):
        ServeConfig(monitoring={"window": 5})  # type: ignore[arg-type]


def test_recalibrate_cli_proposes_and_applies_through_the_admin_api(
    zoo: Any, choice: Any, test_images: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    import httpx
    from conftest import uvicorn_thread
    from typer.testing import CliRunner

    from cascadekit.cli import app as cli
    from cascadekit.monitoring.recalibrate import propose_from_log
    from cascadekit.router import Router

    runner = CliRunner()
    served = make_served(zoo, choice)
    log = tmp_path / "monitor.jsonl"
    settings = MonitorSettings(audit_rate=0.5, log=log, random_state=1)
    cfg = ServeConfig(admin_token="tok", monitoring=settings)
    router = tmp_path / "router.json"
    Router(score=choice.score, temperature=choice.temperature, thresholds=[choice.threshold]).save(
        router
    )
    images = test_images[0][:1000]
    with uvicorn_thread(create_app(served, cfg)) as host:
        with httpx.Client(base_url=f"http://{host}", timeout=60) as c:
            for k in range(0, 1000, 250):
                assert c.post(URL, json=body(images[k : k + 250])).status_code == 200
            for _ in range(500):  # shadow audits finish in the background
                if c.get(f"/v2/models/{MODEL}/monitor").json()["audits"]["in_flight"] == 0:
                    break
            args = [
                "recalibrate",
                str(log),
                "--router",
                str(router),
                "--max-accuracy-drop",
                "0.05",
                "--delta",
                "0.1",
            ]
            res = runner.invoke(
                cli,
                [
                    *args,
                    "--json",
                    str(tmp_path / "p.json"),
                    "--save-router",
                    str(tmp_path / "new.json"),
                ],
            )
            assert res.exit_code == 0, res.output
            assert "not applied" in res.output and "old" in res.output
            doc = __import__("json").loads((tmp_path / "p.json").read_text())
            name, p = propose_from_log(log, choice.threshold, 0.05, 0.1)
            assert name == MODEL and doc["n_audits"] == p.n_audits > 200
            assert doc["new_threshold"] == p.new_threshold and doc["applied"] is False
            assert Router.load(tmp_path / "new.json").thresholds == [p.new_threshold]
            # applying needs the token; a wrong one is refused by the server
            monkeypatch.delenv("CASCADEKIT_ADMIN_TOKEN", raising=False)
            res = runner.invoke(cli, [*args, "--apply", f"http://{host}"])
            assert res.exit_code == 1 and "needs the server's admin token" in res.output
            monkeypatch.setenv("CASCADEKIT_ADMIN_TOKEN", "wrong")
            res = runner.invoke(cli, [*args, "--apply", f"http://{host}"])
            assert res.exit_code == 1 and "refused the new thresholds (401)" in res.output
            monkeypatch.setenv("CASCADEKIT_ADMIN_TOKEN", "tok")
            res = runner.invoke(cli, [*args, "--apply", f"http://{host}"])
            assert res.exit_code == 0, res.output
            meta = c.get(f"/v2/models/{MODEL}").json()
            assert meta["parameters"]["threshold"] == pytest.approx(p.new_threshold)
            # the monitor follows the new default threshold
            c.post(URL, json=body(images[:10]))
            assert c.get(f"/v2/models/{MODEL}/monitor").json()["threshold"] == pytest.approx(
                p.new_threshold
            )
    res = runner.invoke(cli, [*args, "--apply", "ftp://x"])
    assert res.exit_code == 1 and "Expected a server URL like http://host:8000" in res.output
    res = runner.invoke(cli, [*args, "--apply", f"http://{host}"])  # server stopped
    assert res.exit_code == 1 and "Cannot reach" in res.output


def test_recalibrate_cli_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cascadekit.cli import app as cli
    from cascadekit.monitoring import MonitorLog
    from cascadekit.router import Router

    runner = CliRunner()
    router = tmp_path / "router.json"
    Router(score="margin", thresholds=[0.5]).save(router)
    log = MonitorLog(tmp_path / "m.jsonl")
    log.route("a", 0.5, [1.0], [0])
    log.route("b", 0.5, [1.0], [0])
    log.close()
    args = ["--router", str(router), "--max-accuracy-drop", "0.05"]
    res = runner.invoke(cli, ["recalibrate", str(tmp_path / "m.jsonl"), *args])
    assert res.exit_code == 1 and "several models (a, b)" in res.output
    res = runner.invoke(cli, ["recalibrate", str(tmp_path / "m.jsonl"), *args, "--model", "a"])
    assert res.exit_code == 1 and "no audit record for model 'a'" in res.output
    res = runner.invoke(cli, ["recalibrate", str(tmp_path / "m.jsonl"), *args, "--model", "c"])
    assert res.exit_code == 1 and "no record of model 'c'" in res.output
    res = runner.invoke(cli, ["recalibrate", str(tmp_path / "none.jsonl"), *args])
    assert res.exit_code == 1 and "no such file" in res.output


async def test_adaptive_mode_holds_the_budget_within_bounds(
    zoo: Any, choice: Any, test_images: Any
) -> None:
    ref = calibration_scores(zoo, choice)
    images = test_images[0][:1200]
    served = make_served(zoo, choice)
    start = served.cascade.thresholds[0]
    settings = MonitorSettings(
        window=200, references={MODEL: ref}, adaptive_budget=0.5, adaptive_gamma=0.002
    )
    async with app_client(create_app(served, ServeConfig(monitoring=settings))) as c:
        stages = []
        for k in range(0, 1200, 50):
            r = await c.post(URL, json=body(images[k : k + 50]))
            out = {o["name"]: o["data"] for o in r.json()["outputs"]}
            stages += out["stage"]
        meta = (await c.get(f"/v2/models/{MODEL}")).json()
    moved = meta["parameters"]["threshold"]
    assert moved != start and served.cascade.thresholds[0] == moved
    assert abs(np.mean(stages[200:]) - 0.5) < 0.1  # the teacher takes about half
    # within bounds: a minimum above the median holds the threshold there
    served = make_served(zoo, choice)
    floor = float(np.quantile(ref, 0.7))
    settings = MonitorSettings(
        references={MODEL: ref}, adaptive_budget=0.5, adaptive_min_threshold=floor
    )
    async with app_client(create_app(served, ServeConfig(monitoring=settings))) as c:
        await c.post(URL, json=body(images[:100]))
    assert served.cascade.thresholds[0] == floor


def test_adaptive_settings_from_yaml() -> None:
    s = MonitorSettings.from_dict(
        {"adaptive": {"budget": 0.3, "gamma": 0.01, "min_threshold": 1.5}}, base=".", model="m"
    )
    assert (s.adaptive_budget, s.adaptive_gamma, s.adaptive_min_threshold) == (0.3, 0.01, 1.5)
    assert s.adaptive_max_threshold == float("inf")
    assert MonitorSettings().adaptive_budget is None  # off by default
    from cascadekit.errors import ParameterError

    for bad, match in (
        ({"gamma": 0.1}, "monitoring.adaptive to be a mapping with budget"),
        ({"budget": 0.3, "step": 1}, "monitoring.adaptive to be a mapping with budget"),
        ({"budget": 1.5}, r"monitoring.adaptive.budget strictly between 0 and 1; got 1.5"),
        ({"budget": 0.3, "max_threshold": "high"}, "adaptive.max_threshold to be a number"),
    ):
        with pytest.raises(ParameterError, match=match):
            MonitorSettings.from_dict({"adaptive": bad}, base=".", model="m")


async def test_a_fallback_counts_as_routed_on_not_as_a_share_shift(
    zoo: Any, choice: Any, test_images: Any
) -> None:
    """A teacher too slow to answer makes rows fall back to the student; the monitor sees the
    routing decision (on to the teacher), so an overload raises no share alarm."""
    served = make_served(zoo, choice)
    images = test_images[0][:200]
    ref = reference(served, images)
    faulty = FaultyModel(served.cascade.stages[1].model, delay=0.5)
    served.cascade.stages[1].model = faulty
    settings = MonitorSettings(
        window=200, audit_rate=0.0, references={MODEL: calibration_scores(zoo, choice)}
    )
    config = ServeConfig(monitoring=settings, stage_timeout=0.05)
    async with app_client(create_app(served, config)) as c:
        faulty.mode = "slow"  # after the warm-up
        out = (await c.post(URL, json=body(images))).json()
        fallback = next(o for o in out["outputs"] if o["name"] == "fallback")["data"]
        assert sum(fallback) == int(np.sum(ref["stage"] == 1)) > 0  # every deferred row fell back
        doc = (await c.get(f"/v2/models/{MODEL}/monitor")).json()
        assert doc["teacher_share"] == pytest.approx(np.mean(ref["stage"] == 1))
        assert doc["alarms"]["teacher_share"] == 0
