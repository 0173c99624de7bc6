"""Fixtures for the service's integration tests: migrated databases, configs pointing at
the real local servers, a running app, tokens, and the referral/statistics stand-ins."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from authz_service.app import create_app
from authz_service.config import Config, load_config
from authz_service.migrate import Migrator, discover, migrations_dir
from devenv import stubs
from devenv.procs import free_port
from tests.support.private import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.servers

SECRET = "integration-secret-0123456789abcdef0123"
PREVIOUS_SECRET = "previous-secret-0123456789abcdef01234"


class Env(Protocol):
    database_url: str
    redis_url: str
    kafka_brokers: str

    @property
    def redis_host(self) -> str: ...

    @property
    def redis_port(self) -> int: ...


def make_token(sub: str, roles: tuple[str, ...] = (), secret: str = SECRET,
               **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "roles": list(roles),
                               # long-lived: module-level tokens (ADMIN) outlive a slow suite
                               "exp": int(time.time()) + 6 * 3600, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(sub: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(sub, roles)}"}


ADMIN = bearer("admin-1", "admin")


def new_database(admin_url: str) -> str:
    name = f"svc_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


def drop_database(admin_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate_up(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        migrator = Migrator(conn, discover(migrations_dir({})))
        migrator.lock()
        migrator.up()
        migrator.unlock()


@pytest.fixture
def empty_database(devenv: Env) -> Iterator[str]:
    """A new empty database for one test (migration tests change schema freely)."""
    url = new_database(devenv.database_url)
    yield url
    drop_database(devenv.database_url, url)


@pytest.fixture(scope="module")
def migrated_database(fresh_database: str) -> str:
    migrate_up(fresh_database)
    return fresh_database


def service_env(devenv: Env, database_url: str) -> dict[str, str]:
    return {
        "NODE_ENV": "test",
        "PORT": "3002",
        "DATABASE_URL": database_url + "?connection_limit=20&pool_timeout=5",
        "REDIS_HOST": devenv.redis_host,
        "REDIS_PORT": str(devenv.redis_port),
        "KAFKA_BROKERS": devenv.kafka_brokers,
        "KAFKA_CONSUMER_GROUP": f"authz-test-{secrets.token_hex(4)}",
        "JWT_SECRET": SECRET,
        "JWT_SECRET_PREVIOUS": PREVIOUS_SECRET,
        "JWT_EXPIRES_IN": "5m",
        "LOG_LEVEL": "debug",
    }


@pytest.fixture
def config(devenv: Env, migrated_database: str) -> Config:
    """A config on the real servers; relay and consumer off unless a test turns them on."""
    return replace(load_config(service_env(devenv, migrated_database)),
                   relay_enabled=False, consumer_enabled=False)


ClientFactory = Callable[[Config], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def start() -> AsyncIterator[ClientFactory]:
    """Start the real app (cleanup contexts and all) on a loopback port."""
    clients: list[TestClient[Any, Any]] = []

    async def factory(cfg: Config) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(cfg)))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def client(start: ClientFactory, config: Config) -> TestClient[Any, Any]:
    return await start(config)


@pytest.fixture
async def stub_server() -> AsyncIterator[tuple[str, stubs.StubState]]:
    """The referral + statistics stand-in on a loopback port: (base URL, its state)."""
    state = stubs.StubState()
    server = TestServer(stubs.create_app(state))
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), state
    state.released.set()
    await server.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0,
                     what: str = "condition") -> None:
    """Poll `check` until true; fail after `within` seconds (no fixed sleeps)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def fault_env(database: PrivatePostgres, redis: PrivateRedis, kafka: str | None = None
              ) -> dict[str, str]:
    """The variables a deployment sets (the defaults otherwise: no pool_timeout in the URL)
    for private servers; without `kafka`, a closed port (for tests that never publish)."""
    return {"DATABASE_URL": database.url, "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(redis.port), "KAFKA_BROKERS": kafka or f"127.0.0.1:{free_port()}",
            "KAFKA_CONSUMER_GROUP": f"authz-test-{secrets.token_hex(4)}",
            "JWT_SECRET": SECRET, "LOG_LEVEL": "debug", "NODE_ENV": "test"}


def fault_config(database: PrivatePostgres, redis: PrivateRedis) -> Config:
    """`fault_env` as a config with the relay and consumer off: Kafka is never contacted."""
    return replace(load_config(fault_env(database, redis)), relay_enabled=False,
                   consumer_enabled=False)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started PostgreSQL cluster of this test's own, which it may kill or freeze."""
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A started redis-server of this test's own, which it may kill or freeze."""
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.close()
