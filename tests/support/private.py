"""Private PostgreSQL and Redis servers for fault tests: a test may stop, restart, freeze
(SIGSTOP: connections stay open, nothing answers) and thaw them without disturbing anyone
else. Only the processes these objects started are ever signalled, found by pid: the
cluster's postmaster (its pid file) and its children, or the redis-server we spawned.
They listen on a free loopback port; their files live under `.local/run/private/`."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

from devenv import paths, procs, servers


def _private_base(prefix: str) -> Path:
    return paths.RUN / "private" / f"{prefix}{secrets.token_hex(4)}"


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


class PrivatePostgres:
    """A PostgreSQL 15 cluster of one test (initdb as the postgres user, trust auth)."""

    def __init__(self) -> None:
        self.base = _private_base("pg")
        self.port = procs.free_port()
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        servers.init_cluster(self.base)
        self.pid = servers.start_cluster(self.base, self.port, "127.0.0.1",
                                         self.base / "postgres.log")

    def stop(self) -> None:
        """`pg_ctl stop -m fast`: every connection is dropped. (Not `immediate`: with the
        environment's synchronous_commit=off the last commits would be lost.)"""
        self.thaw()
        servers.stop_cluster(self.base, "fast")
        self.pid = None

    def processes(self) -> list[int]:
        """The postmaster first, then its children (backends and background workers)."""
        if self.pid is None:
            return []
        found = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True,
                               text=True, check=False).stdout.split()
        return [self.pid, *(int(pid) for pid in found)]

    def freeze(self) -> list[int]:
        """SIGSTOP the postmaster (so it forks nothing new), then its children."""
        pids = self.processes()
        _signal_all(pids, signal.SIGSTOP)
        return pids

    def thaw(self) -> None:
        _signal_all(self.processes(), signal.SIGCONT)

    def close(self) -> None:
        if self.pid is not None:
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


class PrivateRedis:
    """A redis-server of one test, without persistence (a restart comes back empty)."""

    def __init__(self) -> None:
        self.base = _private_base("redis")
        self.port = procs.free_port()
        self.pid: int | None = None

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        pid = procs.spawn("redis", servers.redis_argv(self.port, ["127.0.0.1"], self.base),
                          self.base)
        self.pid = pid
        procs.wait_until("private redis", lambda: procs.port_open(self.port), 20, pid,
                         self.base / "redis.log")

    def stop(self) -> None:
        self.thaw()
        procs.stop(self.pid)
        self.pid = None

    def freeze(self) -> None:
        if self.pid is not None:
            _signal_all([self.pid], signal.SIGSTOP)

    def thaw(self) -> None:
        if self.pid is not None:
            _signal_all([self.pid], signal.SIGCONT)

    def close(self) -> None:
        if self.pid is not None:
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
