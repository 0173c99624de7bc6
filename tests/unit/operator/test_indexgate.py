"""kopf's index readiness gate is released by a watcher that ends before it listed."""

from __future__ import annotations

import asyncio
import types
from typing import Any

from kopf._cogs.aiokits import aiotoggles

from authz_operator import indexgate


async def paused_watcher(**_: Any) -> None:
    """A watcher whose stream never starts (the operator is paused)."""
    await asyncio.Event().wait()


async def test_a_watcher_cancelled_before_it_listed_releases_the_gate() -> None:
    """kopf's own watcher would leave its toggle: the gate shut, every handler waiting."""
    gate = aiotoggles.ToggleSet(all)
    toggle = await gate.make_toggle(name="configmaps@deleted-namespace")
    task = asyncio.create_task(indexgate.releasing(paused_watcher)(
        operator_indexed=gate, resource_indexed=toggle, namespace="deleted-namespace"))
    await asyncio.sleep(0)
    assert gate.is_off()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert gate.is_on()


async def test_the_gate_stays_shut_for_the_other_watchers() -> None:
    gate = aiotoggles.ToggleSet(all)
    ended, other = await gate.make_toggle(name="ended"), await gate.make_toggle(name="other")
    task = asyncio.create_task(indexgate.releasing(paused_watcher)(
        operator_indexed=gate, resource_indexed=ended))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert gate.is_off()
    await gate.drop_toggle(other)
    assert gate.is_on()


async def test_a_watcher_without_an_index_is_left_alone() -> None:
    calls: list[dict[str, Any]] = []

    async def watcher(**kwargs: Any) -> None:
        calls.append(kwargs)

    await indexgate.releasing(watcher)(namespace=None)
    assert calls == [{"namespace": None, "operator_indexed": None, "resource_indexed": None}]


def test_install_wraps_once_and_says_when_kopf_changed() -> None:
    module = types.ModuleType("queueing")
    module.watcher = paused_watcher  # type: ignore[attr-defined]
    assert indexgate.install(module)
    wrapped = module.watcher
    assert wrapped is not paused_watcher
    assert indexgate.install(module)
    assert module.watcher is wrapped
    assert not indexgate.install(types.ModuleType("without_a_watcher"))
