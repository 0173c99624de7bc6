"""SIGTERM under load: `authz-service serve` with two worker processes, creates and checks
in flight. Every request that was sent gets a whole answer (201/200, or a clean 503),
never a reset; the process exits 0; every created authorization's event reaches Kafka
(published while draining, or by the next start's relay)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psycopg
import pytest

from devenv.procs import free_port
from tests.support import events
from tests.support.private import PrivatePostgres, PrivateRedis

from .conftest import ADMIN, Env, eventually, fault_env, migrate_up

pytestmark = pytest.mark.servers
CLI = str(Path(sys.executable).parent / "authz-service")
API = "/api/v1/authorizations"
WORKERS = 8  # concurrent clients


@dataclass
class Load:
    """What the clients saw: per request (kind, status) or (kind, error)."""

    answers: list[tuple[str, int]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    in_flight: int = 0
    finished_after_signal: int = 0
    signalled: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def client_loop(http: aiohttp.ClientSession, base: str, load: Load, n: int) -> None:
    """Create then check, again and again, until told to stop (at most 10,000 rounds)."""
    for i in range(10_000):
        for kind in ("create", "check"):
            if load.stop.is_set():
                return
            user = f"sig-{n}-{i}"
            load.in_flight += 1
            try:
                if kind == "create":
                    resp = await http.post(f"{base}{API}", headers=ADMIN, json={
                        "userId": user, "roleType": "COMMUNITY", "regionCode": "440106"})
                else:
                    resp = await http.get(f"{base}{API}/check", headers=ADMIN, params={
                        "userId": user, "roleType": "COMMUNITY", "regionCode": "440106"})
                body = await resp.json()
                load.answers.append((kind, resp.status))
                if resp.status == 201:
                    load.created.append(body["id"])
            except (aiohttp.ClientError, TimeoutError) as exc:
                load.errors.append((kind, repr(exc)))
            finally:
                load.in_flight -= 1
                load.finished_after_signal += load.signalled


def spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([CLI, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)


async def wait_ready(http: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]
                     ) -> None:
    async def ready() -> bool:
        assert proc.poll() is None, "the service exited while starting"
        try:
            async with http.get(f"{base}/health/ready") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(ready, within=30, what="the service to be ready")


async def test_sigterm_under_load_answers_every_request_and_loses_no_event(
    devenv: Env, private_postgres: PrivatePostgres, private_redis: PrivateRedis,
    kafka_topic: str, tmp_path: Path
) -> None:
    migrate_up(private_postgres.url)
    port = free_port()
    env = {**os.environ, **fault_env(private_postgres, private_redis, devenv.kafka_brokers),
           "PORT": str(port), "WEB_CONCURRENCY": "2", "SHUTDOWN_GRACE_MS": "1000",
           "KAFKA_EVENTS_TOPIC": kafka_topic, "LOG_LEVEL": "info"}
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "service.log"
    proc = spawn(env, log)
    load = Load()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            await wait_ready(http, base, proc)
            clients = [asyncio.ensure_future(client_loop(http, base, load, n))
                       for n in range(WORKERS)]

            async def busy() -> bool:
                return len(load.created) >= 100

            await eventually(busy, within=30, what="100 creates under load")
            # Creates held in the server at the signal: their outbox insert waits for
            # this lock, which is let go only after the SIGTERM.
            async with await psycopg.AsyncConnection.connect(private_postgres.url) as lock:
                await lock.execute("LOCK TABLE outbox IN SHARE MODE")

                async def held() -> bool:
                    return await waiting_inserts(private_postgres.url) >= 2

                await eventually(held, within=5, what="creates waiting in the server")
                proc.send_signal(signal.SIGTERM)
                load.signalled = True
                at_signal = load.in_flight
                load.stop.set()  # a load balancer sends nothing new once the pod is going

                async def draining() -> bool:  # readiness says so within the grace
                    async with http.get(f"{base}/health/ready") as resp:
                        return resp.status == 503 and "service" in (await resp.json())["error"]

                await eventually(draining, within=1, what="readiness to say 503")
                # Held past the grace, until the service stops accepting: what was in
                # flight must still finish then.
                await eventually(lambda: refuses_new(base), within=10,
                                 what="the service to stop accepting")
            await asyncio.gather(*clients)
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert load.errors == [], load.errors[:5]
    assert {status for _, status in load.answers} <= {200, 201, 503}
    assert at_signal >= 2, "no request was in flight at the signal"
    assert load.finished_after_signal >= at_signal
    assert sum(status == 201 for _, status in load.answers) == len(load.created)
    assert code == 0, log.read_text()[-2000:]

    if await asyncio.to_thread(events.pending, private_postgres.url):
        # Left in the outbox by the drain: the next start's relay publishes them.
        await restart_until_drained(env, log, base, private_postgres.url)
    written = await asyncio.to_thread(events.outbox_events, private_postgres.url,
                                      load.created)
    messages = await asyncio.to_thread(events.read_all, devenv.kafka_brokers, kafka_topic)
    result = events.tally(written, messages)
    assert result.created == len(load.created)
    assert result.lost == ()
    assert result.mismatched == ()


async def refuses_new(base: str) -> bool:
    try:
        async with aiohttp.ClientSession() as other, other.get(f"{base}/health/live"):
            return False
    except aiohttp.ClientConnectionError:
        return True


async def waiting_inserts(url: str) -> int:
    """Transactions waiting for a lock on the outbox table."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted "
                                 "AND relation = 'outbox'::regclass")
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def restart_until_drained(env: dict[str, str], log: Path, base: str, url: str) -> None:
    proc = spawn({**env, "WEB_CONCURRENCY": "1"}, log)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, base, proc)

        async def drained() -> bool:
            return await asyncio.to_thread(events.pending, url) == 0

        await eventually(drained, within=30, what="the next start to publish the rest")
    finally:
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        await asyncio.to_thread(proc.wait, 30)
        assert time.monotonic() - started < 30
