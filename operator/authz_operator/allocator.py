"""What the C allocator keeps of the operator's memory (issue 11). glibc only; elsewhere
nothing is tuned.

Two settings, both before kopf starts (`main`):
- at most `ARENAS` malloc arenas (`limit_arenas`): glibc gives each thread that allocates
  its own arena, up to 8 per core, and keeps what was freed in each. The reconcile threads
  and kopf's loop free memory in bursts (a watch listing again, a thousand reconciles), so
  RSS stayed at its peak. Two arenas keep what they free together; Python's small objects
  never use them.
- every `TRIM_EVERY` seconds, `malloc_trim(0)` (`Trimmer`): glibc returns freed memory to
  the system only from the top of its heap, and a burst's freed chunks below live ones stay
  in the RSS for good; malloc_trim hands back every free page wherever it lies. A call walks
  the free lists once (milliseconds); `AUTHZ_MALLOC_TRIM_SECONDS=0` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("authz_operator.allocator")

ARENAS = 2
M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
TRIM_EVERY = 10.0
TRIM_ENV = "AUTHZ_MALLOC_TRIM_SECONDS"


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # musl and others have no mallopt / malloc_trim
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas(environ: Mapping[str, str]) -> bool:
    """mallopt(M_ARENA_MAX, ARENAS) before any thread starts, unless MALLOC_ARENA_MAX is set
    (glibc then read it at start) or the C library is not glibc; True if set."""
    if "MALLOC_ARENA_MAX" in environ:
        return False
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(M_ARENA_MAX, ARENAS))


def trim_every(environ: Mapping[str, str]) -> float:
    """Seconds between trims: `AUTHZ_MALLOC_TRIM_SECONDS`, else `TRIM_EVERY`; 0 is off."""
    raw = environ.get(TRIM_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else TRIM_EVERY
    except ValueError:
        raise SystemExit(f"{TRIM_ENV}={raw!r}: expected a number of seconds (0: off)") from None


class Trimmer:
    """Calls `trim` every `every` seconds in a daemon thread until stopped."""

    def __init__(self, trim: Callable[[], object], every: float) -> None:
        self.trim = trim
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="malloc-trim", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            started = time.perf_counter()
            self.trim()
            log.debug("malloc_trim took %.1f ms", (time.perf_counter() - started) * 1000)


def start_trimming(environ: Mapping[str, str]) -> Trimmer | None:
    """A started `Trimmer` of glibc's malloc_trim(0), or None (off, or not glibc)."""
    every = trim_every(environ)
    libc = _glibc()
    if not every or libc is None:
        return None
    trimmer = Trimmer(lambda: libc.malloc_trim(0), every)
    trimmer.start()
    return trimmer
