"""Cascade server vs the same server serving the teacher alone, at matched accuracy.

Both servers are ``cascadekit.serve`` apps with the same batching, run one after the other in a
child process on loopback (``cascadekit serve --demo`` with the calibrated student -> teacher
cascade, then the teacher alone behind the same code path). The same open-loop load (Poisson
arrivals of single-image requests on real Fashion-MNIST test images, binary tensor data) hits
each; the script prints throughput and p99 latency of each and their ratios, measured in this
run, and the accuracy of both on the images served (the cascade's threshold targets the
teacher's accuracy on the calibrate split; the test images were seen by no choice).

Run::

    nice -n 10 .venv/bin/python benchmarks/serve_throughput.py            # 4000 requests each
    nice -n 10 .venv/bin/python benchmarks/serve_throughput.py --requests 600 --rate 300

``--monitoring`` compares the cascade with monitoring off and on instead (drift tests, shadow
audits at the default 1% rate, the JSONL log in a temporary folder; see docs/monitoring.md).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
from typing import Any

import numpy as np


def _serve(port: int, teacher_only: bool, max_batch: int, monitoring: bool = False) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import tempfile

    from cascadekit.monitoring.serving import MonitorSettings
    from cascadekit.serve import BatchPolicy, ServeConfig, create_app, fashion_mnist_model, run

    settings = None
    if monitoring:
        settings = MonitorSettings(log=os.path.join(tempfile.mkdtemp(), "monitor.jsonl"))
    config = ServeConfig(
        monitoring=settings,
        port=port,
        batching=BatchPolicy(max_batch_size=max_batch, max_wait=0.002, max_queue=8192),
        request_timeout=120.0,
        stage_timeout=120.0,
    )
    run(
        create_app(fashion_mnist_model(teacher_only=teacher_only), config),
        config,
        log_level="warning",
    )


def measure(
    teacher_only: bool, images: np.ndarray, args: argparse.Namespace, monitoring: bool = False
) -> Any:
    from cascadekit.serve.launch import free_port, wait_until_ready
    from cascadekit.serve.loadgen import run_load

    port = free_port()
    ctx = mp.get_context("spawn")
    proc = ctx.Process(
        target=_serve, args=(port, teacher_only, args.max_batch, monitoring), daemon=True
    )
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, proc, 300.0)
        # a short warm-up run, not counted
        asyncio.run(run_load(url, images, n_requests=50, rate=args.rate, concurrency=8))
        return asyncio.run(
            run_load(
                url,
                images,
                n_requests=args.requests,
                batch=args.batch,
                rate=args.rate,
                concurrency=args.concurrency,
                random_state=1,
            )
        )
    finally:
        proc.terminate()
        proc.join(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=4000, help="requests per server")
    p.add_argument("--rate", type=float, default=2000.0, help="Poisson arrival rate (req/s)")
    p.add_argument("--concurrency", type=int, default=128, help="requests in flight at most")
    p.add_argument("--batch", type=int, default=1, help="images per request")
    p.add_argument("--max-batch", type=int, default=64, help="server max batch size")
    p.add_argument("--images", type=int, default=10000, help="distinct test images used")
    p.add_argument(
        "--monitoring", action="store_true", help="compare the cascade with monitoring off and on"
    )
    args = p.parse_args()

    from cascadekit.data.zoo import load_fashion_mnist_zoo

    zoo = load_fashion_mnist_zoo()
    images = zoo.images["test"][: args.images]
    labels = zoo.labels["test"][: args.images]
    print(
        f"load: {args.requests} requests x {args.batch} image(s), Poisson {args.rate:g}/s, "
        f"concurrency {args.concurrency}, server max batch {args.max_batch}, cpus "
        f"{os.cpu_count()}, load average {os.getloadavg()[0]:.1f}"
    )
    if args.monitoring:
        runs = {}
        for name, on in (("off", False), ("on", True)):
            runs[name] = measure(False, images, args, monitoring=on)
            print(f"monitoring {name:3s} {runs[name].summary()}")
        off, on = runs["off"], runs["on"]
        print(
            f"monitoring on / off: throughput x{on.throughput / off.throughput:.2f}, "
            f"p99 latency x{on.percentile(99) / off.percentile(99):.2f}"
        )
        return
    results = {}
    for name, teacher_only in (("cascade", False), ("teacher", True)):
        s = measure(teacher_only, images, args)
        n = s.label.shape[0]
        truth = labels[np.arange(n) % images.shape[0]]
        ok = s.label >= 0
        acc = float(np.mean(s.label[ok] == truth[ok])) if ok.any() else float("nan")
        share = float(np.mean(s.stage[ok] == 1)) if ok.any() else float("nan")
        results[name] = (s, acc)
        extra = f", teacher share {share:.3f}" if name == "cascade" else ""
        print(f"{name:8s} {s.summary()}; accuracy {acc:.4f}{extra}")
    (c, acc_c), (t, acc_t) = results["cascade"], results["teacher"]
    print(
        f"cascade / teacher-alone: throughput x{c.throughput / t.throughput:.2f}, "
        f"p99 latency x{c.percentile(99) / t.percentile(99):.2f}, "
        f"p50 latency x{c.percentile(50) / t.percentile(50):.2f}, "
        f"accuracy {acc_c:.4f} vs {acc_t:.4f} ({acc_c - acc_t:+.4f})"
    )


if __name__ == "__main__":
    main()
