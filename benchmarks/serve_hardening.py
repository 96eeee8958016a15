"""Hostile requests against a real server: how fast they are refused, and whether anyone notices.

A ``cascadekit.serve`` app runs in a child process with uvicorn on 127.0.0.1: a two-stage cascade
of small numpy models on 784-value FP32 inputs (no value range declared, the default of
``create_app``), whose student raises on inputs whose first value is 13 (a *finite* poison).
While each hostile request is in flight, ``GET /v2/health/live`` is polled every 5 ms; the script
prints the hostile request's status and latency and the slowest health probe meanwhile:

- a JSON body whose shape has 300,000 dimensions (600 KB);
- a 5,000-digit integer in ``data``;
- a binary FP32 tensor holding NaN, sent together with 12 innocent requests (co-batched);
- a finite input the student raises on, sent together with 12 innocent requests;
- the largest accepted body: 16 MiB of JSON (4,096 inputs of 784 values), which is decoded.

Every request has a time-out and the server is stopped (SIGTERM) at the end. Run::

    nice -n 10 .venv/bin/python benchmarks/serve_hardening.py
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import statistics
import time
from typing import Any

import numpy as np

N_FEATURES = 784
POISON = 13.0
URL = "/v2/models/toy/infer"


def _serve(port: int) -> None:
    from cascadekit import Cascade, Stage
    from cascadekit.serve import BatchPolicy, ServeConfig, TensorSpec, create_app, run

    w = np.random.default_rng(0).normal(size=(N_FEATURES, 10)) / 28

    def student(x: Any) -> Any:
        x = np.asarray(x, dtype=np.float64)
        if np.any(x[:, 0] == POISON):
            raise ValueError("the student cannot process this input")
        return x @ w

    def teacher(x: Any) -> Any:
        return np.asarray(x, dtype=np.float64) @ w[:, ::-1]

    cascade = Cascade(
        [Stage(model=student, score="margin"), Stage(model=teacher)], thresholds=[0.5]
    )
    config = ServeConfig(port=port, batching=BatchPolicy(max_batch_size=64, max_wait=0.02))
    spec = TensorSpec("x", ("FP32",), (-1, N_FEATURES))
    run(create_app(cascade, config, name="toy", input_spec=spec), config, log_level="warning")


def _json_body(x: np.ndarray) -> bytes:
    doc = {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _binary_body(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ]
        }
    ).encode()
    headers = {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }
    return header + x.astype("<f4").tobytes(), headers


async def _probe_during(client: Any, task: asyncio.Future[Any]) -> float:
    """Poll the liveness endpoint every 5 ms until ``task`` is done; the slowest probe (s)."""
    worst = 0.0
    while not task.done():
        t = time.perf_counter()
        r = await client.get("/v2/health/live")
        assert r.status_code == 200
        worst = max(worst, time.perf_counter() - t)
        await asyncio.sleep(0.005)
    return worst


async def _timed(client: Any, body: bytes, headers: dict[str, str] | None = None) -> Any:
    t = time.perf_counter()
    r = await client.post(
        URL, content=body, headers=headers or {"Content-Type": "application/json"}
    )
    return r, time.perf_counter() - t


async def _hostile(
    base: str, name: str, body: bytes, headers: dict[str, str] | None = None
) -> None:
    import httpx

    async with (
        httpx.AsyncClient(base_url=base, timeout=120) as c,
        httpx.AsyncClient(base_url=base, timeout=120) as probe,
    ):
        await probe.get("/v2/health/live")  # open the probe's connection first
        task = asyncio.ensure_future(_timed(c, body, headers))
        await asyncio.sleep(0)
        worst = await _probe_during(probe, task)
        r, seconds = await task
    print(
        f"{name:<44} {r.status_code}  {seconds * 1e3:9.1f} ms   slowest health probe meanwhile "
        f"{worst * 1e3:6.1f} ms   ({len(body) / 2**20:.2f} MiB)"
    )


async def _cobatched(base: str, name: str, bad: tuple[bytes, dict[str, str]]) -> None:
    import httpx

    rng = np.random.default_rng(1)
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        goods = [_json_body(rng.normal(size=(3, N_FEATURES)).astype(np.float32)) for _ in range(12)]
        jobs = (
            [_timed(c, g) for g in goods[:6]]
            + [_timed(c, *bad)]
            + [_timed(c, g) for g in goods[6:]]
        )
        out = await asyncio.gather(*jobs)
    r_bad, s_bad = out[6]
    innocent = [r.status_code for i, (r, _) in enumerate(out) if i != 6]
    print(
        f"{name:<44} {r_bad.status_code}  {s_bad * 1e3:9.1f} ms   innocent co-batched requests: "
        f"{innocent.count(200)}/12 answered 200"
    )


async def _main(base: str) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        for _ in range(600):
            try:
                if (await c.get("/v2/health/ready")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        lat = []
        for _ in range(50):
            t = time.perf_counter()
            await c.get("/v2/health/live")
            lat.append(time.perf_counter() - t)
    print(f"health probe alone: median {statistics.median(lat) * 1e3:.2f} ms\n")

    rank = b'{"inputs":[{"name":"x","datatype":"FP32","data":[],"shape":['
    rank += b",".join([b"1"] * 300_000) + b"]}]}"
    await _hostile(base, "shape with 300,000 dimensions", rank)
    huge = b'{"inputs":[{"name":"x","shape":[1,784],"datatype":"FP32","data":['
    huge += b"9" * 5000 + b"]}]}"
    await _hostile(base, "5,000-digit integer in data", huge)

    x = np.random.default_rng(2).normal(size=(1, N_FEATURES)).astype(np.float32)
    x[0, 5] = np.nan
    await _cobatched(base, "binary FP32 NaN + 12 innocent requests", _binary_body(x))
    x = np.random.default_rng(3).normal(size=(1, N_FEATURES)).astype(np.float32)
    x[0, 0] = POISON
    await _cobatched(
        base,
        "finite poison input + 12 innocent requests",
        (_json_body(x), {"Content-Type": "application/json"}),
    )

    # the largest accepted body: 4,096 inputs of 784 values written with 4 characters each
    values = np.random.default_rng(4).integers(10, 99, size=(4096, N_FEATURES)) + 0.5
    big = _json_body(values.astype(np.float32))
    assert len(big) <= 16 * 2**20, len(big)
    await _hostile(base, "largest accepted body, JSON (decoded, 200)", big)
    binary, headers = _binary_body(values.astype(np.float32))
    await _hostile(base, "same inputs as binary tensor data (200)", binary, headers)


def main() -> None:
    from cascadekit.serve.launch import free_port

    port = free_port()
    ctx = mp.get_context("spawn")
    server = ctx.Process(target=_serve, args=(port,), daemon=True)
    server.start()
    try:
        asyncio.run(asyncio.wait_for(_main(f"http://127.0.0.1:{port}"), 600))
    finally:
        server.terminate()  # SIGTERM: the server drains and exits
        server.join(60)
        if server.is_alive():
            server.kill()


if __name__ == "__main__":
    main()
