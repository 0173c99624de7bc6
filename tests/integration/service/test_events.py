"""The outbox relay and the identity-events consumer against real Kafka brokers."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from authz_service.config import Config, load_config
from authz_service.keys import RELAY

from .conftest import ADMIN, ClientFactory, Env, eventually, service_env

pytestmark = pytest.mark.servers
API = "/api/v1/authorizations"


def pending_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()
    return int(row[0]) if row else -1


def outbox(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT event_id::text, aggregate_id::text, event_type FROM outbox ORDER BY id"
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def read_topic(brokers: str, topic: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    """Blocking: read `count` messages from the start of the topic (key, JSON value)."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": secrets.token_hex(6),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    found: list[tuple[str, dict[str, Any]]] = []
    try:
        for _ in range(600):  # at most ~60 s of 0.1 s polls
            msg = consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            found.append((msg.key().decode(), json.loads(msg.value())))
            if len(found) >= count:
                break
    finally:
        consumer.close()
    return found


async def test_outbox_holds_events_while_kafka_is_down_and_loses_none(
    devenv: Env, migrated_database: str, private_kafka: Any, start: ClientFactory
) -> None:
    topic = f"authz-events-{secrets.token_hex(4)}"
    admin = AdminClient({"bootstrap.servers": private_kafka.brokers})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]
                        )[topic].result(30)
    base = load_config({**service_env(devenv, migrated_database),
                        "KAFKA_BROKERS": private_kafka.brokers})
    config: Config = replace(base, relay_enabled=True, consumer_enabled=False,
                             relay_interval=0.1,
                             kafka=replace(base.kafka, events_topic=topic,
                                           delivery_timeout_ms=3000))
    client = await start(config)
    user = f"user-{secrets.token_hex(4)}"
    before = {row[0] for row in outbox(migrated_database)}

    async def post(region: str) -> dict[str, Any]:
        resp = await client.post(API, json={"userId": f"{user}-{region}",
                                            "roleType": "COMMUNITY", "regionCode": region},
                                 headers=ADMIN)
        assert resp.status == 201
        body: dict[str, Any] = await resp.json()
        return body

    async def nothing_pending() -> bool:
        return pending_count(migrated_database) == 0

    await post("440101")
    await eventually(nothing_pending, what="the first event to be published")

    await asyncio.to_thread(private_kafka.stop)
    down_b = await post("440102")
    await post("440103")
    resp = await client.post(f"{API}/{down_b['id']}/activate", headers=ADMIN)
    assert resp.status == 200  # requests succeed while Kafka is down

    async def relay_gave_up_once() -> bool:
        text = await (await client.get("/metrics")).text()
        return "authz_outbox_publish_failures_total 0.0" not in text

    await eventually(relay_gave_up_once, within=30, what="a failed publish attempt")
    assert pending_count(migrated_database) == 3

    await asyncio.to_thread(private_kafka.start)
    await eventually(nothing_pending, within=60, what="the outbox to drain after recovery")

    ours = [row for row in outbox(migrated_database) if row[0] not in before]
    messages = await asyncio.to_thread(read_topic, private_kafka.brokers, topic, len(ours))
    assert sorted(m[1]["eventId"] for m in messages) == sorted(r[0] for r in ours)
    assert all(key == value["authorization"]["id"] for key, value in messages)
    b_events = [v["type"] for k, v in messages if k == down_b["id"]]
    assert b_events == ["authorization.created", "authorization.activated"]


async def test_user_deactivated_revokes_once_even_when_redelivered(
    devenv: Env, migrated_database: str, kafka_topic: str, start: ClientFactory
) -> None:
    base = load_config(service_env(devenv, migrated_database))
    config = replace(base, relay_enabled=False, consumer_enabled=True,
                     kafka=replace(base.kafka, identity_topic=kafka_topic))
    client = await start(config)
    user = f"user-{secrets.token_hex(4)}"
    ids = []
    for role, region in (("COMMUNITY", "440106"), ("AUTH_CITY_COMPANY", "440300")):
        resp = await client.post(API, json={"userId": user, "roleType": role,
                                            "regionCode": region}, headers=ADMIN)
        ids.append((await resp.json())["id"])
    await client.post(f"{API}/{ids[0]}/activate", headers=ADMIN)
    check = {"userId": user, "roleType": "COMMUNITY", "regionCode": "440106"}
    assert (await (await client.get(f"{API}/check", params=check, headers=ADMIN)).json()
            )["allowed"] is True

    event_id, sentinel = secrets.token_hex(8), secrets.token_hex(8)
    producer = Producer({"bootstrap.servers": devenv.kafka_brokers})
    deactivated = {"eventId": event_id, "type": "user.deactivated", "userId": user}
    for value in (deactivated, deactivated, b"not json",
                  {"eventId": sentinel, "type": "user.deactivated", "userId": "nobody"}):
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        producer.produce(kafka_topic, key=user.encode(), value=raw)
    assert producer.flush(30) == 0

    async def sentinel_processed() -> bool:
        with psycopg.connect(migrated_database) as conn:
            row = conn.execute("SELECT 1 FROM processed_events WHERE event_id = %s",
                               (sentinel,)).fetchone()
        return row is not None

    await eventually(sentinel_processed, within=60, what="the consumer to reach the sentinel")
    with psycopg.connect(migrated_database) as conn:
        statuses = conn.execute("SELECT status FROM authorizations WHERE user_id = %s",
                                (user,)).fetchall()
        revoked_events = conn.execute(
            "SELECT count(*) FROM outbox WHERE event_type = 'authorization.revoked' "
            "AND aggregate_id = ANY(%s::uuid[])", (ids,)).fetchone()
    assert statuses == [("REVOKED",), ("REVOKED",)]
    assert revoked_events == (2,)  # once per authorization, not once per delivery
    metrics = await (await client.get("/metrics")).text()
    assert ('authz_identity_events_total{outcome="duplicate",type="user.deactivated"} 1.0'
            in metrics)
    assert (await (await client.get(f"{API}/check", params=check, headers=ADMIN)).json()
            )["allowed"] is False


async def test_prune_deletes_only_old_published_rows(client: Any, migrated_database: str
                                                     ) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    with psycopg.connect(migrated_database) as conn:
        for event_id, published in zip(ids, ["old", "now", "pending"], strict=True):
            conn.execute(
                "INSERT INTO outbox (event_id, aggregate_id, event_type, payload, created_at, "
                "published_at) VALUES (%s, %s, 'authorization.created', '{}', "
                "now() - interval '9 days', CASE %s WHEN 'old' THEN now() - interval '8 days' "
                "WHEN 'now' THEN now() END)",
                (event_id, event_id, published))
    assert await client.app[RELAY].prune() >= 1
    with psycopg.connect(migrated_database) as conn:
        left = {r[0] for r in conn.execute(
            "SELECT event_id::text FROM outbox WHERE event_id = ANY(%s::uuid[])", (ids,))}
    assert left == set(ids[1:])
