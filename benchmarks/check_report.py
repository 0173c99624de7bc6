"""What the check benchmark prints: the versions, the report's lines (tables, ratios and
goals), and the plot of throughput and p99 against offered load."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
from pathlib import Path

import aiohttp

from benchmarks import binaries
from benchmarks.check_load import LOAD_CPU, SERVER_CPU, Stats
from benchmarks.service_bench import machine


def versions(opa: Path, vegeta: Path) -> str:
    def first_line(argv: list[str]) -> str:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        return out.splitlines()[0] if out else "?"

    return (f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
            f"OPA {first_line([str(opa), 'version']).split()[-1]}, "
            f"vegeta {binaries.vegeta_version()}")


def report(args: argparse.Namespace, table: dict[str, Stats], ours_rps: float,
           redis_share: float, hit: Stats, miss: Stats, created: Stats, delays: list[float],
           missing: int, idle_rss: float, rss: float, peak: float, tools: str) -> list[str]:
    head = "| | requests | requests/s | p50 ms | p99 ms | p99.9 ms | errors |"
    rule = "| --- | --- | --- | --- | --- | --- | --- |"
    out = [f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
           f"Machine: {machine()}", f"Versions: {tools}",
           f"Budget: each server pinned to CPU {SERVER_CPU} (service: 1 worker; OPA: "
           f"GOMAXPROCS=1) alone, vegeta and PostgreSQL, Redis, Kafka pinned to CPU {LOAD_CPU}; "
           f"load average at start "
           f"{os.getloadavg()[0]:.1f}", "",
           f"Closed loop, {args.connections} connections, {args.seconds:.0f} s each, "
           f"{len(table) and args.grants} grants:", "", head, rule]
    out += [s.row(name) for name, s in table.items()]
    opa = table["Open Policy Agent, REST decision API"].rps
    bare = table["bare aiohttp app, constant answer"].rps
    out += ["", f"Ratios: service/OPA {ours_rps / opa:.2f}x (goal >= 1.0), service/bare "
                f"aiohttp {ours_rps / bare:.2f}x (goal >= 0.7). Redis used "
                f"{redis_share:.0%} of a CPU during the service's run (on CPU {LOAD_CPU}).", "",
            f"Open loop at {args.rate} checks/s, {args.seconds:.0f} s (goal p99 <= 5 ms, "
            "p99.9 <= 20 ms):", "", head, rule,
            hit.row("cache hit (keys checked before)"),
            miss.row("cache miss (keys never checked: PostgreSQL)"), ""]
    lag = (f"p50 {statistics.median(delays):.0f} ms, p99 "
           f"{delays[min(len(delays) - 1, int(0.99 * len(delays)))]:.0f} ms"
           if delays else "none arrived")
    out += [f"Creates, closed loop, {args.connections} connections, relay running: "
            f"{created.rps:,.0f}/s (goal >= 1,000), p50 {created.p50:.1f} ms, p99 "
            f"{created.p99:.1f} ms, {created.errors} errors; 201 -> event on Kafka: {lag} "
            f"(goal p99 <= 500 ms){f', {missing} never arrived' if missing else ''}.",
            f"Service worker RSS: {idle_rss:.0f} MiB idle, {rss:.0f} MiB after the runs, "
            f"{peak:.0f} MiB peak (goal < 150 MiB)."]
    return out


def plot(sweep: dict[str, list[tuple[int, Stats]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, points in sweep.items():
        rates = [r for r, _ in points]
        left.plot(rates, [s.rps for _, s in points], marker="o", label=name)
        right.plot(rates, [s.p99 for _, s in points], marker="o", label=name)
    left.set(xlabel="offered checks/s", ylabel="answered/s", title="Throughput")
    right.set(xlabel="offered checks/s", ylabel="p99 ms", title="p99 latency", yscale="log")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
