"""Dynamic batching per cascade stage: bounded queue, max batch size, max wait, deadlines.

A :class:`StageBatcher` owns one stage's model. Requests :meth:`~StageBatcher.submit` a block of
inputs (all of a request's inputs for the first stage, only the deferred ones for later stages)
and await the logits. A single worker task gathers blocks from many requests into one batch of
at most ``max_batch_size`` inputs, waiting at most ``max_wait`` seconds after the first block
arrives, runs the model once in a dedicated thread, and hands each block its rows back. A block
that reaches an idle stage (no batch running, empty queue) runs at once: there is nothing to
batch it with, and the blocks that arrive while it runs form the next batch.

The queue is bounded in *inputs* (``max_queue``): a block that does not fit is refused at once
with :class:`~cascadekit.oip.OverloadedError` (HTTP 503 with ``Retry-After`` for the
first stage; a fallback to the earlier stage's answer for later stages). Blocks whose deadline has
passed, or whose caller stopped waiting, are dropped before the model runs.

When a batch of several blocks fails and the batcher isolates failures (the first stage does),
each block is run again alone, so only the blocks the model cannot process get the error. The
model runs in a daemon thread: a model that hangs cannot keep the process alive after
:meth:`~StageBatcher.stop`, which waits a bounded time.

Examples
--------
>>> import asyncio, numpy as np
>>> async def main():
...     b = StageBatcher(lambda x: np.stack([x, -x], 1), BatchPolicy(max_batch_size=8))
...     await b.start()
...     outs = await asyncio.gather(*(b.submit(np.array([float(i)])) for i in range(5)))
...     await b.stop()
...     return [o.tolist() for o in outs], b.stats.batches
>>> asyncio.run(main())
([[[0.0, -0.0]], [[1.0, -1.0]], [[2.0, -2.0]], [[3.0, -3.0]], [[4.0, -4.0]]], 1)
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..adapters import n_inputs
from ..errors import ParameterError, StageUnavailableError
from ..oip import DeadlineExceededError, OverloadedError

__all__ = ["BatchPolicy", "BatcherStats", "StageBatcher"]

#: ``observer(batch_size, queue_seconds_of_each_block, model_seconds)`` after every batch.
BatchObserver = Callable[[int, list[float], float], None]


@dataclass(frozen=True)
class BatchPolicy:
    """How one stage batches.

    Parameters
    ----------
    max_batch_size : int, default=64
        Largest number of inputs per model call (a single larger block still runs whole).
    max_wait : float, default=0.002
        Seconds to wait for more inputs after the first one arrives while the stage is busy:
        inputs that reach an idle stage (no batch running, nothing queued) run at once, and the
        inputs that arrive meanwhile are batched together.
    max_queue : int, default=2048
        Largest number of inputs waiting; beyond it, :meth:`StageBatcher.submit` refuses.

    Examples
    --------
    >>> BatchPolicy(max_batch_size=0)
    Traceback (most recent call last):
    ...
    cascadekit.errors.ParameterError: Expected max_batch_size to be a positive integer; got 0.
    """

    max_batch_size: int = 64
    max_wait: float = 0.002
    max_queue: int = 2048

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(f"Expected {name} to be a positive integer; got {v!r}.")
        w = self.max_wait
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < 60:
            raise ParameterError(
                f"Expected max_wait to be a number of seconds in [0, 60); got {w!r}."
            )


@dataclass
class BatcherStats:
    """Counters of one batcher (also exported as Prometheus metrics by the app)."""

    batches: int = 0
    inputs: int = 0
    refused: int = 0
    expired: int = 0
    failures: int = 0
    #: batches started at once because the stage was idle (no batch running, empty queue)
    immediate: int = 0


class DaemonExecutor(Executor):
    """A one-thread executor whose thread is a daemon: a hung call never blocks the exit.

    (A :class:`~concurrent.futures.ThreadPoolExecutor` thread is joined when the interpreter
    exits, so a model stuck in a call would keep a stopped server's process alive.)

    Examples
    --------
    >>> ex = DaemonExecutor("demo")
    >>> ex.submit(sum, [1, 2]).result()
    3
    >>> ex.shutdown()
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fut, fn, args, kwargs = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` in the thread."""
        if self._closed:
            raise RuntimeError("cannot schedule new calls after shutdown")
        fut: Future[Any] = Future()
        self._jobs.put((fut, fn, args, kwargs))
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; the thread ends after its current call (``wait`` joins it)."""
        self._closed = True
        self._jobs.put(None)
        if wait:
            self._thread.join()


def _rows(out: Any, lo: int, hi: int) -> Any:
    """Rows ``lo:hi`` of a model's output (an array, or a tuple of arrays sliced alike)."""
    if isinstance(out, tuple):
        return tuple(a[lo:hi] for a in out)
    return out[lo:hi]


def _time_out(fut: asyncio.Future[Any]) -> None:
    if not fut.done():  # a done future is skipped by the worker (the caller gave up)
        fut.set_exception(TimeoutError())


@dataclass
class _Block:
    inputs: Any
    n: int
    future: asyncio.Future[Any]
    deadline: float | None
    enqueued: float = field(default_factory=time.monotonic)


class StageBatcher:
    """Dynamic batcher in front of one model (see the module docstring).

    Parameters
    ----------
    model : callable
        ``model(inputs) -> logits`` (any :class:`cascadekit.adapters.Model`); runs in a worker
        thread owned by this batcher, one batch at a time. It may return a tuple of arrays
        with one row per input each (e.g. logits and scores): each block gets its rows of
        every array.
    policy : BatchPolicy
    name : str
        Used in error messages.
    observer : callable, optional
        Called after each batch with ``(batch_size, queue_seconds_per_block, model_seconds)``.
    concat : callable, optional
        Joins blocks into one batch; defaults to :func:`numpy.concatenate`.
    isolate_failures : bool, default=False
        When a batch of several blocks fails, run each block again alone, so that only the
        blocks the model fails on get the error (not after a
        :class:`~cascadekit.errors.StageUnavailableError`, which is not about the inputs).
    """

    def __init__(
        self,
        model: Callable[[Any], Any],
        policy: BatchPolicy | None = None,
        name: str = "stage",
        observer: BatchObserver | None = None,
        concat: Callable[[list[Any]], Any] | None = None,
        isolate_failures: bool = False,
    ) -> None:
        self.model = model
        self.policy = policy or BatchPolicy()
        self.name = name
        self.observer = observer
        self.concat = concat or (lambda parts: np.concatenate(parts, axis=0))
        self.isolate_failures = isolate_failures
        self.stats = BatcherStats()
        self._queue: deque[_Block] = deque()
        self._queued_inputs = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: DaemonExecutor | None = None
        self._closing = False

    @property
    def queued(self) -> int:
        """Inputs waiting in the queue."""
        return self._queued_inputs

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the worker task (call from the event loop that will submit)."""
        if self.running:
            return
        self._closing = False
        self._wakeup = asyncio.Event()
        self._executor = DaemonExecutor(f"cascadekit-{self.name}")
        self._task = asyncio.create_task(self._run(), name=f"batcher-{self.name}")

    async def run_direct(self, inputs: Any) -> Any:
        """Run the model on ``inputs`` in the worker thread, bypassing the queue (warm-up)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.model, inputs)

    async def submit(
        self, inputs: Any, deadline: float | None = None, timeout: float | None = None
    ) -> Any:
        """Queue ``inputs`` (a block of n inputs) and return the model's n rows of logits.

        Parameters
        ----------
        inputs : array-like
            A batch of inputs (first dimension = number of inputs).
        deadline : float, optional
            ``time.monotonic()`` value after which the block is dropped unrun.
        timeout : float, optional
            Seconds to wait for the answer; past them :class:`TimeoutError` is raised and the
            block is dropped if it has not run yet (one timer, cheaper than
            :func:`asyncio.wait_for`'s extra task).

        Raises
        ------
        OverloadedError
            The queue cannot take ``n`` more inputs, or the batcher is stopping.
        DeadlineExceededError
            The deadline passed before the block ran.
        TimeoutError
            No answer within ``timeout`` seconds.
        Exception
            Whatever the model raised.
        """
        if self._wakeup is None or self._closing:
            raise OverloadedError(f"Stage {self.name!r} is not running (the server is stopping).")
        n = n_inputs(inputs)
        if n == 0:
            return self.model(inputs)
        if self._queued_inputs + n > self.policy.max_queue and self._queued_inputs > 0:
            self.stats.refused += 1
            raise OverloadedError(
                f"Stage {self.name!r} is overloaded: {self._queued_inputs} inputs are queued "
                f"and the limit is {self.policy.max_queue}. Retry after a short wait."
            )
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Block(inputs, n, fut, deadline))
        self._queued_inputs += n
        self._wakeup.set()
        if timeout is None:
            return await fut
        timer = loop.call_later(timeout, _time_out, fut)
        try:
            return await fut
        finally:
            timer.cancel()

    async def stop(self, timeout: float | None = None) -> bool:
        """Finish queued blocks, then stop the worker task and its thread.

        Parameters
        ----------
        timeout : float, optional
            Longest wait in seconds for the queued blocks and the running batch. Past it, the
            worker is cancelled and the blocks still waiting get
            :class:`~cascadekit.oip.OverloadedError`; a model call still running
            is abandoned in its daemon thread.

        Returns
        -------
        bool
            True when everything finished within ``timeout``.
        """
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        finished = True
        task = self._task
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                finished = False
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            elif not task.cancelled():
                task.exception()  # consumed: a crashed worker is reported by its blocks
        self._task = None
        while self._queue:
            b = self._queue.popleft()
            self._queued_inputs -= b.n
            if not b.future.done():
                b.future.set_exception(
                    OverloadedError(f"Stage {self.name!r} stopped before these inputs ran.")
                )
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        return finished

    def _take(self) -> list[_Block]:
        """Pop blocks for one batch, dropping abandoned and expired ones."""
        blocks: list[_Block] = []
        total = 0
        now = time.monotonic()
        while self._queue:
            b = self._queue[0]
            if b.future.done():  # the caller gave up (timeout, cancel)
                self._queue.popleft()
                self._queued_inputs -= b.n
                continue
            if b.deadline is not None and now >= b.deadline:
                self._queue.popleft()
                self._queued_inputs -= b.n
                self.stats.expired += 1
                b.future.set_exception(
                    DeadlineExceededError(
                        f"The deadline passed while the inputs waited for stage {self.name!r}."
                    )
                )
                continue
            if blocks and total + b.n > self.policy.max_batch_size:
                break
            self._queue.popleft()
            self._queued_inputs -= b.n
            blocks.append(b)
            total += b.n
            if total >= self.policy.max_batch_size:
                break
        return blocks

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        idle = False  # the stage was idle (no batch running, empty queue) when inputs arrived
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                idle = True
                continue
            if idle:  # nothing to batch with: waiting would only add latency
                self.stats.immediate += 1
            # wait for more inputs, up to max_wait after the oldest block arrived
            first = self._queue[0].enqueued
            while (
                not idle and self._queued_inputs < self.policy.max_batch_size and not self._closing
            ):
                remaining = first + self.policy.max_wait - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
            idle = False
            blocks = self._take()
            if not blocks:
                continue
            start = time.monotonic()
            waits = [start - b.enqueued for b in blocks]
            total = sum(b.n for b in blocks)
            try:
                batch = (
                    blocks[0].inputs
                    if len(blocks) == 1
                    else self.concat([b.inputs for b in blocks])
                )
                arr = await self._call(loop, batch, total)
            except Exception as exc:  # the model failed on this batch
                self.stats.failures += 1
                if (
                    self.isolate_failures
                    and len(blocks) > 1
                    and not isinstance(exc, StageUnavailableError)
                ):
                    await self._run_alone(loop, blocks)
                    continue
                for b in blocks:
                    if not b.future.done():
                        b.future.set_exception(exc)
                continue
            model_seconds = time.monotonic() - start
            self.stats.batches += 1
            self.stats.inputs += total
            lo = 0
            for b in blocks:
                if not b.future.done():
                    b.future.set_result(_rows(arr, lo, lo + b.n))
                lo += b.n
            if self.observer is not None:
                self.observer(total, waits, model_seconds)

    async def _call(self, loop: asyncio.AbstractEventLoop, batch: Any, total: int) -> Any:
        out = await loop.run_in_executor(self._executor, self.model, batch)
        parts = out if isinstance(out, tuple) else (out,)
        arrs = tuple(np.asarray(p) for p in parts)
        for arr in arrs:
            if arr.ndim < 1 or arr.shape[0] != total:
                raise ValueError(
                    f"stage {self.name!r} returned {arr.shape[0] if arr.ndim else 0} rows "
                    f"for {total} inputs"
                )
        return arrs if isinstance(out, tuple) else arrs[0]

    async def _run_alone(self, loop: asyncio.AbstractEventLoop, blocks: list[_Block]) -> None:
        """After a failed batch: each block alone, so only the ones the model fails on fail."""
        for b in blocks:
            if b.future.done():
                continue
            try:
                arr = await self._call(loop, b.inputs, b.n)
            except Exception as exc:
                if not b.future.done():
                    b.future.set_exception(exc)
                continue
            self.stats.batches += 1
            self.stats.inputs += b.n
            if not b.future.done():
                b.future.set_result(arr)
