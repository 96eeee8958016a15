"""gRPC vs REST on one cascade server: requests/s of single-image requests, tritonclient both.

One ``cascadekit serve --demo --port 0 --grpc-port 0`` process serves both protocols from the
same models and batchers. ``--threads`` client threads each send single-image requests of real
Fashion-MNIST test images back to back for ``--seconds``, over ``tritonclient.grpc``
(``raw_input_contents``), then over ``tritonclient.http`` (binary tensor data), alternating for
``--rounds`` rounds; the script prints each round's requests/s and the gRPC/REST ratio. The
Python clients share the machine with the server, so the figures are the pair's, not the
server's ceiling (``benchmarks/serve_wrk.py`` measures REST with a C load generator).

Run::

    nice -n 10 .venv/bin/python benchmarks/serve_grpc.py
    nice -n 10 .venv/bin/python benchmarks/serve_grpc.py --threads 8 --seconds 10 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

SERVE = [sys.executable, "-m", "cascadekit.cli", "serve", "--demo", "--log-level", "info"]


def _start_server() -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [*SERVE, "--port", "0", "--grpc-port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )
    http = grpc = None
    deadline = time.monotonic() + 300
    assert proc.stderr is not None
    while (http is None or grpc is None) and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        if m := re.search(r"gRPC server running on (\S+)", line):
            grpc = m.group(1)
        if m := re.search(r"Uvicorn running on http://(\S+)", line):
            http = m.group(1)
    if http is None or grpc is None:
        proc.kill()
        raise SystemExit("the server did not start within 300 s")
    return proc, http, grpc


def _load(protocol: str, address: str, images: np.ndarray, threads: int, seconds: float) -> float:
    """Requests/s of ``threads`` closed-loop clients over ``seconds``."""
    if protocol == "grpc":
        import tritonclient.grpc as mod
    else:
        import tritonclient.http as mod  # type: ignore[no-redef]
    counts = [0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def client(k: int) -> None:
        c: Any = mod.InferenceServerClient(address)
        try:
            start.wait()
            i = k
            while not stop.is_set():
                x = images[i % len(images)][None]
                inp = mod.InferInput("image", [1, 28, 28], "UINT8")
                inp.set_data_from_numpy(x)
                c.infer("fashion-mnist", [inp])
                counts[k] += 1
                i += threads
        except BaseException as exc:  # reported below: a lost request fails the benchmark
            errors.append(exc)
        finally:
            c.close()

    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} {protocol} request(s) failed: {errors[0]!r}")
    return sum(counts) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from cascadekit.data.fashion_mnist import load_fashion_mnist

    images, _ = load_fashion_mnist("test")
    proc, http, grpc = _start_server()
    try:
        _load("grpc", grpc, images, args.threads, 1.0)  # warm both paths up
        _load("http", http, images, args.threads, 1.0)
        ratios = []
        for r in range(args.rounds):
            g = _load("grpc", grpc, images, args.threads, args.seconds)
            h = _load("http", http, images, args.threads, args.seconds)
            ratios.append(g / h)
            print(
                f"round {r + 1}: gRPC {g:7.0f} req/s   REST (binary) {h:7.0f} req/s   x{g / h:.2f}"
            )
        print(
            f"gRPC/REST requests/s, median of {args.rounds} rounds: "
            f"x{statistics.median(ratios):.2f}"
        )
    finally:
        proc.terminate()
        proc.wait(60)


if __name__ == "__main__":
    main()
