from __future__ import annotations

import asyncio
import os
import signal
import tracemalloc
from pathlib import Path

import pytest

from authz_operator import heapreport
from authz_operator.heapreport import Heap, by_package, package_of, proc_status, render

STDLIB = "/usr/local/lib/python3.11"
SITE = "/opt/venv/lib/python3.11/site-packages"
MIB = 1024 * 1024


@pytest.mark.parametrize(("filename", "package"), [
    (f"{SITE}/kopf/_cogs/structs/bodies.py", "kopf"),
    (f"{SITE}/aiohttp/streams.py", "aiohttp"),
    (f"{SITE}/six.py", "six"),
    ("/usr/lib/python3/dist-packages/yaml/constructor.py", "yaml"),
    (f"{SITE}/authz_operator/cache.py", "authz_operator"),
    ("/work/checkout/operator/authz_operator/lifecycle/state.py", "authz_operator"),
    (f"{STDLIB}/json/decoder.py", "stdlib json"),
    (f"{STDLIB}/ssl.py", "stdlib ssl"),
    # a site-packages inside the standard library's folder (no venv) is still installed
    (f"{STDLIB}/site-packages/kopf/_core/engines/peering.py", "kopf"),
    ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap>"),
    ("<unknown>", "<unknown>"),
    ("/srv/script.py", "/srv/script.py"),
])
def test_package_of_a_file(filename: str, package: str) -> None:
    assert package_of(filename, STDLIB) == package


def test_files_are_summed_per_package_largest_first() -> None:
    files = [(f"{SITE}/kopf/a.py", 10, 1), (f"{STDLIB}/json/decoder.py", 30, 3),
             (f"{SITE}/kopf/b.py", 26, 2), ("<unknown>", 35, 1)]
    assert by_package(files, STDLIB) == [("kopf", 36, 3), ("<unknown>", 35, 1),
                                         ("stdlib json", 30, 3)]


def test_proc_status_reads_the_kb_fields() -> None:
    text = "Name:\tpython\nVmHWM:\t  460000 kB\nVmRSS:\t  456704 kB\nThreads:\t9\n"
    assert proc_status(text) == {"VmHWM": 460000, "VmRSS": 456704}


HEAP = Heap(
    status={"VmRSS": 400 * 1024, "VmHWM": 450 * 1024, "RssAnon": 380 * 1024,
            "RssFile": 20 * 1024, "RssShmem": 0},
    tracing=True, traced=200 * MIB, peak=250 * MIB, overhead=30 * MIB,
    files=[(f"{STDLIB}/json/decoder.py", 100 * MIB, 1_000_000),
           (f"{SITE}/kopf/_cogs/structs/bodies.py", 60 * MIB, 300_000),
           ("/work/checkout/operator/authz_operator/cache.py", 30 * MIB, 200_000),
           (f"{SITE}/kopf/_core/reactor/queueing.py", 10 * MIB, 5_000)])


def test_the_report_splits_rss_and_groups_by_package_and_file() -> None:
    assert render(HEAP, STDLIB, top=2) == """\
RSS 400.0 MiB (peak 450.0 MiB): anonymous 380.0 MiB, files 20.0 MiB, shared 0.0 MiB
Traced (the live Python heap): 200.0 MiB now, 250.0 MiB peak; tracemalloc's own memory 30.0 MiB
Anonymous RSS neither traced nor tracemalloc's: 150.0 MiB (freed memory the allocators keep, \
C libraries' own allocations, thread stacks)
Each allocation is charged to the file of the line that made it (1 frame kept), not to \
whatever holds it now.

By package (top 2 of 3):

| | MiB | share of traced | blocks |
| --- | --- | --- | --- |
| stdlib json | 100.0 | 50.0% | 1,000,000 |
| kopf | 70.0 | 35.0% | 305,000 |

By file (top 2 of 4):

| | MiB | share of traced | blocks |
| --- | --- | --- | --- |
| stdlib json/decoder.py | 100.0 | 50.0% | 1,000,000 |
| kopf/_cogs/structs/bodies.py | 60.0 | 30.0% | 300,000 |
"""


def test_without_tracing_the_report_holds_the_rss_and_says_why() -> None:
    heap = Heap(status={"VmRSS": 1024, "VmHWM": 2048}, tracing=False)
    assert render(heap, STDLIB) == (
        "RSS 1.0 MiB (peak 2.0 MiB): anonymous 0.0 MiB, files 0.0 MiB, shared 0.0 MiB\n"
        "tracemalloc is not tracing: start the operator with PYTHONTRACEMALLOC=1 for the "
        "live heap\n")


def test_without_the_variable_no_handler_is_installed() -> None:
    before = signal.getsignal(signal.SIGUSR2)
    assert heapreport.install({}) is None
    assert signal.getsignal(signal.SIGUSR2) is before


async def _signal_self() -> None:
    """SIGUSR2 to this process while a loop runs; the handler only schedules the writing on
    the loop, which runs it before this sleep ends."""
    os.kill(os.getpid(), signal.SIGUSR2)
    await asyncio.sleep(0.1)


def test_sigusr2_writes_the_report_from_the_running_loop(tmp_path: Path) -> None:
    path = tmp_path / "heap.txt"
    before, tracing = signal.getsignal(signal.SIGUSR2), tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        assert heapreport.install({heapreport.ENV: str(path)}) == path
        asyncio.run(_signal_self())
    finally:
        if not tracing:
            tracemalloc.stop()
        signal.signal(signal.SIGUSR2, before)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("RSS ")
    assert lines[1].startswith("Traced (the live Python heap): ")
    assert "By package (top " in "\n".join(lines)
    assert [p.name for p in tmp_path.iterdir()] == ["heap.txt"]   # no temporary file left
