"""Wakeups: a burst of child events becomes one reconcile; an event during a reconcile gets
the next one; closing cancels what has not started. Real asyncio loop and threads, tiny
debounce."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from authz_operator import metrics
from authz_operator.wakeups import Wakeups

DEBOUNCE = 0.05


class Calls:
    def __init__(self, block: threading.Event | None = None) -> None:
        self.calls: list[tuple[str, str, str, str]] = []
        self.started = threading.Event()
        self.block = block
        self.lock = threading.Lock()

    def __call__(self, namespace: str, name: str, why: str, handler: str) -> None:
        self.started.set()
        if self.block is not None:
            self.block.wait(5)
        with self.lock:
            self.calls.append((namespace, name, why, handler))


def coalesced(name: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "authz_operator_coalesced_total",
        {"namespace": "ns", "name": name, "handler": "child-pods"})
    return value or 0.0


async def until(probe: Callable[[], bool]) -> None:
    """Poll (the reconciles run in threads: no loop event to await), for 5 s at most."""
    for _ in range(500):
        if probe():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")


def test_a_burst_is_one_reconcile_and_the_rest_are_counted_coalesced() -> None:
    calls = Calls()
    wakeups = Wakeups(calls, workers=2, debounce=DEBOUNCE)
    before = coalesced("burst")

    async def scenario() -> None:
        for _ in range(5):
            wakeups.wake("ns", "burst", "Pod event", "child-pods")
        wakeups.wake("ns", "other", "Pod event", "child-pods")
        await until(lambda: len(calls.calls) == 2)
        await asyncio.sleep(DEBOUNCE * 3)   # nothing else comes

    asyncio.run(scenario())
    wakeups.stop()
    assert sorted(c[1] for c in calls.calls) == ["burst", "other"]
    assert coalesced("burst") - before == 4


def test_an_event_during_a_running_reconcile_schedules_the_next_one() -> None:
    release = threading.Event()
    calls = Calls(block=release)
    wakeups = Wakeups(calls, workers=2, debounce=DEBOUNCE)

    async def scenario() -> None:
        wakeups.wake("ns", "running", "Pod event", "child-pods")
        await until(calls.started.is_set)
        wakeups.wake("ns", "running", "Deployment event", "child-deployments")
        release.set()
        await until(lambda: len(calls.calls) == 2)

    asyncio.run(scenario())
    wakeups.stop()
    assert [c[2] for c in calls.calls] == ["Pod event", "Deployment event"]


def test_close_cancels_what_has_not_started_and_ignores_later_events() -> None:
    calls = Calls()
    wakeups = Wakeups(calls, workers=1, debounce=10)

    async def scenario() -> None:
        wakeups.wake("ns", "pending", "Pod event", "child-pods")
        wakeups.stop()
        wakeups.wake("ns", "late", "Pod event", "child-pods")
        await asyncio.sleep(DEBOUNCE)

    asyncio.run(scenario())
    assert calls.calls == []


def test_later_from_another_thread_reconciles_after_the_delay() -> None:
    calls = Calls()
    wakeups = Wakeups(calls, workers=2, debounce=DEBOUNCE)
    assert not wakeups.later("ns", "paced", 0.01, "progress", "status_progress")   # no loop yet
    scheduled: list[bool] = []

    async def scenario() -> None:
        wakeups.wake("ns", "first", "Deployment event", "child-deployments")
        await until(lambda: len(calls.calls) == 1)
        thread = threading.Thread(target=lambda: scheduled.append(
            wakeups.later("ns", "paced", 1.0, "progress", "status_progress")))
        thread.start()
        thread.join()
        await asyncio.sleep(0.1)   # a 0.9 s margin: a busy machine may wake late
        assert len(calls.calls) == 1            # not before its delay
        await until(lambda: len(calls.calls) == 2)

    asyncio.run(scenario())
    wakeups.stop()
    assert scheduled == [True]
    assert calls.calls[1] == ("ns", "paced", "progress", "status_progress")
    assert not wakeups.later("ns", "paced", 0.01, "progress", "status_progress")   # stopped


def test_an_event_does_not_wait_for_a_later_paced_reconcile() -> None:
    """A paced status write schedules its resource for later; a child event meanwhile is
    reconciled after the debounce, not at that later time, and once."""
    calls = Calls()
    wakeups = Wakeups(calls, workers=2, debounce=DEBOUNCE)

    async def scenario() -> None:
        wakeups.wake("ns", "other", "Deployment event", "child-deployments")   # the loop
        await until(lambda: len(calls.calls) == 1)
        assert wakeups.later("ns", "paced", 30.0, "progress", "status_progress")
        await asyncio.sleep(0.05)
        wakeups.wake("ns", "paced", "Deployment event", "child-deployments")
        await until(lambda: len(calls.calls) == 2)   # within 5 s, not 30
        await asyncio.sleep(DEBOUNCE * 3)

    asyncio.run(scenario())
    wakeups.stop()
    assert [c[1] for c in calls.calls] == ["other", "paced"]
    assert calls.calls[1][3] == "child-deployments"


def not_news(handler: str) -> float:
    return metrics.value("authz_operator_events_not_news_total", {"handler": handler})


def test_a_burst_of_marks_whose_checks_all_say_not_news_starts_no_reconcile() -> None:
    """news.py's deferred check: asked when the burst's timer fires, not when marked."""
    calls = Calls()
    wakeups = Wakeups(calls, workers=2, debounce=DEBOUNCE)
    written = {"a": False, "b": False}
    before = not_news("child-serviceaccounts"), not_news("child-configmaps")
    folded = coalesced("mixed")

    async def scenario() -> None:
        wakeups.wake("ns", "echo", "ServiceAccount event", "child-serviceaccounts",
                     unless=lambda: written["a"])
        wakeups.wake("ns", "echo", "ConfigMap event", "child-configmaps",
                     unless=lambda: written["b"])
        written.update(a=True, b=True)   # the reconcile thread records its writes meanwhile
        # one check says news: the burst runs
        wakeups.wake("ns", "news", "ServiceAccount event", "child-pods", unless=lambda: False)
        # a mark without a check joins: the burst runs whatever its checks say
        wakeups.wake("ns", "mixed", "ServiceAccount event", "child-pods", unless=lambda: True)
        wakeups.wake("ns", "mixed", "Pod event", "child-pods")
        await until(lambda: len(calls.calls) == 2)
        await asyncio.sleep(DEBOUNCE * 3)   # nothing else comes

    asyncio.run(scenario())
    wakeups.stop()
    assert sorted(c[1] for c in calls.calls) == ["mixed", "news"]
    assert (not_news("child-serviceaccounts") - before[0],
            not_news("child-configmaps") - before[1]) == (1, 1)
    assert coalesced("mixed") - folded == 1   # the mark that joined the burst's timer
