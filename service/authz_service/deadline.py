"""`within(awaitable, seconds)`: the answer in bounded time, even from a hung dependency.

`asyncio.timeout` cancels the work and then waits for it to finish, and finishing is what
a hung dependency never does quickly: psycopg, when a query is cancelled, asks the server
to cancel it and waits up to 5 s for that and 5 s for the result (a stopped server answers
neither). So the work runs as a task of its own; past the deadline it is cancelled and
left to wind down in the background (its pooled connection is then discarded by the pool),
and the caller gets `TimeoutError` at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# The loop keeps only weak references to tasks: the abandoned ones are held here until done.
_ABANDONED: set[asyncio.Future[Any]] = set()


class Expired(TimeoutError):
    """The deadline passed (a TimeoutError the work itself raised is not this)."""


async def within(work: Awaitable[T], seconds: float) -> T:
    """Run `work` for at most `seconds`; `Expired` after that (the work is cancelled and
    not waited for). Cancelling the caller cancels the work the same way. (Written out
    rather than `asyncio.wait`, which costs about ten times as much per call: this runs
    around every request.)"""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)  # runs in a copy of the caller's context (log scope)
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    task.add_done_callback(wake)
    timer = loop.call_later(seconds, wake)
    try:
        await waiter
    except asyncio.CancelledError:
        _abandon(task, wake)
        raise
    finally:
        timer.cancel()
    if not task.done():
        _abandon(task, wake)
        raise Expired(f"not finished within {seconds:g} s")
    return task.result()


def _abandon(task: asyncio.Future[Any], wake: Callable[[Any], None]) -> None:
    task.remove_done_callback(wake)
    task.cancel()
    _ABANDONED.add(task)
    task.add_done_callback(_forget)


def _forget(task: asyncio.Future[Any]) -> None:
    _ABANDONED.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # Nobody waits for this answer any more; say what happened at debug level only.
        log.debug("abandoned work ended with %r", task.exception())


def abandoned() -> int:
    """How many abandoned tasks are still winding down (for tests and shutdown)."""
    return len(_ABANDONED)
