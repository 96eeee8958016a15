"""The text pair served on strings, driven by wrk: the cascade against its teacher alone.

``cascadekit serve --demo text`` (the tweet pool's cheapest calibrated pair into MPNet-base) and
``cascadekit serve --demo text --teacher-only`` run one after the other, each in its own process
on loopback, each loaded by ``wrk -t1 -c32 -d15s --timeout 30s`` with a Lua script that POSTs
one tweet per request, cycling through the pool's test tweets (so the cascade sends its usual
share to the teacher), as JSON and as binary BYTES data (``benchmarks/serve_wrk.py``'s runner;
after each 1 s warm-up it waits until the server has answered what the warm-up left in flight).

Beside each server's requests/s and p99 latency it prints what the pair's compute predicts:
each model's time per tweet, measured in this process (median of ``--repeats`` calls at batch 1
and at batch ``--batch``, one tweet per request but the server batches concurrent requests),
and the ideal speed-up ``t_teacher / (t_student + share * t_teacher)`` with the teacher share
the cascade server reported in the same run. ``achieved / ideal`` is the cascade's requests/s
over the teacher's, divided by that ideal. The accuracies are those of the pool's test split
(the cascade's rule on the pool's logits, which the served models reproduce), and the script
checks the served labels of ``--check`` test tweets against the in-process cascade.

Setup (wrk; MPNet-base) and run::

    scripts/setup_bench.sh
    bash scripts/setup.sh --text
    .venv/bin/python benchmarks/serve_text.py
    .venv/bin/python benchmarks/serve_text.py --reduced     # MiniLM-L3 -> MiniLM-L6 (quick)
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from typing import Any

import numpy as np
from serve_wrk import measure

from cascadekit.serve.launch import serve_process

MODEL = "tweet-sentiment"


def text_bodies(texts: list[str]) -> dict[str, tuple[list[bytes], str, str]]:
    """JSON and binary request bodies, one tweet each: (bodies, content type, header length).

    The binary bodies' JSON headers differ in length (binary_data_size), so each is padded to
    one length with spaces (valid JSON), as the Lua script sends one header length.
    """
    as_json = [
        json.dumps(
            {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [t]}]}
        ).encode()
        for t in texts
    ]
    raw = [len(t.encode()).to_bytes(4, "little") + t.encode() for t in texts]
    heads = [
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "text",
                        "shape": [1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(r)},
                    }
                ]
            }
        ).encode()
        for r in raw
    ]
    width = max(len(h) for h in heads)
    binary = [h.ljust(width) + r for h, r in zip(heads, raw, strict=True)]
    return {
        "json": (as_json, "application/json", ""),
        "binary": (binary, "application/octet-stream", str(width)),
    }


def per_input_seconds(model: Any, texts: list[str], batch: int, repeats: int) -> float:
    """Median seconds per tweet of ``model`` on batches of ``batch`` tweets."""
    x = np.array(texts, dtype=object)
    times = []
    for r in range(repeats):
        start = (r * batch) % max(len(texts) - batch, 1)
        chunk = x[start : start + batch]
        t0 = time.perf_counter()
        model(chunk)
        times.append((time.perf_counter() - t0) / len(chunk))
    return statistics.median(times)


def check_served(cli: list[str], texts: list[str], want: np.ndarray) -> int:
    """Serve, post ``texts`` one request each, and count labels unlike the in-process ones."""
    import httpx

    with serve_process(cli) as server:
        bodies = text_bodies(texts)["json"][0]
        got = [
            httpx.post(f"{server.url}/v2/models/{MODEL}/infer", content=b, timeout=120).json()
            for b in bodies
        ]
    labels = np.array([g["outputs"][0]["data"][0] for g in got])
    return int((labels != want).sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=15, help="seconds of load per measurement")
    p.add_argument("--wrk-timeout", type=int, default=30, help="wrk's request timeout, seconds")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reduced", action="store_true", help="the reduced pool (two MiniLMs)")
    p.add_argument("--batch", type=int, default=16, help="batch of the in-process timings")
    p.add_argument("--repeats", type=int, default=15, help="in-process timing calls")
    p.add_argument("--check", type=int, default=16, help="test tweets checked over HTTP")
    p.add_argument("--torch-threads", type=int, default=None, help="cascadekit serve's option")
    p.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run scripts/setup_bench.sh (apt-get install -y wrk).")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from cascadekit.data.text import load_text_pool
    from cascadekit.serve import tweet_sentiment_model

    pool = load_text_pool(reduced=args.reduced)
    served = tweet_sentiment_model(pool, reduced=args.reduced)
    student, teacher = (str(s.name) for s in served.cascade.stages)
    cascade = served.cascade
    test = pool.texts["test"]
    y = pool.labels["test"]

    # accuracies on the test split: the served rule on the pool's logits
    offline = cascade.route([pool.logits["test"][student], pool.logits["test"][teacher]])
    acc_cascade = float(np.mean(offline.predictions == y))
    acc_teacher = pool.accuracy("test", teacher)

    # per-tweet times, in this process
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    live = cascade.live_models()
    times = {
        b: [per_input_seconds(m, test, b, args.repeats) for m in live] for b in (1, args.batch)
    }
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --timeout "
        f"{args.wrk_timeout}s, one tweet per request; "
        f"{student} -> {teacher}; cpus {os.cpu_count()}, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    for b, (ts, tt) in times.items():
        print(f"in-process time per tweet at batch {b}: {student} {ts * 1e3:.2f} ms, "
              f"{teacher} {tt * 1e3:.2f} ms (x{tt / ts:.1f})")  # fmt: skip
    print(
        f"test accuracy: cascade {acc_cascade:.4f}, teacher {acc_teacher:.4f} "
        f"({(acc_cascade - acc_teacher) * 100:+.2f} points); test teacher share "
        f"{offline.teacher_share:.3f}"
    )

    cli = [sys.executable, "-m", "cascadekit.cli", "serve", "--demo", "text"]
    cli += ["--log-level", "warning"] + (["--reduced"] if args.reduced else [])
    if args.torch_threads is not None:
        cli += ["--torch-threads", str(args.torch_threads)]
    if args.check:
        want = cascade.predict(np.array(test[: args.check], dtype=object)).predictions
        print(f"served labels unlike in-process: {check_served(cli, test[: args.check], want)} "
              f"of {args.check}")  # fmt: skip

    bodies = text_bodies(test)
    res = {
        "cascade": measure("cascade", cli, args, MODEL, bodies),
        "teacher": measure("teacher", [*cli, "--teacher-only"], args, MODEL, bodies),
    }
    for name in res:
        for kind in ("json", "binary"):
            r = res[name][kind]
            print(
                f"{name:8s} {kind:6s} {r['rps']:8.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
                f"p99 {r['p99_ms']:7.1f} ms  lost {r['lost']} of {r['requests']}"
                + (
                    ""
                    if name != "cascade"
                    else f"  teacher share {r['teacher_share']:.3f}, fallbacks "
                    f"{r['fallback_share']:.3f}"
                )
            )
    for kind in ("json", "binary"):
        c, t = res["cascade"][kind], res["teacher"][kind]
        share = c["teacher_share"]
        achieved = c["rps"] / max(t["rps"], 1e-9)
        ideals = {b: tt / (ts + share * tt) for b, (ts, tt) in times.items()}
        print(
            f"{kind:6s}: cascade / teacher x{achieved:.2f} (p99 x{c['p99_ms'] / t['p99_ms']:.2f}); "
            + ", ".join(
                f"ideal at batch {b} x{ideal:.2f}, achieved / ideal {achieved / ideal:.2f}"
                for b, ideal in ideals.items()
            )
        )
    lost = sum(res[n][k]["lost"] for n in res for k in ("json", "binary"))
    print(f"lost requests: {lost}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
