"""`deadline.within`: the answer in bounded time, even when the work is slow to notice its
cancellation (as psycopg is when the server is hung)."""

from __future__ import annotations

import asyncio
import time

import pytest

from authz_service import deadline


async def test_returns_the_result_in_time() -> None:
    async def work() -> str:
        await asyncio.sleep(0)
        return "done"

    assert await deadline.within(work(), 1.0) == "done"


async def test_gives_up_at_the_deadline_without_waiting_for_a_slow_cancellation() -> None:
    unwound = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        finally:  # like psycopg: cleanup that takes long after the cancellation
            await asyncio.shield(asyncio.sleep(0.5))
            unwound.set()

    started = time.monotonic()
    with pytest.raises(deadline.Expired):
        await deadline.within(stubborn(), 0.05)
    assert time.monotonic() - started < 0.3
    assert deadline.abandoned() == 1
    await asyncio.wait_for(unwound.wait(), 5)  # it still finishes, in the background
    for _ in range(100):  # its done-callback runs a loop turn or two later
        if deadline.abandoned() == 0:
            break
        await asyncio.sleep(0.01)
    assert deadline.abandoned() == 0


async def test_an_error_of_the_work_is_not_a_deadline() -> None:
    async def fails() -> None:
        raise TimeoutError("the work's own timeout")

    with pytest.raises(TimeoutError) as caught:
        await deadline.within(fails(), 1.0)
    assert not isinstance(caught.value, deadline.Expired)


async def test_the_reaper_cancels_what_outlives_its_deadline_and_only_that() -> None:
    reaper = deadline.Reaper(tick=0.02)

    async def watched(seconds: float, work: float) -> str:
        task = asyncio.current_task()
        assert task is not None
        reaper.watch(task, seconds)
        try:
            await asyncio.sleep(work)
        except asyncio.CancelledError:
            return "reaped" if reaper.forget(task) else "cancelled by someone else"
        reaper.forget(task)
        return "done"

    started = time.monotonic()
    results = await asyncio.gather(watched(0.05, 30), watched(5, 0.01), watched(0.05, 0.01))
    assert list(results) == ["reaped", "done", "done"]
    assert time.monotonic() - started < 1.0


async def test_detached_work_is_abandoned_when_its_caller_is_cancelled() -> None:
    finished = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.shield(asyncio.sleep(0.5))
            finished.set()

    caller = asyncio.ensure_future(deadline.detached(stubborn()))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert time.monotonic() - started < 0.3  # not the 0.5 s the work takes to unwind
    await asyncio.wait_for(finished.wait(), 5)
