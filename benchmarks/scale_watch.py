"""The operator scale benchmark's view of the cluster: a raw list+watch per kind that remembers
each object with the time it arrived (`Tracker`), the operator's RSS sampled every second
(`RssSampler`), the CPU time the control plane's processes and the operator spent
(`cpu_seconds`), and its heap report asked for and read (`ask_heap_report`, `heap_head`:
--heap)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import config as k8s_config
from kubernetes.watch.watch import iter_resp_lines

from benchmarks.scale_model import MACHINE, Key, Obj

# ---------------------------------------------------------------------------------------------
# the cluster: raw list+watch, objects remembered with the time they arrived


class Tracker:
    """List, then watch one kind in every namespace (a thread): the latest version of each
    object in the namespaces `keep` accepts, when it arrived, and when `done` first held."""

    def __init__(self, kubeconfig: str, path: str, keep: Callable[[str], bool],
                 done: Callable[[Obj], bool] = lambda _: False, selector: str = "") -> None:
        self.api = k8s_config.new_client_from_config(config_file=kubeconfig)
        self.path, self.keep, self.done, self.selector = path, keep, done, selector
        self.objects: dict[Key, Obj] = {}
        self.seen_at: dict[Key, float] = {}
        self.done_at: dict[Key, float] = {}
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._listed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Tracker:
        self._thread.start()
        if not self._listed.wait(60):
            raise TimeoutError(f"could not list {self.path}")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self.api.close()

    def _get(self, query: list[tuple[str, str]], timeout: float) -> Any:
        if self.selector:
            query = [*query, ("labelSelector", self.selector)]
        method, url, headers, _, _ = self.api.param_serialize(
            method="GET", resource_path=self.path, query_params=query,
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        return self.api.call_api(method, url, header_params=headers,
                                 _request_timeout=timeout).response

    def _note(self, kind: str, obj: Obj, now: float) -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if not self.keep(key[0]):
            return
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
            if key not in self.done_at and self.done(obj):
                self.done_at[key] = now
        self.seen_at[key] = now

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                listed = json.loads(self._get([], 60).data)
                version = listed["metadata"]["resourceVersion"]
                now = time.monotonic()
                with self.cond:
                    self.objects.clear()
                    for item in listed.get("items") or []:
                        self._note("ADDED", item, now)
                    self.cond.notify_all()
                self._listed.set()
                while not self._stop.is_set():
                    resp = self._get([("watch", "1"), ("resourceVersion", version),
                                      ("allowWatchBookmarks", "true"),
                                      ("timeoutSeconds", "30")], 60)
                    for line in iter_resp_lines(resp):
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise RuntimeError(f"watch {self.path}: {obj.get('message')}")
                        version = obj["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            with self.cond:
                                self._note(event["type"], obj, time.monotonic())
                                self.cond.notify_all()
                        if self._stop.is_set():
                            break
                    resp.release_conn()
            except Exception as exc:  # relist after any failure (410, a reset)
                if self._stop.is_set():
                    return
                print(f"[scale] {self.path}: {exc}; listing again", file=sys.stderr)
                time.sleep(1)

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Until `predicate` (read under the lock) holds; TimeoutError naming `what`."""
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise TimeoutError(f"{what}: not after {timeout:.0f} s")


class RssSampler:
    """The operator's RSS, read from /proc every second while it runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples = [self._read()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> float:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            value = self._read()
            if value:
                self.samples.append(value)

    def stop(self) -> tuple[float, float]:
        """(peak, end) in MiB."""
        self._stop.set()
        self._thread.join(5)
        end = self._read() or self.samples[-1]
        return max([*self.samples, end]), end


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: dict[str, int | None]) -> dict[str, float]:
    """User + system CPU seconds each named process has spent so far (gone: left out), and
    under `MACHINE` the busy time of every CPU (all but idle and iowait), from /proc."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            with open(f"/proc/{pid}/stat") as f:
                # after the command's parentheses: state is field 3, utime and stime 14, 15
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]
    out[MACHINE] = (sum(ticks[:8]) - idle) / CLOCK_TICKS
    return out


HEAP_WAIT = 10.0   # seconds for the report (a snapshot of a large heap takes a few)
HEAP_HEAD = 30     # lines of it printed: the totals and the largest packages


def ask_heap_report(pid: int, path: Path, wait: float = HEAP_WAIT) -> bool:
    """SIGUSR2 to the operator, which then writes its heap report to `path` (the file its
    AUTHZ_HEAP_REPORT names; authz_operator.heapreport); whether it came within `wait`
    seconds."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + wait
    while not path.exists():   # renamed into place whole
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def heap_head(path: Path, lines: int = HEAP_HEAD) -> list[str]:
    """The report's first lines; none when it was not written."""
    try:
        return path.read_text().splitlines()[:lines]
    except FileNotFoundError:
        return []
