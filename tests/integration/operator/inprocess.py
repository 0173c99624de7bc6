"""The real operator in the test's own process: `kopf.operator()` on an event loop this module
owns, in a thread, confined to one namespace.

Why not kopf's KopfRunner: it closes its event loop right after kopf returns, and kopf closes
its API sessions (the credentials vault) only when its clean-up activity runs in full. An
operator stopped while it was still starting (a slow, loaded machine) skips that, and
aiohttp's graceful close does not wait for the TLS connections of watch streams cancelled
mid-read. Either way the loop was closed with sockets open, and the garbage collector reported
them later as ResourceWarnings in whichever test ran next (the fresh-clone failure of issue 12).
Here the loop's owner does the closing: start() returns only when the operator is ready, the
vault is ours and is closed whatever path kopf took, and the loop closes only after every one
of its transports has; anything still open then fails the test that started the operator."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import importlib
import sys
import threading
import traceback

import kopf
import pytest

# kopf.operator(vault=...) accepts a Vault, but kopf does not export the class.
from kopf._cogs.structs.credentials import Vault

START_SECONDS = 60  # startup handlers and the first login, on a loaded 2-core machine
STOP_SECONDS = 30
TRANSPORTS_CLOSE_SECONDS = 5  # TLS close_notify and the peer's answer, loopback only
POLL_SECONDS = 0.01


def open_transports(loop: asyncio.AbstractEventLoop) -> list[asyncio.BaseTransport]:
    """The loop's socket transports whose socket is not closed yet. asyncio has no public
    registry of them; the selector loop keeps one (fd -> transport) for its own checks."""
    registry = getattr(loop, "_transports", None) or {}
    found = []
    for transport in list(registry.values()):
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.fileno() != -1:
            found.append(transport)
    return found


class Operator:
    """start() and stop() the operator; stop() fails the test if the operator failed, did not
    stop, or left a socket open."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_flag = asyncio.Event()
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._error: BaseException | None = None
        self._leftovers: list[str] = []

    def start(self) -> None:
        # The handlers register themselves in kopf's default registry on import; imported here,
        # not at the top, because the conftest points $KUBECONFIG at the cluster first.
        importlib.import_module("authz_operator.handlers")
        self._stop_flag = asyncio.Event()
        self._ready = concurrent.futures.Future()
        self._error, self._leftovers = None, []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"operator-{self.namespace}", daemon=True)
        self._thread.start()
        try:
            self._ready.result(timeout=START_SECONDS)
        except BaseException as e:
            self.stop()
            pytest.fail(f"the operator did not become ready within {START_SECONDS} s: {e!r}")

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        self._thread = self._loop = None
        if thread is None or loop is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(self._stop_flag.set)
        thread.join(timeout=STOP_SECONDS)
        if thread.is_alive():
            frame = sys._current_frames().get(thread.ident or 0)
            where = "".join(traceback.format_stack(frame)) if frame else "(no frame)"
            pytest.fail(f"the operator did not stop within {STOP_SECONDS} s; it is at:\n{where}")
        # What the loop's owner could not see (an object holding a socket, not a transport)
        # is found now, so its warning fails this test, not whichever test runs next.
        gc.collect()
        assert self._error is None, f"the operator failed: {self._error!r}"
        assert not self._leftovers, f"the operator left transports open: {self._leftovers}"

    def _run(self) -> None:
        assert self._loop is not None
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._operate())
        except BaseException as e:  # reported by stop(), in the test's thread
            self._error = e
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            if not self._ready.done():
                self._ready.set_exception(RuntimeError("the operator ended before it was ready"))

    async def _operate(self) -> None:
        vault = Vault()
        try:
            await kopf.operator(
                standalone=True, namespaces=[self.namespace], vault=vault,
                stop_flag=self._stop_flag, ready_flag=self._ready)
        finally:
            await vault.close()  # idempotent: kopf's own close, if it ran, emptied it
            await self._transports_closed()

    async def _transports_closed(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(int(TRANSPORTS_CLOSE_SECONDS / POLL_SECONDS)):  # a close has no event
            if not open_transports(loop):
                break
            await asyncio.sleep(POLL_SECONDS)
        self._leftovers = [repr(t) for t in open_transports(loop)]
