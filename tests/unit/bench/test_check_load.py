"""`off_server_cpu`: a dependency's threads and child processes leave the server's CPU for
the block and get their CPUs back after it (real processes, this machine's scheduler)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from benchmarks.check_load import LOAD_CPU, off_server_cpu

# A parent (two threads) with a child process: all of them are moved.
FAMILY = """
import subprocess, sys, threading, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_dependency_its_threads_and_its_children_leave_the_server_cpu_and_come_back(
) -> None:
    with subprocess.Popen([sys.executable, "-c", FAMILY], stdout=subprocess.PIPE,
                          text=True) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        try:
            threads = [int(t) for t in os.listdir(f"/proc/{parent.pid}/task")]
            assert len(threads) >= 2
            everyone = [*threads, child]
            before = {tid: os.sched_getaffinity(tid) for tid in everyone}
            with off_server_cpu({"redis": parent.pid}):
                assert {tid: os.sched_getaffinity(tid) for tid in everyone} == {
                    tid: {int(LOAD_CPU)} for tid in everyone}
            assert {tid: os.sched_getaffinity(tid) for tid in everyone} == before
        finally:
            os.kill(child, signal.SIGKILL)
            parent.kill()
