"""Pinned CPU kernels: trained models that come out the same on every x86-64 machine.

PyTorch picks its CPU kernels by the processor's vector width: its own vectorised operators
(``ATEN_CPU_CAPABILITY``), oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``) and MKL's matrix
products (``MKL_CBWR``) each round differently with AVX2 and with AVX-512. Training amplifies
those last-bit differences: the same recipe, seeds and data trained on two processors gave two
different zoos (measured on the reduced recipe, on one AVX-512 machine: teacher test accuracy
0.868 with its native kernels, 0.8625 with PyTorch's AVX2 operators, 0.857 with every library
at AVX2). Deterministic algorithms do not help: they make one machine repeat itself, not two
machines agree.

So every cached model is trained in a child process whose three libraries are pinned to AVX2,
which every x86-64 processor of the last decade runs: the trained weights and their logits are
then the same wherever they are built (with the same library versions). The settings are read
once, when the libraries load, which is why a child process is needed: the caller's own torch
keeps its native (faster) kernels for serving and timing.

Examples
--------
>>> sorted(PINNED_KERNELS)
['ATEN_CPU_CAPABILITY', 'MKL_CBWR', 'ONEDNN_MAX_CPU_ISA']
>>> KERNELS_ID
'avx2'
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from ..errors import CascadeError

__all__ = [
    "KERNELS_ID",
    "PINNED_KERNELS",
    "deterministic",
    "kernels_pinned",
    "report_error",
    "report_progress",
    "run_pinned",
]

#: Environment of a process whose PyTorch, oneDNN and MKL kernels are pinned to AVX2.
PINNED_KERNELS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
}
#: Name of the pinned kernel set; it enters the cache keys of the models trained with it.
KERNELS_ID = "avx2"

_PROGRESS_PREFIX = "cascadekit-progress "
_ERROR_PREFIX = "cascadekit-error "


@contextmanager
def deterministic(
    torch: Any, random_state: int | None = None, threads: int | None = None
) -> Iterator[None]:
    """Run a block with torch's deterministic algorithms, all restored on exit.

    Parameters
    ----------
    torch : module
        The imported ``torch``.
    random_state : int, optional
        Seed torch's global random number generator for the block, in a fork of it: the
        caller's generator state is restored on exit. ``None`` leaves the generator alone.
    threads : int, optional
        torch CPU threads in the block (``None``: unchanged).

    Examples
    --------
    >>> import torch
    >>> with deterministic(torch, random_state=0, threads=1):
    ...     a = torch.rand(2)
    >>> with deterministic(torch, random_state=0):
    ...     bool((torch.rand(2) == a).all()), torch.are_deterministic_algorithms_enabled()
    (True, True)
    >>> torch.are_deterministic_algorithms_enabled()
    False
    """
    old_det = torch.are_deterministic_algorithms_enabled()
    old_threads = torch.get_num_threads()
    fork = torch.random.fork_rng(devices=[]) if random_state is not None else nullcontext()
    with fork:
        if random_state is not None:
            torch.manual_seed(int(random_state))
        torch.use_deterministic_algorithms(True)
        if threads is not None:
            torch.set_num_threads(int(threads))
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(old_det)
            torch.set_num_threads(old_threads)


def kernels_pinned() -> bool:
    """True in a process started with :data:`PINNED_KERNELS` (e.g. by :func:`run_pinned`)."""
    return all(os.environ.get(k) == v for k, v in PINNED_KERNELS.items())


def report_progress(description: str, fraction: float) -> None:
    """In a pinned child: send a progress update to the parent (one line on stdout)."""
    line = json.dumps({"description": description, "fraction": float(fraction)})
    print(_PROGRESS_PREFIX + line, flush=True)


def report_error(exc: CascadeError) -> None:
    """In a pinned child: send a user-facing error to the parent, which raises it again."""
    print(_ERROR_PREFIX + json.dumps({"type": type(exc).__name__, "message": str(exc)}), flush=True)


def _reraise(line: str) -> None:
    from .. import errors

    msg = json.loads(line[len(_ERROR_PREFIX) :])
    cls = getattr(errors, str(msg["type"]), CascadeError)
    if not (isinstance(cls, type) and issubclass(cls, CascadeError)):
        cls = CascadeError
    raise cls(str(msg["message"]))


def run_pinned(
    target: str,
    args: Sequence[str],
    progress: Callable[[str, float], None] | None = None,
) -> None:
    """Call ``target(args)`` (``"package.module:function"``) in a child process with pinned
    kernels, relaying its progress updates (:func:`report_progress`).

    A :class:`~cascadekit.errors.CascadeError` the child reports (:func:`report_error`) is
    raised again here with its type and message; any other failure raises a ``CascadeError``
    with the child's last output lines. Whatever it wrote half-way is left for the caller's
    cache to ignore (cache entries are marked complete only by their last file).
    """
    env = {**os.environ, **PINNED_KERNELS}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    module, _, function = target.partition(":")
    code = f"import sys; from {module} import {function} as f; f(sys.argv[1:])"
    tail: list[str] = []
    error: str | None = None
    with subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(_PROGRESS_PREFIX):
                if progress is not None:
                    msg = json.loads(line[len(_PROGRESS_PREFIX) :])
                    progress(str(msg["description"]), float(msg["fraction"]))
            elif line.startswith(_ERROR_PREFIX):
                error = line
            else:
                tail = [*tail[-19:], line.rstrip()]
        status = proc.wait()
    if error is not None:
        _reraise(error)
    if status != 0:
        raise CascadeError(
            f"Training in a child process with pinned kernels ({target}) failed with exit code "
            f"{status}. Its last output:\n" + "\n".join(tail)
        )
