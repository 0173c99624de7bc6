"""Benchmark of the authorization service against the local PostgreSQL, Redis and Kafka.

Runs `authz-service serve` as its own process on a fresh database (after `migrate up`),
seeds authorizations through the API, then drives it with a bounded number of requests
from an aiohttp client in this process (loopback only) and prints throughput, latency
percentiles, the server's memory, and the machine it ran on. Needs `./hack/up` (or the
servers of `./hack/test`) running. Usage: `.venv/bin/python -m benchmarks.service_bench`.

The load generator shares the machine's two cores with the server, so the numbers are a
floor, not a ceiling; they are for comparing changes on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
import psycopg

from benchmarks import REPO
from devenv import procs
from devenv import state as devstate

REGIONS = ["440104", "440105", "440106", "310101", "110101", "120101", "320102", "330102"]


def machine() -> str:
    cpu = "unknown cpu"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem_kib = int(line.split()[1])
    return (f"{cpu}, {os.cpu_count()} cores, {mem_kib / 1024 / 1024:.0f} GiB, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def rss_mib(pid: int) -> tuple[float, float]:
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def token(secret: str, sub: str, admin: bool) -> str:
    now = int(time.time())
    claims = {"sub": sub, "roles": ["admin"] if admin else [], "iat": now, "exp": now + 3600}
    return jwt.encode(claims, secret, algorithm="HS256")


async def drive(session: aiohttp.ClientSession, requests: list[tuple[str, str, Any, str]],
                concurrency: int) -> tuple[float, list[float], dict[int, int]]:
    """Send all `requests` with at most `concurrency` in flight; returns the wall time, each
    request's latency in ms, and the count of each status."""
    queue: asyncio.Queue[tuple[str, str, Any, str]] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker() -> None:
        while not queue.empty():
            method, url, body, bearer = queue.get_nowait()
            t0 = time.perf_counter()
            async with session.request(method, url, json=body,
                                       headers={"Authorization": f"Bearer {bearer}"}) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, statuses


def report(name: str, wall: float, latencies: list[float], statuses: dict[int, int]) -> str:
    q = statistics.quantiles(latencies, n=100)
    return (f"| {name} | {len(latencies)} | {len(latencies) / wall:,.0f} | {q[49]:.1f} | "
            f"{q[94]:.1f} | {q[98]:.1f} | {dict(sorted(statuses.items()))} |")


async def bench(base: str, secret: str, users: int, checks: int, concurrency: int) -> list[str]:
    admin = token(secret, "bench-admin", admin=True)
    rows = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as session:
        creates = [("POST", f"{base}/api/v1/authorizations",
                    {"userId": f"u{i}", "roleType": "COMMUNITY",
                     "regionCode": REGIONS[i % len(REGIONS)]}, admin) for i in range(users)]
        wall, lat, st = await drive(session, creates, concurrency)
        rows.append(report("POST /authorizations (create)", wall, lat, st))
        user_tokens = {i: token(secret, f"u{i}", admin=False) for i in range(users)}
        reads = [("GET", f"{base}/api/v1/authorizations/check?userId=u{i % users}"
                  f"&roleType=COMMUNITY&regionCode={REGIONS[(i % users) % len(REGIONS)]}",
                  None, user_tokens[i % users]) for i in range(checks)]
        wall, lat, st = await drive(session, reads, concurrency)
        rows.append(report("GET /authorizations/check (hot path)", wall, lat, st))
        lists = [("GET", f"{base}/api/v1/authorizations?userId=u{i % users}&limit=20", None,
                  admin) for i in range(checks // 5)]
        wall, lat, st = await drive(session, lists, concurrency)
        rows.append(report("GET /authorizations?userId= (list)", wall, lat, st))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--checks", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    st = devstate.load()
    if not procs.alive(st.pids.get("postgres")):
        print("servers not running: run ./hack/up first", file=sys.stderr)
        return 2
    db = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(st.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = urlsplit(st.database_url)._replace(path=f"/{db}").geturl()
    redis = urlsplit(st.redis_url)
    port = procs.free_port()
    secret = secrets.token_urlsafe(32)
    env = {"PATH": os.environ["PATH"], "NODE_ENV": "production", "PORT": str(port),
           "DATABASE_URL": f"{url}?connection_limit=20&pool_timeout=30",
           "REDIS_HOST": redis.hostname or "127.0.0.1", "REDIS_PORT": str(redis.port),
           "KAFKA_BROKERS": st.kafka_brokers, "JWT_SECRET": secret, "LOG_LEVEL": "warn"}
    exe = str(REPO / ".venv" / "bin" / "authz-service")
    subprocess.run([exe, "migrate", "up"], env=env, check=True, capture_output=True)
    wrapper = os.environ.get("BENCH_SERVER_WRAPPER", "").split()  # e.g. a profiler
    server = subprocess.Popen([*wrapper, exe, "serve"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        procs.wait_until("service", lambda: procs.port_open(port), 30, server.pid)
        idle_rss, _ = rss_mib(server.pid)
        rows = asyncio.run(bench(base, secret, args.users, args.checks, args.concurrency))
        rss, peak = rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(15)
        with psycopg.connect(st.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    print(f"Machine: {machine()}")
    print(f"Load: {args.concurrency} concurrent connections from one aiohttp client process, "
          f"LOG_LEVEL=warn, {args.users} users")
    print()
    print("| endpoint | requests | req/s | p50 ms | p95 ms | p99 ms | statuses |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)
    print()
    print(f"Server memory: {idle_rss:.0f} MiB RSS idle after start, {rss:.0f} MiB after the "
          f"run, {peak:.0f} MiB peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
