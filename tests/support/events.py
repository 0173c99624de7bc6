"""Counting what reached Kafka against what the outbox holds (fault tests, benchmarks)."""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Consumer, TopicPartition


def outbox_events(url: str, aggregate_ids: Iterable[str]) -> dict[str, str]:
    """eventId -> aggregate id of every outbox row of these authorizations."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT event_id::text, aggregate_id::text FROM outbox "
            "WHERE aggregate_id = ANY(%s::uuid[])", (list(aggregate_ids),)).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def pending(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()
    return int(row[0]) if row else -1


def read_all(brokers: str, topic: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Blocking: every message of the topic's partition 0, from the start to its end."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": secrets.token_hex(6),
                         "enable.auto.commit": False, "log_level": 0})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout)
        consumer.assign([TopicPartition(topic, 0, 0)])
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(found) < high and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if not msg.error():
                    found.append(json.loads(msg.value()))
        if len(found) < high:  # a slow reader must not pass for lost events
            raise TimeoutError(f"read {len(found)} of {high} messages of {topic}")
        return found
    finally:
        consumer.close()


@dataclass(frozen=True)
class Tally:
    created: int  # outbox events written (one per committed change)
    published: int  # messages on the topic for these events
    distinct: int  # distinct eventIds among them
    duplicates: int  # messages beyond the first of their eventId
    lost: tuple[str, ...]  # eventIds written but never published
    foreign: int  # messages of ours whose eventId the outbox does not know
    mismatched: tuple[str, ...]  # eventIds published with differing payloads


def tally(written: dict[str, str], messages: Sequence[dict[str, Any]]) -> Tally:
    """Compare the outbox (eventId -> aggregate id) with the topic's messages; messages of
    other aggregates (other tests' writers) are not counted."""
    aggregates = set(written.values())
    ours = [m for m in messages if m.get("authorization", {}).get("id") in aggregates]
    counts = Counter(str(m["eventId"]) for m in ours)
    payloads: dict[str, set[str]] = {}
    for m in ours:
        payloads.setdefault(str(m["eventId"]), set()).add(json.dumps(m, sort_keys=True))
    return Tally(
        created=len(written), published=len(ours), distinct=len(counts),
        duplicates=sum(n - 1 for n in counts.values()),
        lost=tuple(sorted(set(written) - set(counts))),
        foreign=sum(n for e, n in counts.items() if e not in written),
        mismatched=tuple(sorted(e for e, p in payloads.items() if len(p) > 1)),
    )
