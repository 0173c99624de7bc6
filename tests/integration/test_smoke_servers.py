"""Smoke tests that would fail against a fake: real PostgreSQL 15, Redis 7 and Kafka."""

from __future__ import annotations

import secrets

import psycopg
import redis
from confluent_kafka import Consumer, Producer

from tests.conftest import DevEnv


def test_postgres_is_real_15_and_round_trips(fresh_database: str) -> None:
    with psycopg.connect(fresh_database) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        assert version is not None
        assert 150000 <= int(version[0]) < 160000
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t VALUES (1, 'hello')")
        assert conn.execute("SELECT v FROM t WHERE id = 1").fetchone() == ("hello",)
        # A real server enforces constraints.
        try:
            conn.execute("INSERT INTO t VALUES (1, 'again')")
        except psycopg.errors.UniqueViolation:
            conn.rollback()
        else:
            raise AssertionError("duplicate key accepted")


def test_redis_is_real_7_and_round_trips(devenv: DevEnv) -> None:
    r = redis.Redis.from_url(devenv.redis_url)
    try:
        assert str(r.info("server")["redis_version"]).startswith("7.")
        key = f"smoke:{secrets.token_hex(4)}"
        r.set(key, "v", px=5000)
        assert r.get(key) == b"v"
        assert 0 < int(r.pttl(key)) <= 5000
        r.delete(key)
    finally:
        r.close()


def test_kafka_produce_then_consume(devenv: DevEnv, kafka_topic: str) -> None:
    payload = secrets.token_bytes(16)
    producer = Producer({"bootstrap.servers": devenv.kafka_brokers, "enable.idempotence": True})
    producer.produce(kafka_topic, key=b"k", value=payload)
    assert producer.flush(15) == 0
    consumer = Consumer({"bootstrap.servers": devenv.kafka_brokers,
                         "group.id": f"smoke-{secrets.token_hex(4)}",
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([kafka_topic])
        got = None
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got = msg
                break
        assert got is not None, "message never consumed"
        assert got.value() == payload
        assert got.key() == b"k"
    finally:
        consumer.close()
