"""`Batch`: what the checks of one turn of the event loop ask for, fetched together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batch(Generic[T, R]):
    """Collects the items asked for in one turn of the event loop and hands them to
    `flush` together; each caller awaits its own item's result (or the batch's error)."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[list[R]]]) -> None:
        self.flush = flush
        self._waiting: dict[T, list[asyncio.Future[R]]] = {}
        self._running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    def add(self, item: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._start)
        self._waiting.setdefault(item, []).append(future)
        return future

    def _start(self) -> None:
        task = asyncio.ensure_future(self._run())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self) -> None:
        waiting, self._waiting = self._waiting, {}
        try:
            results = await self.flush(list(waiting))
        except Exception as exc:  # every waiter learns it, none hangs
            for futures in waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for futures, result in zip(waiting.values(), results, strict=True):
            for future in futures:
                if not future.done():
                    future.set_result(result)
