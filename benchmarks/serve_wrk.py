"""Requests per second with one image per request, driven by wrk: ceiling, cascade, teacher alone.

Three servers run one after the other, each in its own process on loopback, each loaded by
``wrk -t1 -c32 -d8s`` (a C load generator, so the client costs little of the shared CPU) with a
Lua script that POSTs single Fashion-MNIST test images (the first ``--images`` of the test split in
turn, so that the cascade sends its usual share to the teacher), as JSON and as binary tensor data:

* ``ceiling``: a bare FastAPI endpoint on uvicorn that reads the body, ``json.loads`` it (the JSON
  header only, for binary bodies) and returns a fixed answer: the HTTP stack's own cost;
* ``cascade``: ``cascadekit serve --demo`` (student -> teacher);
* ``teacher``: ``cascadekit serve --demo --teacher-only`` (the teacher alone, same code).

It prints requests/s and p99 latency of each, the ratios measured in this run, and checks that no
request was lost (every wrk request answered 200, no socket error, and the server's own
``cascadekit_requests_total{code="200"}`` covers them). ``--profile`` also samples each cascadekit
server with py-spy and prints where its CPU time went, by part of the request path.

Setup (installs wrk, a Debian package) and run::

    scripts/setup_bench.sh
    .venv/bin/python benchmarks/serve_wrk.py                 # full zoo (cached by the demo)
    .venv/bin/python benchmarks/serve_wrk.py --reduced --profile
    .venv/bin/python benchmarks/serve_wrk.py --workers 2     # + both with 2 worker processes
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

_LUA = """
local dir, n = os.getenv("WRK_DIR"), tonumber(os.getenv("WRK_N"))
local bodies = {}
for i = 1, n do
  local f = assert(io.open(dir .. "/body_" .. i, "rb"))
  bodies[i] = f:read("*all")
  f:close()
end
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("WRK_CTYPE")
local hl = os.getenv("WRK_HL")
if hl ~= nil and hl ~= "" then wrk.headers["Inference-Header-Content-Length"] = hl end
local i = 0
request = function()
  i = i % n + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %.1f %.1f\\n", summary.requests,
    summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""

#: Profile categories: the first pattern found scanning a sample's stack from its innermost frame
#: outwards names the part of the request path the sample belongs to.
_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("metrics (prometheus_client)", ("prometheus_client", "cascadekit/serve/metrics.py")),
    ("model compute (torch)", ("torch/", "cascadekit/adapters/torch.py", "cascadekit/data/_nets")),
    ("response encoding", ("encode_infer_response", "_encode_", "Reply.json")),
    ("body parse + validation", ("cascadekit/oip.py", "json/", "orjson", "_validation.py")),
    ("routing engine", ("cascadekit/routing.py", "cascadekit/scores.py", "cascadekit/cascade.py")),
    ("batcher + executor hops", ("cascadekit/serve/batching.py", "concurrent/futures")),
    (
        "service (handle_infer, _route)",
        (
            "cascadekit/serve/service.py",
            "cascadekit/serve/model_state.py",
            "cascadekit/serve/replies.py",
        ),
    ),
    ("app (body read, reply)", ("cascadekit/serve/app.py",)),
    ("HTTP stack (uvicorn, starlette, fastapi)", ("uvicorn/", "starlette/", "fastapi/", "h11")),
    ("asyncio event loop", ("asyncio/", "uvloop")),
)
#: Innermost frames of a thread that waits (the event loop in epoll, a stage thread for work):
#: py-spy cannot always tell these idle, so they are left out.
_IDLE = ("DaemonExecutor._work", "run (cascadekit/serve/app.py", "Server.run (", "Runner.run (")


def bare_server(port: int) -> None:
    """The ceiling: read the body, ``json.loads`` it, return a fixed answer."""
    import uvicorn
    from fastapi import FastAPI, Request, Response

    app = FastAPI()
    answer = json.dumps(
        {
            "model_name": "fashion-mnist",
            "outputs": [{"name": "label", "shape": [1], "datatype": "INT64", "data": [9]}],
        }
    ).encode()

    @app.post("/v2/models/{name}/infer")
    async def infer(request: Request, name: str) -> Response:
        body = await request.body()
        hl = request.headers.get("inference-header-content-length")
        json.loads(body[: int(hl)] if hl else body)
        return Response(answer, media_type="application/json")

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def bodies(images: np.ndarray) -> dict[str, tuple[list[bytes], str, str]]:
    """JSON and binary request bodies, one image each: (bodies, content type, header length)."""
    x = np.ascontiguousarray(images, dtype=np.uint8)
    tensor = {"name": "image", "shape": [1, *x.shape[1:]], "datatype": "UINT8"}
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": x[0].nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    as_json = [
        json.dumps({"inputs": [{**tensor, "data": im.ravel().tolist()}]}).encode() for im in x
    ]
    binary = [header + im.tobytes() for im in x]
    return {
        "json": (as_json, "application/json", ""),
        "binary": (binary, "application/octet-stream", str(len(header))),
    }


def wrk(
    url: str,
    body: tuple[list[bytes], str, str],
    args: argparse.Namespace,
    seconds: int,
    model: str = "fashion-mnist",
) -> Any:
    """One wrk run, cycling through the bodies; returns its RESULT line's numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        for i, b in enumerate(body[0]):
            (Path(tmp) / f"body_{i + 1}").write_bytes(b)
        (Path(tmp) / "post.lua").write_text(_LUA)
        env = dict(os.environ, WRK_DIR=tmp, WRK_N=str(len(body[0])), WRK_CTYPE=body[1])
        env["WRK_HL"] = body[2]
        cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s"]
        cmd += [
            "--timeout",
            f"{getattr(args, 'wrk_timeout', 10)}s",
            "-s",
            str(Path(tmp) / "post.lua"),
        ]
        out = subprocess.run(
            [*cmd, f"{url}/v2/models/{model}/infer"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    n, dur_us, conn, read, write, status, tmo, p50, p99 = (float(v) for v in line.split()[1:])
    return {
        "requests": int(n),
        "rps": n / (dur_us / 1e6),
        "p50_ms": p50 / 1e3,
        "p99_ms": p99 / 1e3,
        "lost": int(conn + read + write + status + tmo),
    }


def server_counts(url: str, model: str = "fashion-mnist") -> tuple[float, list[float], float]:
    """The server's 200 answers, its inputs answered per stage, and its fallbacks (inputs an
    earlier stage answered because a later one timed out, failed or was overloaded)."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text

    def value(pattern: str) -> float:
        m = re.findall(pattern + r" (\S+)$", text, re.M)
        return float(m[0]) if m else 0.0

    ok = value(rf'^cascadekit_requests_total\{{code="200",model="{model}"\}}')
    stages = [value(rf'^cascadekit_inputs_total\{{model="{model}",stage="{k}"\}}') for k in (0, 1)]
    fallbacks = sum(
        float(v)
        for v in re.findall(
            rf'^cascadekit_fallbacks_total\{{model="{model}"[^}}]*\}} (\S+)$', text, re.M
        )
    )
    return ok, stages, fallbacks


def settle(url: str, model: str, timeout: float = 120.0) -> None:
    """Wait until the server has answered the requests a finished wrk run left in flight."""
    deadline = time.monotonic() + timeout
    last = -1.0
    while time.monotonic() < deadline:
        done = sum(server_counts(url, model)[1])
        if done == last:
            return
        last = done
        time.sleep(1.0)


def profile_parts(raw: Path) -> list[tuple[str, float]]:
    """Shares of py-spy's samples (collapsed stacks) while serving, by part of the request path."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if frames[-1].startswith(_IDLE):
            continue
        if not any(("uvicorn/" in f or "DaemonExecutor._work" in f) for f in frames) or any(
            ("importlib" in f or "_start_model" in f) for f in frames
        ):
            continue  # start-up (imports, zoo loading, warm-up), not serving
        part = "other"
        for frame in reversed(frames):
            hit = next((p for p, pats in _PARTS if any(s in frame for s in pats)), None)
            if hit is not None:
                part = hit
                break
        counts[part] += int(n)
    total = sum(counts.values()) or 1
    return [(p, c / total) for p, c in counts.most_common()]


def measure(
    name: str,
    cmd: list[str],
    args: argparse.Namespace,
    model: str = "fashion-mnist",
    request_bodies: dict[str, tuple[list[bytes], str, str]] | None = None,
) -> dict[str, Any]:
    """Start a server, load it with wrk (JSON, then binary bodies), stop it; its figures."""
    from cascadekit.serve.launch import serve_process

    raw = Path(tempfile.mkdtemp()) / f"{name}.txt"
    spy = args.profile and name != "ceiling"
    if spy:
        pyspy = str(Path(sys.executable).with_name("py-spy"))
        spy_cmd = [pyspy, "record", "-r", "250", "-f", "raw", "-o", str(raw), "--subprocesses"]
        cmd = [*spy_cmd, "--", *cmd]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    results: dict[str, Any] = {}
    with serve_process(cmd, env=env) as server:
        url = server.url
        for kind, body in (request_bodies or bodies(args.images_)).items():
            wrk(url, body, args, 1, model)  # warm-up, not counted
            if name != "ceiling":
                settle(url, model)
            before = server_counts(url, model) if name != "ceiling" else (0.0, [0.0, 0.0], 0.0)
            r = wrk(url, body, args, args.duration, model)
            r["teacher_share"] = r["fallback_share"] = float("nan")
            if name != "ceiling":  # every request wrk counted was answered 200 by the server
                after = server_counts(url, model)
                r["lost"] += max(0, r["requests"] - int(after[0] - before[0]))
                per_stage = [a - b for a, b in zip(after[1], before[1], strict=True)]
                r["teacher_share"] = per_stage[1] / max(sum(per_stage), 1.0)
                r["fallback_share"] = (after[2] - before[2]) / max(sum(per_stage), 1.0)
            results[kind] = r
    if spy and raw.is_file():
        results["profile"] = profile_parts(raw)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=8, help="seconds of load per measurement")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reduced", action="store_true", help="serve the reduced zoo's demo")
    p.add_argument("--images", type=int, default=500, help="distinct test images, cycled")
    p.add_argument("--profile", action="store_true", help="sample the servers with py-spy")
    p.add_argument("--torch-threads", type=int, default=None, help="cascadekit serve's option")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run the cascade and the teacher with `cascadekit serve --workers N` (N > 1)",
    )
    p.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=8000, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.bare_server:
        bare_server(args.port)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run scripts/setup_bench.sh (apt-get install -y wrk).")
    if args.profile and not Path(sys.executable).with_name("py-spy").is_file():
        sys.exit('--profile needs py-spy next to this Python: pip install "cascadekit[dev]".')

    from cascadekit.data.zoo import load_fashion_mnist_zoo

    args.images_ = load_fashion_mnist_zoo(reduced=args.reduced).images["test"][: args.images]
    cli = [sys.executable, "-m", "cascadekit.cli", "serve", "--demo", "--log-level", "warning"]
    cli += ["--reduced"] if args.reduced else []
    if args.torch_threads is not None:
        cli += ["--torch-threads", str(args.torch_threads)]
    servers = {
        "ceiling": [sys.executable, __file__, "--bare-server"],
        "cascade": cli,
        "teacher": [*cli, "--teacher-only"],
    }
    if args.workers > 1:
        n = str(args.workers)
        servers[f"cascade-x{n}"] = [*cli, "--workers", n]
        servers[f"teacher-x{n}"] = [*cli, "--teacher-only", "--workers", n]
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, one image per request, "
        f"torch threads {args.torch_threads or 'default'}; "
        f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}"
    )
    res: dict[str, dict[str, Any]] = {}
    for name, cmd in servers.items():
        res[name] = measure(name, cmd, args)
        for kind in ("json", "binary"):
            r = res[name][kind]
            print(
                f"{name:10s} {kind:6s} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                f"p99 {r['p99_ms']:6.2f} ms  lost {r['lost']} of {r['requests']}"
                + (
                    f"  teacher share {r['teacher_share']:.2f}, fallbacks {r['fallback_share']:.2f}"
                    if name.startswith("cascade")
                    else ""
                )
            )
    for kind in ("json", "binary"):
        c, t, b = (res[n][kind] for n in ("cascade", "teacher", "ceiling"))
        print(
            f"{kind:6s}: cascade / ceiling x{c['rps'] / b['rps']:.2f}, cascade / teacher "
            f"x{c['rps'] / t['rps']:.2f} (p99 x{c['p99_ms'] / t['p99_ms']:.2f}), teacher / "
            f"ceiling x{t['rps'] / b['rps']:.2f}"
        )
        if args.workers > 1:
            w = f"x{args.workers}"
            c2, t2 = res[f"cascade-{w}"][kind], res[f"teacher-{w}"][kind]
            print(
                f"{kind:6s}: {args.workers} workers / 1: cascade x{c2['rps'] / c['rps']:.2f} "
                f"(p99 x{c2['p99_ms'] / c['p99_ms']:.2f}), teacher x{t2['rps'] / t['rps']:.2f} "
                f"(p99 x{t2['p99_ms'] / t['p99_ms']:.2f}); cascade {w} / ceiling "
                f"x{c2['rps'] / b['rps']:.2f}"
            )
    lost = sum(res[n][k]["lost"] for n in res for k in ("json", "binary"))
    print(f"lost requests: {lost}")
    for name in res:
        if "profile" in res[name]:
            parts = ", ".join(f"{p} {s:.0%}" for p, s in res[name]["profile"])
            print(f"profile {name} (share of the server's CPU samples): {parts}")


if __name__ == "__main__":
    main()
