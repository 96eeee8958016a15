"""The shipped Prometheus alert rules and Grafana dashboard (deploy/monitoring/)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: `apt-get install prometheus` (scripts/setup.sh installs it)",
)


def _promtool(*args: str) -> str:
    assert PROMTOOL is not None
    r = subprocess.run(
        [PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@needs_promtool
def test_alert_rules_pass_promtool_check() -> None:
    assert "SUCCESS: 6 rules found" in _promtool("check", "rules", "alerts.yml")


@needs_promtool
def test_alert_rules_unit_tests() -> None:
    """Alarms fire when the monitor's series say so, and not before their `for:`."""
    assert "SUCCESS" in _promtool("test", "rules", "alerts_test.yml")


def _server_series() -> set[str]:
    """Every series name a server with monitoring on exports."""
    pytest.importorskip("prometheus_client")
    from cascadekit.monitoring.serving import MonitorSettings, ServingMonitor
    from cascadekit.serve.metrics import ServeMetrics

    m = ServeMetrics()
    ServingMonitor(MonitorSettings(epsilon=0.02), m.registry, [("m", 0.0, 2)])
    names: set[str] = set()
    for family in m.registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
        }.get(family.type, ("",))
        names.update(family.name + s for s in suffixes)
    return names


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bcascadekit_[a-z_]+", expr))


def test_rules_and_dashboard_use_only_exported_series() -> None:
    yaml = pytest.importorskip("yaml")
    series = _server_series()
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = set().union(*(_metric_names(e) for e in exprs))
    assert used and used <= series, used - series


def test_dashboard_matches_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "tests" / "data" / "grafana-dashboard.schema.json").read_text())
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(dash, schema)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    # panels fit the 24-column grid and do not overlap
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, p["title"]
        cells |= mine
    # every template variable a query uses is defined
    defined = {v["name"] for v in dash["templating"]["list"]} | {"__rate_interval"}
    for p in dash["panels"]:
        for t in p["targets"]:
            assert set(re.findall(r"\$(\w+)", t["expr"])) <= defined, t["expr"]


def test_schema_rejects_a_broken_dashboard() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "tests" / "data" / "grafana-dashboard.schema.json").read_text())
    dash: dict[str, Any] = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    dash["panels"][0]["gridPos"]["w"] = 30
    with pytest.raises(jsonschema.ValidationError, match="30 is greater than the maximum of 24"):
        jsonschema.validate(dash, schema)
    del dash["panels"][0]["targets"]
    with pytest.raises(jsonschema.ValidationError, match="'targets' is a required property"):
        jsonschema.validate(dash, schema)
