"""An open-loop load generator for Open Inference Protocol servers (Poisson arrivals).

Used by the load tests and ``benchmarks/serve_throughput.py``; needs httpx. Each request carries
``batch`` inputs as binary tensor data (tritonclient's wire format) and asks for the ``label``,
``stage`` and ``fallback`` outputs as JSON.

Examples
--------
>>> s = LoadStats(latencies=[0.001, 0.002, 0.003, 0.004], seconds=2.0, n_requests=4)
>>> round(s.percentile(50) * 1e3, 2), s.throughput
(2.5, 2.0)
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._optional import require
from ..oip import HEADER_LENGTH

__all__ = ["LoadStats", "run_load"]


@dataclass
class LoadStats:
    """Outcome of a load run.

    Attributes
    ----------
    latencies : list of float
        Seconds from sending each request to its full response (successful ones).
    seconds : float
        Wall-clock time of the run.
    n_requests : int
    status : dict of int to int
        Responses by HTTP status (``-1``: a transport error, i.e. a lost request).
    errors : dict of str to int
        Transport errors by exception type (e.g. ``ReadTimeout``, ``RemoteProtocolError``).
    label, stage, fallback : ndarray
        Per input (in ``images`` order): the answer, the stage that gave it and the fallback
        flag; ``-1`` / ``-1`` / False where the request failed.
    """

    latencies: list[float]
    seconds: float
    n_requests: int
    status: dict[int, int] = field(default_factory=dict)
    label: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    stage: NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    fallback: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))
    errors: dict[str, int] = field(default_factory=dict)

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` (0..100) in seconds."""
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return len(self.latencies) / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: requests, throughput, p50 and p99 latency, statuses."""
        return (
            f"{self.n_requests} requests in {self.seconds:.1f} s: {self.throughput:.0f} req/s, "
            f"p50 {self.percentile(50) * 1e3:.1f} ms, p99 {self.percentile(99) * 1e3:.1f} ms, "
            f"status {dict(sorted(self.status.items()))}"
            + (f", transport errors {self.errors}" if self.errors else "")
            + f", max {max(self.latencies, default=float('nan')) * 1e3:.0f} ms"
        )


def _request_body(images: NDArray[Any]) -> tuple[bytes, int]:
    datatype = "UINT8" if images.dtype == np.uint8 else "FP32"
    raw = np.ascontiguousarray(images, dtype=np.uint8 if datatype == "UINT8" else "<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": list(images.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "label"}, {"name": "stage"}, {"name": "fallback"}],
        }
    ).encode()
    return header + raw, len(header)


async def run_load(
    url: str,
    images: NDArray[Any],
    *,
    model: str = "fashion-mnist",
    n_requests: int = 1000,
    batch: int = 1,
    rate: float = 1000.0,
    concurrency: int = 128,
    random_state: int = 0,
    timeout: float = 60.0,
) -> LoadStats:
    """Send ``n_requests`` requests with Poisson arrivals at ``rate`` per second.

    Request ``i`` carries images ``[i*batch, (i+1)*batch)`` (cycling through ``images``); at
    most ``concurrency`` requests are in flight (later arrivals wait for a slot).

    Parameters
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:8000``.
    images : ndarray of shape (n, ...)
    model : str
    n_requests, batch, rate, concurrency, random_state, timeout
        Load shape; ``timeout`` is the client's per-request limit in seconds.

    Returns
    -------
    LoadStats
    """
    httpx = require("httpx", "serve", "The load generator")
    n_img = images.shape[0]
    total = n_requests * batch
    label = np.full(total, -1, np.int64)
    stage = np.full(total, -1, np.int32)
    fallback = np.zeros(total, bool)
    status: dict[int, int] = {}
    errors: dict[str, int] = {}
    latencies: list[float] = []
    rng = np.random.default_rng(random_state)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, n_requests))
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    endpoint = f"{url.rstrip('/')}/v2/models/{model}/infer"

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        start = time.perf_counter()

        async def one(i: int) -> None:
            delay = start + arrivals[i] - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            idx = (np.arange(i * batch, (i + 1) * batch)) % n_img
            body, hl = _request_body(images[idx])
            async with slots:
                t0 = time.perf_counter()
                try:
                    r = await client.post(
                        endpoint,
                        content=body,
                        headers={
                            HEADER_LENGTH: str(hl),
                            "content-type": "application/octet-stream",
                        },
                    )
                except httpx.HTTPError as exc:
                    status[-1] = status.get(-1, 0) + 1
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    return
                dt = time.perf_counter() - t0
            status[r.status_code] = status.get(r.status_code, 0) + 1
            if r.status_code != 200:
                return
            latencies.append(dt)
            outs = {o["name"]: o["data"] for o in r.json()["outputs"]}
            sl = slice(i * batch, (i + 1) * batch)
            label[sl] = outs["label"]
            stage[sl] = outs["stage"]
            fallback[sl] = outs["fallback"]

        await asyncio.gather(*(one(i) for i in range(n_requests)))
        seconds = time.perf_counter() - start
    return LoadStats(latencies, seconds, n_requests, status, label, stage, fallback, errors)
