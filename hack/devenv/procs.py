"""Starting and stopping background processes: free loopback ports, a log file and a pid
file per process, process groups so a stop takes children with it."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

LOOPBACK = "127.0.0.1"
SERVER_PORTS_FROM = 20000  # sticky ports: from here up to the ephemeral range
# Popen objects of the processes we started and let run: dropping one while its process
# lives raises a ResourceWarning (an error under pytest's settings), and keeping it lets
# `stop` reap the child.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def sticky_port(ports: dict[str, int], name: str) -> int:
    """The port `name` had before if nothing listens there now, else a new free one below
    the ephemeral range; kept in `ports`. Stable ports keep URLs in users' shells and
    kubeconfigs valid across a down/up, and etcd's data remembers its peer URL."""
    port = ports.get(name)
    if port is None or port_open(port):
        port = server_port()
    ports[name] = port
    return port


def server_port(rng: random.Random | None = None) -> int:
    """A free port below the kernel's ephemeral range. A port the kernel hands out (as
    `free_port`) is also one it gives clients for their side of a connection: after a
    benchmark's thousands of connections, a sticky port of ours could sit in a client's
    TIME-WAIT, and etcd could not listen on it again for a minute."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low - SERVER_PORTS_FROM < 1000:  # a machine with a wide ephemeral range
        return free_port()
    pick = rng or random.SystemRandom()
    for _ in range(100):
        port = pick.randrange(SERVER_PORTS_FROM, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    return free_port()


def port_open(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def spawn(
    name: str,
    argv: Sequence[str],
    logdir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` in its own session, detached from us, logging to `<logdir>/<name>.log`.
    Returns the pid, which is also written to `<logdir>/<name>.pid`."""
    logdir.mkdir(parents=True, exist_ok=True)
    log = open(logdir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        log.close()
    (logdir / f"{name}.pid").write_text(str(proc.pid))
    _CHILDREN[proc.pid] = proc
    return proc.pid


class Recorded(Protocol):
    """Where started processes are remembered (devenv.state.State)."""

    pids: dict[str, int]

    def save(self) -> None: ...


def start(record: Recorded, name: str, argv: Sequence[str], logdir: Path, *,
          ready: Callable[[], bool] | None = None, timeout: float = 30,
          env: Mapping[str, str] | None = None) -> int:
    """Spawn `name`, remember its pid (saved at once, so `hack/down` finds it even if what
    follows fails), then wait until `ready` holds, failing early with its log if it dies."""
    pid = spawn(name, argv, logdir, env=env)
    record.pids[name] = pid
    record.save()
    if ready is not None:
        wait_until(name, ready, timeout, pid, logdir / f"{name}.log")
    return pid


def stop(pid: int | None, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
    if not pid or not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    # A dead child of ours is a zombie until reaped (and its Popen would warn at exit).
    child = _CHILDREN.get(pid)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)
    _reap(pid)


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, pid: int | None = None,
    log: Path | None = None,
) -> None:
    """Poll `check` until it is true. Fails early, with the log's tail, if `pid` dies."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not up yet is the usual reason
            pass
        if pid is not None and not alive(pid):
            raise RuntimeError(f"{what} exited while starting{_tail(log)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s{_tail(log)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"; last lines of {log}:\n" + "\n".join(text)


def run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a short command, failing with its output when it fails."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )
    return proc  # type: ignore[no-any-return]
