"""`authz-service serve` as WEB_CONCURRENCY worker processes on one port (SO_REUSEPORT).

The count defaults to the CPUs the container's cgroup quota allows (cgroup v2 `cpu.max`,
v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`, rounded up), never more than the CPUs this
process may run on. One worker serves in this process; several are forked children of a
small supervisor that passes SIGTERM/SIGINT on and exits when they have all finished
(non-zero as soon as one dies on its own, so the pod restarts whole). Workers write their
metrics to one shared folder (prometheus_client's multiprocess mode), so a scrape of any
worker shows the sum over all of them.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from authz_service.config import Config

CGROUP = Path("/sys/fs/cgroup")
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def cpu_limit(cgroup: Path = CGROUP) -> int:
    """Whole CPUs allowed by the cgroup quota (rounded up), at most the usable CPUs."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    quota = _quota(cgroup)
    return max(1, min(usable, math.ceil(quota))) if quota else max(1, usable)


def _quota(cgroup: Path) -> float | None:
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def serve(config: Config) -> int:
    count = config.workers or cpu_limit()
    if count == 1:
        return _worker(config, reuse_port=False)
    metrics_dir = tempfile.mkdtemp(prefix="authz-metrics-")
    os.environ[METRICS_DIR_ENV] = metrics_dir  # before any worker imports prometheus_client
    try:
        return _supervise(config, count)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _worker(config: Config, reuse_port: bool) -> int:
    from authz_service.app import serve as serve_app  # the web stack loads in the worker

    serve_app(config, reuse_port=reuse_port)
    return 0


def _supervise(config: Config, count: int) -> int:
    children: set[int] = set()
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _signal(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            # Stopped while still importing: nothing is open or in flight yet, so exit 0.
            # app.serve installs its graceful handlers before it opens anything.
            signal.signal(signal.SIGTERM, _exit_quietly)
            signal.signal(signal.SIGINT, _exit_quietly)
            code = 1
            try:
                code = _worker(config, reuse_port=True)
            finally:
                sys.stdout.flush()
                os._exit(code)
        children.add(pid)
    code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        children.discard(pid)
        _mark_dead(pid)
        if os.waitstatus_to_exitcode(status) != 0 or not stopping:
            code = code or 1
            if not stopping:  # a worker died on its own: stop the others, exit non-zero
                stop(signal.SIGTERM, None)
    return code


def _exit_quietly(_signum: int, _frame: FrameType | None) -> None:
    os._exit(0)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _mark_dead(pid: int) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
