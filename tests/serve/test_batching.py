"""The stage batcher: tuple outputs sliced per block, and a caller's time-out."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from cascadekit.serve.batching import BatchPolicy, StageBatcher


def test_each_block_gets_its_rows_of_every_output() -> None:
    async def main() -> list[Any]:
        b = StageBatcher(
            lambda x: (np.stack([x, -x], 1), 10 * x), BatchPolicy(max_batch_size=8, max_wait=0.05)
        )
        await b.start()
        try:
            return list(
                await asyncio.gather(
                    b.submit(np.array([1.0, 2.0])), b.submit(np.array([3.0])), b.submit(np.ones(0))
                )
            )
        finally:
            await b.stop()

    (z1, s1), (z2, s2), _ = asyncio.run(main())
    assert z1.tolist() == [[1.0, -1.0], [2.0, -2.0]] and s1.tolist() == [10.0, 20.0]
    assert z2.tolist() == [[3.0, -3.0]] and s2.tolist() == [30.0]


def test_a_tuple_output_with_a_wrong_row_count_fails_its_blocks() -> None:
    async def main() -> None:
        b = StageBatcher(lambda x: (x, x[:1]), BatchPolicy(max_batch_size=4))
        await b.start()
        try:
            await b.submit(np.array([1.0, 2.0]))
        finally:
            await b.stop()

    with pytest.raises(ValueError, match="returned 1 rows for 2 inputs"):
        asyncio.run(main())


def test_a_timed_out_block_is_dropped_unrun() -> None:
    release = threading.Event()
    seen: list[float] = []

    def model(x: np.ndarray) -> np.ndarray:
        seen.extend(x.tolist())
        release.wait(10)
        return np.stack([x, -x], 1)

    async def main() -> Any:
        b = StageBatcher(model, BatchPolicy(max_batch_size=1, max_wait=0.0))
        await b.start()
        try:
            first = asyncio.ensure_future(b.submit(np.array([1.0])))
            await asyncio.sleep(0.05)  # the first block is running (and blocked)
            with pytest.raises(TimeoutError):
                await b.submit(np.array([2.0]), timeout=0.05)
            release.set()
            out = await first
            await b.submit(np.array([3.0]))
            return out
        finally:
            release.set()
            await b.stop()

    out = asyncio.run(main())
    assert out.tolist() == [[1.0, -1.0]]
    assert seen == [1.0, 3.0]  # the timed-out block never reached the model


def test_an_idle_stage_runs_a_lone_block_at_once_and_batches_under_load() -> None:
    """max_wait is 30 s: a lone block is answered without it (the batcher counts the batch as
    started at once); the blocks that arrive while a batch runs wait for each other."""
    release = threading.Event()
    calls: list[int] = []

    def model(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        release.wait(10)
        return np.stack([x, -x], 1)

    async def main() -> Any:
        b = StageBatcher(model, BatchPolicy(max_batch_size=4, max_wait=30.0))
        await b.start()
        try:
            release.set()
            lone = await asyncio.wait_for(b.submit(np.array([1.0])), 20)
            assert (b.stats.batches, b.stats.immediate) == (1, 1)
            release.clear()
            running = asyncio.ensure_future(b.submit(np.array([2.0])))  # idle: runs at once
            while not calls[1:]:
                await asyncio.sleep(0.01)
            waiting = [asyncio.ensure_future(b.submit(np.array([float(i)]))) for i in (3, 4, 5, 6)]
            await asyncio.sleep(0)  # queued while the stage is busy
            release.set()
            rest = await asyncio.wait_for(asyncio.gather(running, *waiting), 20)
            return lone, rest, b.stats
        finally:
            release.set()
            await b.stop()

    lone, rest, stats = asyncio.run(main())
    assert lone.tolist() == [[1.0, -1.0]]
    assert [r.tolist() for r in rest] == [[[v, -v]] for v in (2.0, 3.0, 4.0, 5.0, 6.0)]
    assert calls == [1, 1, 4]  # the four blocks queued behind a busy stage ran as one batch
    assert stats.immediate == 2 and stats.batches == 3
