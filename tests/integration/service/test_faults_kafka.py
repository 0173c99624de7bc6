"""Kafka down for ~10 s while 200 authorizations are created: every create answers 201,
the outbox keeps the events, and after the broker returns all of them are published;
none lost, a duplicate only ever repeats an eventId with the same payload. (The long
version, 60 s and 1,000 creates: `python -m benchmarks.service_faults`.)"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from confluent_kafka.admin import AdminClient, NewTopic

from authz_service.config import load_config
from tests.support import events
from tests.support.private import PrivatePostgres, PrivateRedis

from .conftest import ADMIN, ClientFactory, eventually, fault_env, migrate_up

pytestmark = pytest.mark.servers
API = "/api/v1/authorizations"
OUTAGE = 10.0  # seconds the broker stays down, at least
CREATES = 200


def create_topic(brokers: str) -> str:
    topic = f"authz-events-{secrets.token_hex(4)}"
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]
                        )[topic].result(30)
    return topic


async def create_many(client: TestClient[Any, Any], count: int, width: int = 10
                      ) -> list[str]:
    """`count` creates, `width` at a time; every one must answer 201."""
    gate = asyncio.Semaphore(width)
    prefix = secrets.token_hex(4)

    async def one(i: int) -> str:
        async with gate:
            resp = await client.post(API, headers=ADMIN, json={
                "userId": f"k-{prefix}-{i}", "roleType": "COMMUNITY", "regionCode": "440106"})
            assert resp.status == 201, await resp.text()
            ident: str = (await resp.json())["id"]
            return ident

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def failed_publishes(client: TestClient[Any, Any]) -> float:
    text = await (await client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith("authz_outbox_publish_failures_total "):
            return float(line.split()[1])
    return 0.0


async def test_kafka_down_while_200_are_created_loses_no_event(
    private_postgres: PrivatePostgres, private_redis: PrivateRedis, private_kafka: Any,
    start: ClientFactory
) -> None:
    url = private_postgres.url
    migrate_up(url)
    topic = await asyncio.to_thread(create_topic, private_kafka.brokers)
    base = load_config(fault_env(private_postgres, private_redis, private_kafka.brokers))
    config = replace(base, relay_enabled=True, consumer_enabled=False, relay_interval=0.1,
                     kafka=replace(base.kafka, events_topic=topic, delivery_timeout_ms=3000))
    client = await start(config)
    ids = await create_many(client, 20)

    async def nothing_pending() -> bool:
        return await asyncio.to_thread(events.pending, url) == 0

    await eventually(nothing_pending, within=20, what="the first events to be published")

    await asyncio.to_thread(private_kafka.stop)
    down_since = time.monotonic()
    ids += await create_many(client, CREATES)  # requests never wait for Kafka

    async def relay_failed() -> bool:
        return await failed_publishes(client) > 0

    await eventually(relay_failed, within=20, what="a publish attempt to fail")
    assert await asyncio.to_thread(events.pending, url) >= CREATES
    # The outage's length is this test's input, not something to wait for.
    await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - down_since)))
    await asyncio.to_thread(private_kafka.start)
    await eventually(nothing_pending, within=60, what="the outbox to drain")

    written = await asyncio.to_thread(events.outbox_events, url, ids)
    messages = await asyncio.to_thread(events.read_all, private_kafka.brokers, topic)
    result = events.tally(written, messages)
    assert result.created == len(ids) == CREATES + 20
    assert result.lost == ()
    assert result.foreign == 0
    assert result.mismatched == ()  # a duplicate repeats its eventId and payload exactly
    assert result.distinct == result.created
    assert result.published == result.created + result.duplicates
