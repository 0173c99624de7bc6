"""Redis hung (SIGSTOP) or stopped: checks fall back to the database and stay right, and a
revoke answered 200 is never followed by "allowed", across the outage and the recovery.
Changes that move an answer (activate, revoke) need the check cache's fence: without
Redis they answer 503 and change nothing."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from tests.support.private import PrivatePostgres, PrivateRedis

from .conftest import ADMIN, ClientFactory, eventually, fault_config, migrate_up

pytestmark = pytest.mark.servers
API = "/api/v1/authorizations"
Client = TestClient[Any, Any]
REGION = "440106"


@pytest.fixture
def database(private_postgres: PrivatePostgres) -> PrivatePostgres:
    migrate_up(private_postgres.url)
    return private_postgres


@pytest.fixture
def cache_server(private_redis: PrivateRedis) -> Iterator[PrivateRedis]:
    yield private_redis
    private_redis.thaw()


@pytest.fixture
async def raw_redis(cache_server: PrivateRedis) -> AsyncIterator[aioredis.Redis]:
    """The test's own view of the private Redis (to see the fence)."""
    client = aioredis.Redis(port=cache_server.port, socket_timeout=2)
    yield client
    await client.aclose()


async def grant(client: Client, user: str, activate: bool = True) -> str:
    resp = await client.post(API, json={"userId": user, "roleType": "COMMUNITY",
                                        "regionCode": REGION}, headers=ADMIN)
    assert resp.status == 201
    ident: str = (await resp.json())["id"]
    if activate:
        assert (await client.post(f"{API}/{ident}/activate", headers=ADMIN)).status == 200
    return ident


async def allowed(client: Client, user: str, limit: float = 2.5) -> bool:
    """The check's answer; it must come in bounded time and never be an error."""
    started = time.monotonic()
    resp = await client.get(f"{API}/check", headers=ADMIN, params={
        "userId": user, "roleType": "COMMUNITY", "regionCode": REGION})
    assert resp.status == 200, await resp.text()
    took = time.monotonic() - started
    assert took < limit, f"check took {took:.2f} s"
    answer: bool = (await resp.json())["allowed"]
    return answer


async def refused_without_redis(client: Client, path: str, json: Any = None) -> None:
    resp = await client.post(path, json=json, headers=ADMIN)
    body = await resp.json()
    assert resp.status == 503, body
    assert resp.headers["Retry-After"].isdigit()
    assert body["error"]["code"] == "dependency_unavailable"
    assert "redis" in body["error"]["message"]


async def status_of(client: Client, ident: str) -> str:
    resp = await client.get(f"{API}/{ident}", headers=ADMIN)
    assert resp.status == 200
    status: str = (await resp.json())["status"]
    return status


async def test_checks_use_the_database_while_redis_is_hung_or_stopped(
    database: PrivatePostgres, cache_server: PrivateRedis, start: ClientFactory
) -> None:
    client = await start(fault_config(database, cache_server))
    user, other = f"u-{secrets.token_hex(4)}", f"v-{secrets.token_hex(4)}"
    first = await grant(client, user)
    assert await allowed(client, user)  # now cached, in Redis and in memory
    assert not await allowed(client, other)

    await asyncio.to_thread(cache_server.freeze)
    assert await allowed(client, user)
    assert not await allowed(client, other)
    await refused_without_redis(client, f"{API}/{first}/revoke", {"reason": "hung"})
    assert await status_of(client, first) == "ACTIVE"  # refused means unchanged
    pending = await grant(client, other, activate=False)  # a create needs no cache
    await refused_without_redis(client, f"{API}/{pending}/activate")
    assert (await client.get("/health/ready")).status == 200  # readiness: the database

    await asyncio.to_thread(cache_server.thaw)
    resp = await client.post(f"{API}/{first}/revoke", json={"reason": "thawed"},
                             headers=ADMIN)
    assert resp.status == 200
    assert [await allowed(client, user) for _ in range(5)] == [False] * 5

    await asyncio.to_thread(cache_server.stop)
    assert not await allowed(client, user)
    await refused_without_redis(client, f"{API}/{pending}/activate")
    await asyncio.to_thread(cache_server.start)  # back empty, on the same port

    async def activated() -> bool:
        resp = await client.post(f"{API}/{pending}/activate", headers=ADMIN)
        assert resp.status in (200, 503), resp.status
        return resp.status == 200

    await eventually(activated, within=10, what="an activate once Redis is back")
    assert await allowed(client, other)
    assert not await allowed(client, user)


async def test_a_revoke_whose_fence_is_never_lifted_is_not_followed_by_allowed(
    database: PrivatePostgres, cache_server: PrivateRedis, raw_redis: aioredis.Redis,
    start: ClientFactory
) -> None:
    """Redis fails in the middle of a revoke, after the fence went up and before it could
    be taken down, and comes back from a snapshot taken in between (a hung Redis instead
    runs the late command once it resumes, which would hide a missing fence). A check in
    between read the database (the revoke had not committed: still allowed); that answer
    must not be found by any check after the revoke's 200."""
    client = await start(fault_config(database, cache_server))
    user, sentinel = f"u-{secrets.token_hex(4)}", f"s-{secrets.token_hex(4)}"
    ident = await grant(client, user)
    await grant(client, sentinel)
    assert await allowed(client, user)  # cached under the user's generation
    assert await allowed(client, sentinel)
    busy_key = f"authz:v1:busy:{user}"

    # Hold the revoke inside its transaction: its outbox insert waits for this lock.
    async with await psycopg.AsyncConnection.connect(database.url) as blocker:
        await blocker.execute("LOCK TABLE outbox IN SHARE MODE")
        revoke = asyncio.ensure_future(client.post(
            f"{API}/{ident}/revoke", json={"reason": "mid-outage"}, headers=ADMIN))

        async def fenced() -> bool:
            return bool(await raw_redis.exists(busy_key))

        await eventually(fenced, within=2, what="the revoke to raise its fence")
        assert await allowed(client, user)  # not committed yet: still allowed
        await raw_redis.save()  # the data set as it is mid-change, for the restart
        await asyncio.to_thread(cache_server.stop)
    # The lock went with the blocker's transaction: the revoke commits, then cannot
    # reach Redis to take the fence down.
    resp = await revoke
    assert resp.status == 200, await resp.text()
    assert not await allowed(client, user)  # Redis down: from the database

    await asyncio.to_thread(cache_server.start)  # loads the snapshot from its folder
    await raw_redis.connection_pool.disconnect()
    assert await raw_redis.exists(busy_key)  # the fence came back with the data set

    async def cache_answers_again() -> bool:  # the service uses Redis again
        before = await cache_hits(client)
        assert await allowed(client, sentinel)
        return await cache_hits(client) > before

    await eventually(cache_answers_again, within=10, what="checks served from Redis again")
    assert [await allowed(client, user) for _ in range(5)] == [False] * 5


async def cache_hits(client: Client) -> float:
    """authz_checks_total{allowed="true",source="cache"} from the service's /metrics."""
    text = await (await client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith("authz_checks_total{") and 'allowed="true"' in line and (
                'source="cache"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
