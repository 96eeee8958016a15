"""Load tests on a real uvicorn server (loopback): Poisson arrivals at high concurrency.

``CASCADEKIT_LOAD_REQUESTS`` sets the size of the clean run (default 2,000, so CI runs it in
well under a minute; the README's figures come from 20,000); the fault run uses a third of it.
Figures are printed (run with ``-s`` to see them)::

    CASCADEKIT_LOAD_REQUESTS=20000 .venv/bin/pytest tests/serve/test_load.py -s
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np
import pytest
from conftest import make_served, uvicorn_thread
from serve_helpers import FaultyModel, check_correct_or_flagged, reference

from cascadekit.serve import BatchPolicy, ServeConfig, create_app
from cascadekit.serve.loadgen import run_load

pytestmark = pytest.mark.slow
N = int(os.environ.get("CASCADEKIT_LOAD_REQUESTS", "2000"))
CONFIG = ServeConfig(
    batching=BatchPolicy(max_batch_size=64, max_wait=0.002, max_queue=4096),
    request_timeout=120.0,
    stage_timeout=120.0,
)


def _check(stats: Any, served: Any, images: np.ndarray, ref: dict[str, Any]) -> tuple[int, int]:
    n_img = images.shape[0]
    idx = np.arange(stats.label.shape[0]) % n_img
    # zero lost: every request answered 200 with one answer per input
    assert stats.status == {200: stats.n_requests}, (stats.status, stats.errors)
    assert np.all(stats.label >= 0)
    scores = ref["score"][idx]  # the student's score is deterministic per image
    return check_correct_or_flagged(
        stats.label, stats.stage, stats.fallback, scores, ref, idx, served.cascade.thresholds[0]
    )


def test_load_clean(zoo: Any, choice: Any, test_images: Any) -> None:
    served = make_served(zoo, choice)
    images = test_images[0][:2000]
    ref = reference(served, images)
    with uvicorn_thread(create_app(served, CONFIG)) as url:
        stats = asyncio.run(
            run_load(f"http://{url}", images, n_requests=N, rate=2000, concurrency=256)
        )
    n_ok, n_flag = _check(stats, served, images, ref)
    acc = np.mean(stats.label == test_images[1][np.arange(N) % 2000])
    print(f"\nclean load: {stats.summary()}; accuracy {acc:.4f}; fallbacks {n_flag}")
    assert n_flag == 0 and n_ok == N


def test_load_with_teacher_slow_then_failing(zoo: Any, choice: Any, test_images: Any) -> None:
    served = make_served(zoo, choice)
    images = test_images[0][:2000]
    ref = reference(served, images)
    faulty = FaultyModel(served.cascade.stages[1].model, delay=0.5)
    served.cascade.stages[1].model = faulty
    n = max(300, N // 3)
    rate = 1500.0

    async def scenario(url: str) -> Any:
        load = asyncio.create_task(
            run_load(f"http://{url}", images, n_requests=n, rate=rate, concurrency=256)
        )
        await asyncio.sleep(n / rate / 3)
        faulty.mode = "slow"
        await asyncio.sleep(n / rate / 3)
        faulty.mode = "fail"
        return await load

    config = ServeConfig(batching=CONFIG.batching, request_timeout=120.0, stage_timeout=0.25)
    with uvicorn_thread(create_app(served, config)) as url:
        stats = asyncio.run(scenario(url))
    n_ok, n_flag = _check(stats, served, images, ref)
    print(f"\nfault load: {stats.summary()}; correct {n_ok}, flagged fallbacks {n_flag}")
    assert n_ok + n_flag == n and n_flag > 0
