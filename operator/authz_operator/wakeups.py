"""Child events wake their resource's reconcile after a short quiet window, once per burst.

A rollout of one resource sends a burst of child events (the Deployment's status several
times, each ReplicaSet and pod going Pending, Running, Ready, the Job and its pod). Each one
reconciled the resource again, in a worker thread that kopf's per-object queue waited for
while it held the event's whole body: at 1,000 resources the operator was CPU-bound on
reconciles that read the same state, and its memory grew with the events waiting
(docs/benchmarks.md, "The operator at scale"). Here a child event only marks its resource,
on the event loop, and returns; the first mark of a burst schedules one reconcile
`DEBOUNCE_SECONDS` later in our own thread pool, and the marks that arrive before it starts
are counted as coalesced. A mark that arrives while that reconcile runs schedules the next
one, so the last event of a burst is always read by a reconcile that starts after it.

A mark may come with a check (`unless`, news.py): a burst whose every mark has one, and
whose checks all say "not news" when its timer fires, starts no reconcile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable

from authz_operator import metrics

DEBOUNCE_SECONDS = 0.3
Key = tuple[str, str]                         # (namespace, name)
Run = Callable[[str, str, str, str], None]    # namespace, name, why, handler
Unless = Callable[[], bool]                   # True: the mark turned out not to be news


class Wakeups:
    def __init__(self, run: Run, workers: int, debounce: float = DEBOUNCE_SECONDS) -> None:
        self._run = run
        self._debounce = debounce
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="reconcile")
        self._lock = threading.Lock()
        self._scheduled: dict[Key, asyncio.TimerHandle] = {}
        # per scheduled burst: its marks' checks, each with its handler and whether it joined
        # a scheduled timer (folded, if the burst runs); None once a mark without a check
        # is among them (then it runs whatever they say)
        self._unless: dict[Key, list[tuple[Unless, str, bool]] | None] = {}
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None   # kopf's, from the first wake

    def wake(self, namespace: str, name: str, why: str, handler: str,
             unless: Unless | None = None) -> None:
        """Called on the event loop: reconcile (namespace, name) soon, once for the burst;
        with `unless`, not if it says so when the burst's timer fires (and every other
        mark of the burst agrees)."""
        self._loop = asyncio.get_running_loop()
        self._schedule((namespace, name), self._debounce, why, handler, unless)

    def later(self, namespace: str, name: str, delay: float, why: str, handler: str) -> bool:
        """From any thread: reconcile (namespace, name) in `delay` seconds (or sooner, with
        a burst already scheduled). False when it cannot be scheduled: stopping, or no
        event has reached the loop yet."""
        loop = self._loop
        if loop is None or self._closed:
            return False
        try:
            loop.call_soon_threadsafe(self._schedule, (namespace, name), delay, why, handler)
        except RuntimeError:   # the loop is closed: the operator stops
            return False
        return True

    def _schedule(self, key: Key, delay: float, why: str, handler: str,
                  unless: Unless | None = None) -> None:
        """On the event loop: one timer per resource. A wake joins a timer that fires no
        later than it would; an earlier one replaces it (a child event must not wait for a
        paced status write's timer), and that reconcile does what the later one would."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                return
            timer = self._scheduled.get(key)
            checks = self._unless.get(key, [])
            runs = unless is None or checks is None   # whatever the checks say
            if unless is None or checks is None:
                self._unless[key] = None
                _folded(key, checks or [])   # the burst runs whatever they say
            else:
                self._unless[key] = [*checks, (unless, handler, timer is not None)]
            if timer is not None:
                if runs:
                    metrics.coalesced(key[0], key[1], handler)
                if timer.when() <= loop.time() + delay:
                    return
                timer.cancel()
            self._scheduled[key] = loop.call_later(delay, self._start, key, why, handler)

    def _start(self, key: Key, why: str, handler: str) -> None:
        with self._lock:
            self._scheduled.pop(key, None)   # from now on, a new event needs a new reconcile
            checks = self._unless.pop(key, None)
            if self._closed:
                return
        if checks and all(unless() for unless, _, _ in checks):   # outside our lock (news.py's)
            for _, marked, _ in checks:
                metrics.not_news(marked)
            return
        _folded(key, checks or [])
        with self._lock:
            if not self._closed:
                self._pool.submit(self._run, key[0], key[1], why, handler)

    def stop(self) -> None:
        """Stop waking; wait for the reconciles that run (they hold API connections)."""
        with self._lock:
            self._closed = True
            for timer in self._scheduled.values():
                timer.cancel()
            self._scheduled.clear()
            self._unless.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _folded(key: Key, checks: list[tuple[Unless, str, bool]]) -> None:
    """The burst runs: its checked marks that joined its timer were folded into it."""
    for _, handler, joined in checks:
        if joined:
            metrics.coalesced(key[0], key[1], handler)
