"""Bounded time even with a hung dependency: `detach` and `within`.

`asyncio.timeout` cancels the work and then waits for it to finish, and finishing is what
a hung database never does quickly: psycopg, when a query is cancelled, asks the server to
cancel it and waits up to 5 s for that and 5 s for the result (a stopped server answers
neither). So database work runs as a task of its own (`detach`, on every Store method):
when its caller is cancelled (the request deadline, `asyncio.timeout` in the middleware),
the task is cancelled and left to wind down in the background (its pooled connection is
then closed, not reused) and the caller unwinds at once. Everything else a handler awaits
(Redis, HTTP clients, futures of the check's batches) stops as soon as it is cancelled.
`within(work, seconds)` is the same with a time limit of its own (the health probes).

The request deadline itself is a `Reaper`: one timer per process that cancels the tasks
past their deadline every TICK seconds. A timer per request (`asyncio.timeout`) costs
10-20 us of every request, a few percent of a cached check; the reaper costs a dict entry,
and a request overstays its deadline by at most TICK.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")

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


async def detached(work: Awaitable[T]) -> T:
    """Await `work` in a task of its own; if the caller is cancelled, cancel the task and
    do not wait for it."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        _abandon(task, None)
        raise


def detach(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """`detached` around every call of an async function or method."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return await detached(method(*args, **kwargs))

    return wrapper


def _abandon(task: asyncio.Future[Any], wake: Callable[[Any], None] | None) -> None:
    if wake is not None:
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


TICK = 0.1  # seconds between the reaper's sweeps


class Reaper:
    """Cancels the tasks it watches once they are past their deadline."""

    def __init__(self, tick: float = TICK) -> None:
        self.tick = tick
        self._due: dict[asyncio.Task[Any], float] = {}
        self._cancelled: set[asyncio.Task[Any]] = set()
        self._sweeping: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[Any], seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._due[task] = loop.time() + seconds
        if self._sweeping is None:
            self._sweeping = loop.call_later(self.tick, self._sweep)

    def forget(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching `task`; True if the reaper cancelled it (its deadline passed)."""
        self._due.pop(task, None)
        if task in self._cancelled:
            self._cancelled.discard(task)
            return True
        return False

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task in [t for t, due in self._due.items() if due <= now]:
            del self._due[task]
            self._cancelled.add(task)
            task.cancel()
        self._sweeping = loop.call_later(self.tick, self._sweep) if self._due else None
