"""Fuzz every endpoint of the OpenAPI document with schemathesis: no request gets a 500."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import make_served, uvicorn_thread
from hypothesis import HealthCheck, given, settings

from cascadekit.serve import create_app

schemathesis = pytest.importorskip("schemathesis")


def test_openapi_fuzz_has_no_server_errors(zoo: Any, choice: Any) -> None:
    app = create_app(make_served(zoo, choice))
    seen: dict[str, set[int]] = {}
    with uvicorn_thread(app) as url:
        schema = schemathesis.openapi.from_url(f"http://{url}/openapi.json")
        operations = [r.ok() for r in schema.get_all_operations()]
        assert len(operations) >= 10
        for op in operations:
            label = f"{op.method.upper()} {op.path}"
            _fuzz(op, url, label, seen.setdefault(label, set()))()
    # the fuzzer reached the inference path with both good and bad bodies
    assert seen["POST /v2/models/{name}/infer"] & {400}


def _fuzz(op: Any, url: str, label: str, codes: set[int]) -> Any:
    @given(case=op.as_strategy())
    @settings(
        max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def run(case: Any) -> None:
        if op.method == "post" and case.path_parameters:
            case.path_parameters["name"] = "fashion-mnist"  # reach the codec and the cascade
        response = case.call(base_url=f"http://{url}")
        codes.add(response.status_code)
        assert response.status_code < 500, (label, case.body, response.text)
        if response.status_code >= 400:
            assert "error" in response.json(), (label, response.text)

    return run
