"""``cascadekit serve``: the Open Inference Protocol server (uvicorn or Ray Serve)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    pass

from ..errors import (
    ParameterError,
)
from .common import app, friendly

__all__ = ["serve"]


#: What ``cascadekit serve --demo NAME`` serves.
_SERVE_DEMOS = ("fashion-mnist", "text")


@app.command()
@friendly
def serve(
    config_file: Annotated[
        Path | None,
        typer.Argument(
            help="YAML file describing the cascade (models, score, thresholds...); with --demo, "
            "which demo: fashion-mnist (default) or text."
        ),
    ] = None,
    demo_model: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Serve a demo cascade: Fashion-MNIST images, or `--demo text`: tweet sentiment "
            "on strings (MiniLM -> MPNet-base; needs `scripts/setup.sh --text`).",
        ),
    ] = False,
    reduced: Annotated[
        bool,
        typer.Option(
            "--reduced",
            help="With --demo: the reduced recipe (Fashion-MNIST: small splits, same networks, "
            "trains in about a minute on a new machine; text: 300 tweets, MiniLM-L3 -> MiniLM-L6).",
        ),
    ] = False,
    teacher_only: Annotated[
        bool,
        typer.Option(
            "--teacher-only",
            help="With --demo: serve the demo's teacher alone behind the same server (every "
            "input answered by the teacher), to compare with the cascade.",
        ),
    ] = False,
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default 127.0.0.1: loopback only).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000; 0 = any free).")] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            help="Also serve the protocol's gRPC service on this port (0 = any free; default: "
            "no gRPC). Needs the grpc extra."
        ),
    ] = None,
    torch_threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="torch.set_num_threads at start-up (overrides the config file; 1 suits a small "
            "machine: each stage's thread then uses one core).",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes on the one port (local backend), each loading the models; "
            "metrics, admin threshold changes, readiness and drain are the server's.",
        ),
    ] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    backend: Annotated[
        str,
        typer.Option(
            help="local (one process, uvicorn) or ray (Ray Serve: one deployment per stage "
            "plus a router, each scaled on its own)."
        ),
    ] = "local",
    ray_config: Annotated[
        Path | None,
        typer.Option(help="With --backend ray: a Ray Serve config file (examples/ray_serve.yaml)."),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="With --backend ray: Ray cluster address ('auto').")
    ] = None,
) -> None:
    """Serve a cascade over the Open Inference Protocol (KServe v2) with uvicorn or Ray Serve."""
    from ..serve import ServeConfig, create_app, run
    from ..serve.workers import ServeSpec, check_workers, run_workers

    if backend not in ("local", "ray"):
        raise ParameterError(f"Expected --backend local or ray; got {backend!r}.")
    if grpc_port is not None and backend != "local":
        raise ParameterError("--grpc-port goes with --backend local (the uvicorn server).")
    check_workers(workers)
    if workers > 1 and backend == "ray":
        raise ParameterError(
            "--workers goes with the local backend; with --backend ray, scale the router and "
            "stage deployments with their replicas in the Ray Serve config."
        )
    if backend == "ray" and ray_config is not None:
        from ..serve.ray import serve_from_cli

        serve_from_cli(None, ServeConfig(), ray_config=ray_config, address=ray_address)
        return
    if reduced and not demo_model:
        raise ParameterError("--reduced goes with --demo: `cascadekit serve --demo --reduced`.")
    if teacher_only and not demo_model:
        raise ParameterError(
            "--teacher-only goes with --demo: `cascadekit serve --demo --teacher-only`; for "
            "your own cascade, serve a config file whose thresholds are all -inf."
        )
    demo_name = str(config_file) if demo_model and config_file is not None else None
    if demo_name is not None and demo_name not in _SERVE_DEMOS:
        raise ParameterError(
            f"Expected the demo to be one of {', '.join(_SERVE_DEMOS)}; got {demo_name!r}. "
            "Serve a config file without --demo: `cascadekit serve config.yaml`."
        )
    if not demo_model and config_file is None:
        raise ParameterError(
            "Expected either --demo or a config file: `cascadekit serve --demo` or "
            "`cascadekit serve config.yaml`."
        )
    spec = ServeSpec(
        None if demo_model else str(config_file),
        demo=demo_name or "fashion-mnist",
        reduced=reduced,
        teacher_only=teacher_only,
        host=host,
        port=port,
        torch_threads=torch_threads,
        grpc_port=grpc_port,
    )
    if workers > 1:
        run_workers(spec, workers, log_level=log_level)
        return
    served, config = spec.load()
    if backend == "ray":
        from ..serve.ray import serve_from_cli

        serve_from_cli(served, config, address=ray_address)
        return
    web = create_app(served, config)
    if grpc_port is not None:
        from ..serve.grpc import add_grpc

        add_grpc(web, grpc_port)
    run(web, config, log_level=log_level)
