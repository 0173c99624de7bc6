"""kopf's readiness gate for its indexes, released by a watcher that ends before it listed.

kopf runs no resource handler until every watcher of an indexed kind has listed its
objects once (`operator_indexed`, one toggle per watcher, dropped when its first listing
is done; kopf 1.45, `kopf._core.reactor.queueing.watcher`). A watcher that ends before it
listed never drops its toggle: with a namespace pattern, a namespace deleted while the
operator is paused (a replica waiting for the peering object to say it may act, as every
replica does at start-up, peering.py) ends that namespace's watchers unlisted, and the
operator then ran no handler again, for any resource, until it restarted (seen in CI: the
new replica resumed and left every resource as it was for three minutes). `install` wraps
kopf's watcher so that whatever way it ends, its toggle is dropped: an ended watcher has
nothing left to list.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any

Watcher = Callable[..., Coroutine[Any, Any, None]]
_WRAPPED = "__authz_indexgate__"


def releasing(watcher: Watcher) -> Watcher:
    """`watcher`, which drops its `resource_indexed` toggle from `operator_indexed` when it
    ends (kopf's own drop after the first listing makes this a no-op then)."""

    @functools.wraps(watcher)
    async def wrapper(*args: Any, operator_indexed: Any = None, resource_indexed: Any = None,
                      **kwargs: Any) -> None:
        try:
            await watcher(*args, operator_indexed=operator_indexed,
                          resource_indexed=resource_indexed, **kwargs)
        finally:
            if operator_indexed is not None and resource_indexed is not None:
                # shielded, as kopf's own clean-up: the watcher ends by being cancelled
                drop = asyncio.create_task(operator_indexed.drop_toggle(resource_indexed))
                while not drop.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.shield(drop)

    setattr(wrapper, _WRAPPED, True)
    return wrapper


def install(module: ModuleType | None = None) -> bool:
    """Wrap kopf's watcher (`module`: kopf's queueing module, unless a test gives one);
    False, and nothing changed, if kopf has no such watcher any more."""
    if module is None:
        from kopf._core.reactor import queueing
        module = queueing
    current = getattr(module, "watcher", None)
    if current is None:
        return False
    if getattr(current, _WRAPPED, False):
        return True
    setattr(module, "watcher", releasing(current))   # noqa: B010
    return True
