"""Where the operator's memory goes (issue 11): its RSS split into the live Python heap, by
top-level package and by file, and what the allocators keep.

With `AUTHZ_HEAP_REPORT=<file>` in the environment, SIGUSR2 writes a report to that file
(a temporary file renamed over it, so a reader never sees half a report): the process's RSS
from /proc/self/status, tracemalloc's traced total and peak, and the largest allocations
grouped by package and by file. tracemalloc must trace from the start, so whoever starts the
operator sets `PYTHONTRACEMALLOC=1` (tracing slows every allocation); without it the report
holds the RSS only and says so. Without `AUTHZ_HEAP_REPORT` nothing is installed.

The grouping and the text are pure (`render`, tests/unit/operator/test_heapreport.py);
reading the process and writing the file are below them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sysconfig
import tempfile
import tracemalloc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ENV = "AUTHZ_HEAP_REPORT"
TOP = 30
MIB = 1024 * 1024
INSTALLED = ("/site-packages/", "/dist-packages/")
OURS = "authz_operator"

log = logging.getLogger("authz_operator.heapreport")

Group = tuple[str, int, int]    # (name, bytes, blocks)


@dataclass(frozen=True)
class Heap:
    """One reading of the process, as plain data."""

    status: Mapping[str, int]   # /proc/self/status fields in kB: VmRSS, VmHWM, RssAnon, ...
    tracing: bool
    traced: int = 0             # bytes tracemalloc traces now
    peak: int = 0               # ... at most, since tracing started
    overhead: int = 0           # tracemalloc's own memory (in the RSS, not traced)
    frames: int = 1             # frames kept per allocation (PYTHONTRACEMALLOC=N)
    files: Sequence[Group] = ()  # per file of the line that allocated


# ---------------------------------------------------------------------------------------------
# pure: grouping and the text


def proc_status(text: str) -> dict[str, int]:
    """The kB fields of /proc/<pid>/status (`VmRSS:  123456 kB`)."""
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[name] = int(parts[0])
    return out


def _first(path: str) -> str:
    head = path.split("/", 1)[0]
    return head.removesuffix(".py")


def package_of(filename: str, stdlib: str) -> str:
    """The top-level package whose code allocated: `kopf` for .../site-packages/kopf/...,
    `authz_operator` for ours wherever it is installed, `stdlib json` for the standard
    library's json/, the name itself otherwise (`<frozen ...>`, `<unknown>`)."""
    name = filename.replace("\\", "/")
    for marker in INSTALLED:
        if marker in name:
            return _first(name.rsplit(marker, 1)[1])
    if f"/{OURS}/" in name:
        return OURS
    prefix = stdlib.rstrip("/") + "/"
    if stdlib and name.startswith(prefix):
        return f"stdlib {_first(name[len(prefix):])}"
    return filename


def short_file(filename: str, stdlib: str) -> str:
    """A file as the report shows it: from its package on."""
    name = filename.replace("\\", "/")
    for marker in INSTALLED:
        if marker in name:
            return name.rsplit(marker, 1)[1]
    if f"/{OURS}/" in name:
        return OURS + "/" + name.rsplit(f"/{OURS}/", 1)[1]
    prefix = stdlib.rstrip("/") + "/"
    if stdlib and name.startswith(prefix):
        return f"stdlib {name[len(prefix):]}"
    return filename


def by_package(files: Sequence[Group], stdlib: str) -> list[Group]:
    """The files' bytes and blocks summed per package, largest first."""
    sums: dict[str, tuple[int, int]] = {}
    for filename, size, count in files:
        package = package_of(filename, stdlib)
        size0, count0 = sums.get(package, (0, 0))
        sums[package] = (size0 + size, count0 + count)
    return _largest([(name, size, count) for name, (size, count) in sums.items()])


def _largest(groups: Sequence[Group]) -> list[Group]:
    return sorted(groups, key=lambda g: (-g[1], g[0]))


def _mib(size: float) -> str:
    return f"{size / MIB:,.1f}"


def _table(title: str, groups: Sequence[Group], traced: int, top: int) -> list[str]:
    shown = groups[:top]
    lines = [f"{title} (top {len(shown)} of {len(groups)}):", "",
             "| | MiB | share of traced | blocks |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {_mib(size)} | {size / traced if traced else 0:.1%} | {count:,} |"
              for name, size, count in shown]
    return lines


def render(heap: Heap, stdlib: str, top: int = TOP) -> str:
    """The report: RSS, traced memory and what is neither, then the top `top` groups by
    package and by file."""
    kib = heap.status
    lines = [f"RSS {_mib(kib.get('VmRSS', 0) * 1024)} MiB (peak "
             f"{_mib(kib.get('VmHWM', 0) * 1024)} MiB): anonymous "
             f"{_mib(kib.get('RssAnon', 0) * 1024)} MiB, files "
             f"{_mib(kib.get('RssFile', 0) * 1024)} MiB, shared "
             f"{_mib(kib.get('RssShmem', 0) * 1024)} MiB"]
    if not heap.tracing:
        lines.append("tracemalloc is not tracing: start the operator with PYTHONTRACEMALLOC=1 "
                     "for the live heap")
        return "\n".join(lines) + "\n"
    kept = kib.get("RssAnon", 0) * 1024 - heap.traced - heap.overhead
    lines += [
        f"Traced (the live Python heap): {_mib(heap.traced)} MiB now, {_mib(heap.peak)} MiB "
        f"peak; tracemalloc's own memory {_mib(heap.overhead)} MiB",
        f"Anonymous RSS neither traced nor tracemalloc's: {_mib(kept)} MiB (freed memory "
        "the allocators keep, C libraries' own allocations, thread stacks)",
        f"Each allocation is charged to the file of the line that made it ({heap.frames} "
        f"frame{'s' if heap.frames != 1 else ''} kept), not to whatever holds it now.", ""]
    files = _largest([(short_file(f, stdlib), size, count) for f, size, count in heap.files])
    lines += _table("By package", by_package(heap.files, stdlib), heap.traced, top)
    lines += [""]
    lines += _table("By file", files, heap.traced, top)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# the process and the file


def read_heap() -> Heap:
    """This process now: its RSS and traced totals first, then the snapshot (which itself
    takes memory for a moment)."""
    status = proc_status(Path("/proc/self/status").read_text())
    if not tracemalloc.is_tracing():
        return Heap(status, tracing=False)
    traced, peak = tracemalloc.get_traced_memory()
    overhead = tracemalloc.get_tracemalloc_memory()
    snapshot = tracemalloc.take_snapshot()
    files = [(s.traceback[0].filename, s.size, s.count)
             for s in snapshot.statistics("filename")]
    return Heap(status, True, traced, peak, overhead, tracemalloc.get_traceback_limit(),
                files)


def write(path: Path) -> None:
    """The report, written to a temporary file beside `path` and renamed over it."""
    text = render(read_heap(), sysconfig.get_paths()["stdlib"])
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_logged(path: Path) -> None:
    try:
        write(path)
    except Exception:
        log.exception("heap report: could not write %s", path)
    else:
        log.info("heap report written to %s", path)


def install(environ: Mapping[str, str]) -> Path | None:
    """With `AUTHZ_HEAP_REPORT` set: a SIGUSR2 handler writing the report there; its path.
    The handler only schedules the writing on the running event loop (the signal may arrive
    in the middle of any callback), or writes at once when no loop runs."""
    value = environ.get(ENV, "")
    if not value:
        return None
    path = Path(value)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            _write_logged(path)
        else:
            loop.call_soon_threadsafe(_write_logged, path)

    signal.signal(signal.SIGUSR2, on_signal)
    return path
