"""The check benchmark's load side: vegeta runs (closed or open loop, pinned to the load's
CPU) and their statistics, the servers pinned to the other CPU, py-spy beside them, CPU
time of a process, and the Kafka consumer that times each created authorization's event.
What is asked is in check_bench.py, what is printed in check_report.py."""

from __future__ import annotations

import base64
import csv
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from benchmarks import REPO
from devenv import procs

SERVER_CPU, LOAD_CPU = "0", "1"
DEPENDENCIES = ("postgres", "redis", "kafka")  # the servers' own, off SERVER_CPU


@dataclass(frozen=True)
class Result:
    started_ns: int
    code: int
    latency_ns: int
    body: bytes


@dataclass(frozen=True)
class Stats:
    count: int
    rps: float
    p50: float
    p99: float
    p999: float
    errors: int

    def row(self, name: str) -> str:
        return (f"| {name} | {self.count} | {self.rps:,.0f} | {self.p50:.2f} | {self.p99:.2f} "
                f"| {self.p999:.2f} | {self.errors} |")


def stats(results: Sequence[Result]) -> Stats:
    ok = [r for r in results if 200 <= r.code < 300]
    lat = sorted(r.latency_ns / 1e6 for r in results)
    if not lat:
        return Stats(0, 0.0, 0.0, 0.0, 0.0, 0)
    start = min(r.started_ns for r in results)
    end = max(r.started_ns + r.latency_ns for r in results)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    return Stats(len(results), len(ok) / max((end - start) / 1e9, 1e-9), pct(0.50),
                 pct(0.99), pct(0.999), len(results) - len(ok))


def target(method: str, url: str, bearer: str | None = None, body: Any = None
           ) -> dict[str, Any]:
    header = {"Authorization": [f"Bearer {bearer}"]} if bearer else {}
    entry: dict[str, Any] = {"method": method, "url": url, "header": header}
    if body is not None:
        header["Content-Type"] = ["application/json"]
        entry["body"] = base64.b64encode(json.dumps(body).encode()).decode()
    return entry


class Vegeta:
    def __init__(self, exe: Path, folder: Path) -> None:
        self.exe = str(exe)
        self.folder = folder

    def attack(self, targets: Sequence[dict[str, Any]], rate: int, seconds: float,
               connections: int = 32) -> list[Result]:
        """rate 0: closed loop with `connections` workers; else open loop at rate/s."""
        path = self.folder / f"targets-{secrets.token_hex(4)}.json"
        path.write_text("".join(json.dumps(t) + "\n" for t in targets))
        pacing = (["-rate=0", f"-workers={connections}", f"-max-workers={connections}"]
                  if rate == 0 else [f"-rate={rate}/s", "-workers=16", "-max-workers=1024"])
        env = dict(os.environ, GOMAXPROCS="1")
        attack = subprocess.Popen(
            ["taskset", "-c", LOAD_CPU, self.exe, "attack", "-format=json",
             f"-targets={path}", f"-duration={seconds}s", "-timeout=10s", "-keepalive=true",
             *pacing], stdout=subprocess.PIPE, env=env)
        encoded = subprocess.run(["taskset", "-c", LOAD_CPU, self.exe, "encode", "-to=csv"],
                                 stdin=attack.stdout, capture_output=True, check=True, env=env)
        attack.wait()
        path.unlink()
        return [Result(int(row[0]), int(row[1]), int(row[2]), base64.b64decode(row[6]))
                for row in csv.reader(encoded.stdout.decode().splitlines())]


@contextmanager
def server(argv: list[str], port: int, env: dict[str, str], log: Path) -> Iterator[int]:
    """A server pinned to SERVER_CPU; yields its pid, stops it (only it) afterwards."""
    with log.open("ab") as out:
        proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, *argv], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        procs.wait_until(argv[0], lambda: procs.port_open(port), 60, proc.pid, log)
        yield proc.pid
    finally:  # SIGINT to its own session: a profiler wrapping it writes its file
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def profiled(pid: int | None, out: Path | None, seconds: float) -> Iterator[None]:
    """py-spy sampling `pid` (on the load's CPU) for `seconds` while the block runs."""
    if pid is None or out is None:
        yield
        return
    spy = subprocess.Popen(["taskset", "-c", LOAD_CPU, str(REPO / ".venv" / "bin" / "py-spy"),
                            "record", "--pid", str(pid), "--duration", str(int(seconds)),
                            "--rate", "200", "--format", "raw", "-o", str(out), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.wait(seconds + 30)


@contextmanager
def off_server_cpu(pids: Mapping[str, int]) -> Iterator[None]:
    """The servers' dependencies (DEPENDENCIES among the environment's `pids`: every thread
    and child process of theirs) on LOAD_CPU while the block runs, so SERVER_CPU runs the
    server under test alone, as a pod's CPU would; their CPUs are given back afterwards.
    Processes they fork meanwhile (PostgreSQL's backends) inherit LOAD_CPU."""
    moved: dict[int, set[int]] = {}
    for tid in _threads(_with_descendants({pids[n] for n in DEPENDENCIES if n in pids})):
        try:
            moved[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, {int(LOAD_CPU)})
        except (ProcessLookupError, PermissionError):
            continue  # ended meanwhile
    try:
        yield
    finally:
        for tid, cpus in moved.items():
            with suppress(ProcessLookupError):
                os.sched_setaffinity(tid, cpus)


def _with_descendants(pids: set[int]) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(stat[1])
    found = set(pids)
    while grown := {p for p, parent in parents.items() if parent in found} - found:
        found |= grown
    return found


def _threads(pids: set[int]) -> list[int]:
    tids: list[int] = []
    for pid in pids:
        with suppress(OSError):
            tids += [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    return tids


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class EventClock:
    """Records when each authorization's event arrives on the events topic."""

    def __init__(self, brokers: str, topic: str) -> None:
        self.arrived: dict[str, float] = {}
        self._stop = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": brokers, "log_level": 0,
                                   "group.id": f"bench-{secrets.token_hex(4)}",
                                   "auto.offset.reset": "earliest",
                                   "topic.metadata.refresh.interval.ms": 500})
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            now = time.time()
            event = json.loads(msg.value())
            self.arrived.setdefault(event["authorization"]["id"], now)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def load_sweep(vegeta: Vegeta, sides: dict[str, list[dict[str, Any]]], seconds: float
               ) -> dict[str, list[tuple[int, Stats]]]:
    rates = [500, 1000, 2000, 4000, 8000, 12000]
    return {name: [(rate, stats(vegeta.attack(targets, rate, seconds))) for rate in rates]
            for name, targets in sides.items()}
