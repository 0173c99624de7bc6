"""`./hack/bench service`: the decision check beside Open Policy Agent and a bare aiohttp app.

One run, the same 2,000 active grants loaded into the service (PostgreSQL) and into OPA
(as data), answers compared first, then each server measured in turn on the same budget:
the server pinned to CPU 0 (one worker: WEB_CONCURRENCY=1; OPA with GOMAXPROCS=1) and the
load generator (vegeta, GOMAXPROCS=1) pinned to CPU 1 with the service's dependencies
(PostgreSQL, Redis, Kafka): CPU 0 runs the server under test alone, as its pod's CPU would
(until 2026-12-06 they ran unpinned and took their share of CPU 0 from the service). Redis's
share of a CPU during the service's runs is printed beside it. Then: a fixed-rate
open-loop run at --rate checks/s with cache hits and misses apart, creates/s with the
outbox relay running and the time from each 201 to its event on Kafka, the service's RSS,
and (with --plot) throughput and p99 against offered load as a PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import psycopg

from benchmarks import REPO, binaries
from benchmarks.check_load import (
    LOAD_CPU,
    EventClock,
    Stats,
    Vegeta,
    cpu_seconds,
    load_sweep,
    off_server_cpu,
    profiled,
    server,
    stats,
    target,
)
from benchmarks.check_report import plot, report, versions
from benchmarks.service_bench import rss_mib, token
from devenv import procs
from devenv import state as devstate

CHECK = "/api/v1/authorizations/check"
REGIONS = ["440104", "440105", "440106", "310101", "110101", "120101", "320102", "330102"]
OTHER_ROLES = ["AUTH_CITY_COMPANY", "AUTH_PROVINCE_COMPANY", "CITY_COMPANY",
               "PROVINCE_COMPANY"]
POLICY = """package authz

grant := data.grants[input.userId][input.roleType][input.regionCode]

decision := {"allowed": true, "authorizationId": grant} if grant
default decision := {"allowed": false, "authorizationId": null}
"""


@dataclass(frozen=True)
class World:
    """The grants and the requests every side is asked."""
    grants: dict[str, tuple[str, str, str]]  # id -> (user, role, region)
    secret: str

    def keys(self) -> list[tuple[str, str, str]]:
        """Each grant's key (allowed) and one key of the same user that is not granted."""
        out = []
        for user, role, region in self.grants.values():
            out.append((user, role, region))
            out.append((user, role, REGIONS[(REGIONS.index(region) + 1) % len(REGIONS)]))
        return out

    def unseen(self, count: int) -> list[tuple[str, str, str]]:
        """Keys never checked before (cache misses), none granted."""
        users = [g[0] for g in self.grants.values()]
        return [(users[i % len(users)], OTHER_ROLES[(i // len(users)) % len(OTHER_ROLES)],
                 REGIONS[(i // (len(users) * len(OTHER_ROLES))) % len(REGIONS)])
                for i in range(count)]


def check_url(base: str, key: tuple[str, str, str]) -> str:
    return f"{base}{CHECK}?" + urlencode({"userId": key[0], "roleType": key[1],
                                          "regionCode": key[2]})


def opa_target(base: str, key: tuple[str, str, str]) -> dict[str, Any]:
    return target("POST", f"{base}/v1/data/authz/decision", body={
        "input": {"userId": key[0], "roleType": key[1], "regionCode": key[2]}})


def seed(database_url: str, count: int) -> dict[str, tuple[str, str, str]]:
    """`count` ACTIVE grants of users new to this run (Redis may still cache older runs')."""
    run = secrets.token_hex(3)
    rows = {str(uuid.uuid4()): (f"g{run}-{i}", "COMMUNITY", REGIONS[i % len(REGIONS)])
            for i in range(count)}
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO authorizations (id, user_id, role_type, region_code, status, "
            "created_at, updated_at, activated_at) "
            "VALUES (%s::uuid, %s, %s, %s, 'ACTIVE', now(), now(), now())",
            [(ident, *key) for ident, key in rows.items()])
    return rows


async def put_json(url: str, body: Any) -> None:
    async with aiohttp.ClientSession() as http, http.put(url, json=body) as resp:
        resp.raise_for_status()


async def answers_agree(ours: str, opa: str, world: World) -> tuple[int, list[str]]:
    tokens = {u: token(world.secret, u, admin=False) for u, _, _ in world.grants.values()}
    keys = world.keys()
    mismatches: list[str] = []
    sem = asyncio.Semaphore(32)
    async with aiohttp.ClientSession() as http:
        async def one(key: tuple[str, str, str]) -> None:
            async with sem:
                async with http.get(check_url(ours, key), headers={
                        "Authorization": f"Bearer {tokens[key[0]]}"}) as resp:
                    mine = await resp.json()
                async with http.post(f"{opa}/v1/data/authz/decision", json={
                        "input": dict(zip(("userId", "roleType", "regionCode"), key,
                                          strict=True))}) as resp:
                    theirs = (await resp.json())["result"]
            if mine != theirs:
                mismatches.append(f"{key}: service {mine} OPA {theirs}")

        await asyncio.gather(*(one(k) for k in keys))
    return len(keys), mismatches


def creates(vegeta: Vegeta, base: str, admin: str, seconds: float, clock: EventClock
            ) -> tuple[Stats, list[float], int]:
    run = secrets.token_hex(3)
    bodies = [target("POST", f"{base}/api/v1/authorizations", admin,
                     {"userId": f"c{run}-{i}", "roleType": "COMMUNITY",
                      "regionCode": REGIONS[i % len(REGIONS)]})
              for i in range(int(seconds * 3000))]
    results = vegeta.attack(bodies, 0, seconds)
    answered = {json.loads(r.body)["id"]: (r.started_ns + r.latency_ns) / 1e9
                for r in results if r.code == 201}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not answered.keys() <= clock.arrived.keys():
        time.sleep(0.2)
    delays = sorted((clock.arrived[i] - t) * 1000 for i, t in answered.items()
                    if i in clock.arrived)
    return stats(results), delays, len(answered) - len(delays)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/bench service", description=__doc__)
    parser.add_argument("--grants", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured run")
    parser.add_argument("--connections", type=int, default=32, help="closed-loop runs")
    parser.add_argument("--rate", type=int, default=1000, help="the open-loop run, checks/s")
    parser.add_argument("--plot", type=Path, help="PNG of throughput and p99 vs offered load")
    parser.add_argument("--profile", type=Path,
                        help="py-spy's collapsed stacks of the service's closed-loop check run "
                             "(and of the cache-miss run, in *.miss.txt)")
    parser.add_argument("--service-cmd", default=str(REPO / ".venv" / "bin" / "authz-service"),
                        help="the service's command (e.g. an older checkout's, to compare)")
    args = parser.parse_args(argv)
    st = load_side()
    if st is None:
        return 2
    opa_exe, vegeta_exe = binaries.opa_bin(), binaries.vegeta_bin()
    work = Path(tempfile.mkdtemp(prefix="authz-bench-"))
    with off_server_cpu(st.pids), bench_database(st) as url:
        return run(args, st, url, work, opa_exe, vegeta_exe)


def load_side() -> devstate.State | None:
    """Pin this process to the load's CPU (it is part of the load side) and read the
    environment's state; None, said on stderr, when its servers are not running."""
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    st = devstate.load()
    if not procs.alive(st.pids.get("postgres")) or not st.kafka_brokers:
        print("servers not running: python -m devenv servers", file=sys.stderr)
        return None
    return st


@contextmanager
def bench_database(st: devstate.State) -> Iterator[str]:
    """A database of its own for one run (its URL), dropped afterwards."""
    db = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(st.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    try:
        yield urlsplit(st.database_url)._replace(path=f"/{db}").geturl()
    finally:
        with psycopg.connect(st.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def service_env(st: devstate.State, url: str, port: int, secret: str, topic: str
                ) -> dict[str, str]:
    """The service's environment for a run: one worker, logs at warn."""
    return {"PATH": os.environ["PATH"], "NODE_ENV": "production", "PORT": str(port),
            "DATABASE_URL": f"{url}?connection_limit=20&pool_timeout=30",
            "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(st.ports["redis"]),
            "KAFKA_BROKERS": st.kafka_brokers, "KAFKA_EVENTS_TOPIC": topic,
            "JWT_SECRET": secret, "LOG_LEVEL": "warn", "WEB_CONCURRENCY": "1"}


def migrate(env: dict[str, str]) -> None:
    """`authz-service migrate up` (this checkout's) on the run's database."""
    exe = str(REPO / ".venv" / "bin" / "authz-service")
    subprocess.run([exe, "migrate", "up"], env=env, check=True, capture_output=True)

def run(args: argparse.Namespace, st: devstate.State, url: str, work: Path, opa_exe: Path,
        vegeta_exe: Path) -> int:
    secret = secrets.token_urlsafe(32)
    topic = f"bench-events-{secrets.token_hex(4)}"
    ports = {name: procs.free_port() for name in ("service", "opa", "bare")}
    env = service_env(st, url, ports["service"], secret, topic)
    migrate(env)
    serve = [*args.service_cmd.split(), "serve"]
    world = World(seed(url, args.grants), secret)
    (work / "policy.rego").write_text(POLICY)
    vegeta = Vegeta(vegeta_exe, work)
    bases = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    admin = token(secret, "bench-admin", admin=True)
    keys = world.keys()
    tokens = {u: token(secret, u, admin=False) for u, _, _ in world.grants.values()}
    ours = [target("GET", check_url(bases["service"], k), tokens[k[0]]) for k in keys]
    opa = [opa_target(bases["opa"], k) for k in keys]
    bare = [target("GET", check_url(bases["bare"], k), tokens[k[0]]) for k in keys]
    log = work / "servers.log"
    redis_pid = st.pids.get("redis")
    lines: list[str] = []
    with server(serve, ports["service"], env, log) as service_pid, \
            server([str(opa_exe), "run", "--server", f"--addr=127.0.0.1:{ports['opa']}",
                    "--log-level=error", str(work / "policy.rego")], ports["opa"],
                   dict(os.environ, GOMAXPROCS="1"), log), \
            server([str(REPO / ".venv" / "bin" / "python"), "-m", "benchmarks.bare_app",
                    str(ports["bare"])], ports["bare"], dict(os.environ, PYTHONPATH=str(REPO)),
                   log):
        grants: dict[str, dict[str, dict[str, str]]] = {}
        for ident, (user, role, region) in world.grants.items():
            grants.setdefault(user, {}).setdefault(role, {})[region] = ident
        asyncio.run(put_json(f"{bases['opa']}/v1/data/grants", grants))
        compared, mismatches = asyncio.run(answers_agree(bases["service"], bases["opa"], world))
        lines.append(f"Answers compared: {compared} keys ({len(world.grants)} granted), "
                     f"{len(mismatches)} disagree" + (f": {mismatches[:3]}" if mismatches else ""))
        if mismatches:
            print("\n".join(lines))
            return 1
        idle_rss = rss_mib(service_pid)[0]
        table = {}
        redis_share = 0.0
        for name, targets in (("service check (cache warm)", ours),
                              ("Open Policy Agent, REST decision API", opa),
                              ("bare aiohttp app, constant answer", bare)):
            before = cpu_seconds(redis_pid)
            with profiled(service_pid if args.profile and name.startswith("service") else None,
                          args.profile, args.seconds):
                table[name] = stats(vegeta.attack(targets, 0, args.seconds, args.connections))
            if name.startswith("service"):
                redis_share = (cpu_seconds(redis_pid) - before) / args.seconds
        hit = stats(vegeta.attack(ours, args.rate, args.seconds))
        unseen = world.unseen(int(args.rate * args.seconds * 1.1))
        with profiled(service_pid if args.profile else None,
                      args.profile and args.profile.with_suffix(".miss.txt"), args.seconds):
            miss = stats(vegeta.attack([target("GET", check_url(bases["service"], k),
                                               tokens[k[0]]) for k in unseen],
                                       args.rate, args.seconds))
        sweep = load_sweep(vegeta, {"service": ours, "OPA": opa, "bare aiohttp": bare},
                           args.seconds / 2) if args.plot else {}
        clock = EventClock(st.kafka_brokers, topic)
        try:
            created, delays, missing = creates(vegeta, bases["service"], admin, args.seconds,
                                               clock)
        finally:
            clock.close()
        rss, peak = rss_mib(service_pid)
    ours_rps = table["service check (cache warm)"].rps
    lines += report(args, table, ours_rps, redis_share, hit, miss, created, delays, missing,
                    idle_rss, rss, peak, versions(opa_exe, vegeta_exe))
    print("\n".join(lines))
    if args.plot:
        plot(sweep, args.plot)
        print(f"\nPlot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
