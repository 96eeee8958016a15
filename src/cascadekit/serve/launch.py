"""Start a server in its own process and wait until it is ready: what the process-level tests and
the serving benchmarks share.

:func:`serve_process` runs a command (``cascadekit serve ...`` or any server that answers
``GET /v2/health/ready``) on a free loopback port, waits until it is ready and stops it (SIGINT,
then a kill after ``stop_timeout``) when the ``with`` block ends. :func:`wait_until_ready` is the
waiting part alone, for a process started otherwise.

Examples
--------
>>> 1024 <= free_port() < 65536
True
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from ..errors import CascadeError

__all__ = ["ServerProcess", "ServerStartError", "free_port", "serve_process", "wait_until_ready"]


class ServerStartError(CascadeError):
    """A server process exited, or did not get ready in time."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _exit_code(proc: Any) -> int | None:
    """The exit code of a ``subprocess.Popen`` or ``multiprocessing.Process``; None if alive."""
    if isinstance(proc, subprocess.Popen):
        return proc.poll()
    return None if proc.is_alive() else int(proc.exitcode or 0)


def wait_until_ready(
    url: str, proc: Any, timeout: float = 600.0, log: IO[bytes] | None = None
) -> None:
    """Poll ``GET {url}/v2/health/ready`` until it answers 200.

    Parameters
    ----------
    url : str
        The server's base URL (``http://127.0.0.1:8000``).
    proc : subprocess.Popen or multiprocessing.Process
        The server's process: its exit ends the wait with an error.
    timeout : float, default=600
        Seconds to wait (loading and warming the models up included).
    log : binary file, optional
        The file the process writes its stderr to: its end goes into the error.

    Raises
    ------
    ServerStartError
        The process exited, or the server was not ready within ``timeout`` seconds.
    """
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = _exit_code(proc)
        if code is not None:
            tail = ""
            if log is not None:
                log.seek(0)
                tail = ": " + log.read().decode(errors="replace")[-2000:]
            raise ServerStartError(f"The server process exited with code {code}{tail}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise ServerStartError(
        f"The server at {url} was not ready within {timeout:g} s; raise the timeout for a slow "
        "start (model loading, warm-up)."
    )


@dataclass
class ServerProcess:
    """A server started by :func:`serve_process`: its process and base URL."""

    proc: subprocess.Popen[bytes]
    url: str
    port: int


@contextlib.contextmanager
def serve_process(
    cmd: Sequence[str],
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    log: IO[bytes] | None = None,
    timeout: float = 600.0,
    stop_timeout: float = 60.0,
) -> Iterator[ServerProcess]:
    """Run ``cmd --port PORT`` and yield once the server is ready; stop it on exit.

    Parameters
    ----------
    cmd : sequence of str
        The command, e.g. ``[sys.executable, "-m", "cascadekit.cli", "serve", "--demo"]``;
        ``--port PORT`` is appended.
    port : int, optional
        Defaults to a free port.
    env : mapping, optional
        The environment; defaults to this process's, with ``PYTHONPATH`` set to this
        interpreter's ``sys.path`` (so the child imports the same cascadekit).
    log : binary file, optional
        Receives the server's stderr (else discarded); its end goes into a start-up error.
    timeout : float, default=600
        Seconds to wait for readiness.
    stop_timeout : float, default=60
        Seconds to wait for the server to drain and exit after SIGINT, before it is killed.
    """
    port = free_port() if port is None else port
    if env is None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if log is None else log,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, proc, timeout, log)
        yield ServerProcess(proc, url, port)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
