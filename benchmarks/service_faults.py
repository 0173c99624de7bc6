"""The long Kafka-outage run: the service's outbox relay against a broker that is down for
a minute while 1,000 authorizations are created. Prints what was created and what reached
the topic (published, distinct eventIds, duplicates, lost) and how long the relay took to
catch up; nothing is asserted on time.

Everything is private to this run, on loopback: a PostgreSQL cluster, a redis-server and a
Kafka broker of its own (only they are stopped), and the app in this process. Needs the
Kafka jars and PostgreSQL 15 that `./hack/up` installs. Usage:
`.venv/bin/python -m benchmarks.service_faults [--outage 60] [--creates 1000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import shutil
import statistics
import time
from dataclasses import replace
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from confluent_kafka.admin import AdminClient, NewTopic

from authz_service.app import create_app
from authz_service.config import load_config
from devenv import paths, procs, servers
from tests.integration.service.conftest import migrate_up
from tests.support import events
from tests.support.private import PrivatePostgres, PrivateRedis

SECRET = secrets.token_hex(24)  # signs this run's tokens; the app it starts verifies them
API = "/api/v1/authorizations"


class Broker:
    """A Kafka broker of this run's own (servers.start_broker), stopped by its pid."""

    def __init__(self) -> None:
        self.base = paths.RUN / "private" / f"kbench{secrets.token_hex(4)}"
        self.port, self.controller = procs.free_port(), procs.free_port()
        self.pid: int | None = None
        self.brokers = f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.pid = servers.start_broker(self.base, self.base.name, self.port, self.controller)

    def stop(self) -> None:
        procs.stop(self.pid, timeout=20)
        self.pid = None

    def remove(self) -> None:
        """Its data, pid file and log (spawn keeps those beside the folder)."""
        shutil.rmtree(self.base, ignore_errors=True)
        for suffix in (".log", ".pid"):
            self.base.with_name(self.base.name + suffix).unlink(missing_ok=True)


async def create_many(http: aiohttp.ClientSession, base: str, count: int, width: int = 10
                      ) -> tuple[list[str], list[float], int]:
    """(ids of the 201s, seconds each create took, how many were not 201)."""
    gate = asyncio.Semaphore(width)
    prefix = secrets.token_hex(4)
    token = jwt.encode({"sub": "bench", "roles": ["admin"], "exp": int(time.time()) + 3600},
                       SECRET, algorithm="HS256")
    headers = {"Authorization": f"Bearer {token}"}
    ids: list[str] = []
    took: list[float] = []
    failed = 0

    async def one(i: int) -> None:
        nonlocal failed
        async with gate:
            started = time.monotonic()
            async with http.post(f"{base}{API}", headers=headers, json={
                    "userId": f"b-{prefix}-{i}", "roleType": "COMMUNITY",
                    "regionCode": "440106"}) as resp:
                body: dict[str, Any] = await resp.json()
                took.append(time.monotonic() - started)
                if resp.status == 201:
                    ids.append(body["id"])
                else:
                    failed += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    return ids, took, failed


async def wait_drained(url: str, within: float) -> float:
    """Seconds until the outbox has nothing pending (or `within` passed)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await asyncio.to_thread(events.pending, url) == 0:
            break
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def run(outage: float, creates: int) -> None:
    pg, redis, broker = PrivatePostgres(), PrivateRedis(), Broker()
    try:
        await asyncio.to_thread(pg.start)
        await asyncio.to_thread(redis.start)
        await asyncio.to_thread(broker.start)
        await asyncio.to_thread(migrate_up, pg.url)
        topic = f"authz-bench-{secrets.token_hex(4)}"
        admin = AdminClient({"bootstrap.servers": broker.brokers, "log_level": 0})
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]
                            )[topic].result(30)
        await measure(pg, redis, broker, topic, outage, creates)
    finally:
        await asyncio.to_thread(broker.stop)
        broker.remove()
        await asyncio.to_thread(redis.close)
        await asyncio.to_thread(pg.close)


async def measure(pg: PrivatePostgres, redis: PrivateRedis, broker: Broker, topic: str,
                  outage: float, creates: int) -> None:
    base_config = load_config({
        "DATABASE_URL": pg.url, "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis.port),
        "KAFKA_BROKERS": broker.brokers, "JWT_SECRET": SECRET, "LOG_LEVEL": "error"})
    config = replace(base_config, consumer_enabled=False,
                     kafka=replace(base_config.kafka, events_topic=topic))
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    port = procs.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            before, _, _ = await create_many(http, base, 50)
            await wait_drained(pg.url, 30)
            await asyncio.to_thread(broker.stop)
            down_at = time.monotonic()
            during, took, failed = await create_many(http, base, creates)
            pending_in_outage = await asyncio.to_thread(events.pending, pg.url)
            await asyncio.sleep(max(0.0, outage - (time.monotonic() - down_at)))
            await asyncio.to_thread(broker.start)
            catch_up = await wait_drained(pg.url, 300)
    finally:
        await runner.cleanup()
    written = await asyncio.to_thread(events.outbox_events, pg.url, before + during)
    messages = await asyncio.to_thread(events.read_all, broker.brokers, topic, 60)
    result = events.tally(written, messages)
    ordered = sorted(took)
    print(f"broker down {outage:.0f} s; creates during the outage: {len(during)} answered 201,"
          f" {failed} not (p50 {statistics.median(ordered) * 1000:.1f} ms, "
          f"p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.1f} ms)")
    print(f"outbox pending while down: {pending_in_outage}; "
          f"all published {catch_up:.1f} s after the broker was back")
    print(f"events created {result.created}, published {result.published}, distinct "
          f"eventIds {result.distinct}, duplicates {result.duplicates}, lost "
          f"{len(result.lost)}, foreign {result.foreign}, differing payloads "
          f"{len(result.mismatched)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outage", type=float, default=60.0, help="seconds Kafka is down")
    parser.add_argument("--creates", type=int, default=1000, help="creates during it")
    args = parser.parse_args()
    # The relay's warnings while the broker is down are expected: only errors show.
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("authz_service.kafka").setLevel(logging.CRITICAL)  # librdkafka's own
    asyncio.run(run(args.outage, args.creates))


if __name__ == "__main__":
    main()
