"""PostgreSQL hung (every process SIGSTOPped: connections open, nothing answers) and
PostgreSQL stopped: every request answers in bounded time, a 503 with `Retry-After` and the
one JSON error shape, never a 500; readiness says 503 and liveness stays 200; once the
server is back, requests succeed again without restarting the service."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.private import PrivatePostgres, PrivateRedis

from .conftest import ADMIN, ClientFactory, eventually, fault_config, migrate_up

pytestmark = pytest.mark.servers
API = "/api/v1/authorizations"
Client = TestClient[Any, Any]


@pytest.fixture
def database(private_postgres: PrivatePostgres) -> Iterator[PrivatePostgres]:
    migrate_up(private_postgres.url)
    yield private_postgres
    private_postgres.thaw()  # a failed test must not leave the cluster stopped


def create_body(region: str = "440106") -> dict[str, str]:
    return {"userId": f"u-{secrets.token_hex(4)}", "roleType": "COMMUNITY",
            "regionCode": region}


async def timed(client: Client, method: str, path: str, **kwargs: Any
                ) -> tuple[int, dict[str, str], Any, float]:
    """(status, headers, JSON body, seconds taken)."""
    started = time.monotonic()
    resp = await client.request(method, path, **kwargs)
    body = await resp.json()
    return resp.status, dict(resp.headers), body, time.monotonic() - started


def assert_clean_503(answer: tuple[int, dict[str, str], Any, float], limit: float) -> None:
    status, headers, body, took = answer
    assert status == 503, (status, body)
    assert headers.get("Retry-After", "").isdigit(), headers
    assert body["error"]["code"] == "dependency_unavailable", body
    assert body["error"]["message"], body
    assert took < limit, f"answered after {took:.2f} s (limit {limit} s)"


async def outage_requests(client: Client, existing: str) -> list[Any]:
    """What users do during the outage, all at once (more than the pool holds)."""
    calls = [("POST", API, {"json": create_body()}) for _ in range(12)]
    calls += [("GET", f"{API}/check", {"params": {"userId": f"nobody-{i}",
                                                   "roleType": "COMMUNITY",
                                                   "regionCode": "440106"}})
              for i in range(6)]
    calls += [("GET", f"{API}/{existing}", {}), ("POST", f"{API}/{existing}/activate", {}),
              ("GET", API, {"params": {"limit": "5"}})]
    return list(await asyncio.gather(*(timed(client, m, p, headers=ADMIN, **kw)
                                       for m, p, kw in calls)))


async def recovered(client: Client) -> bool:
    resp = await client.post(API, json=create_body(), headers=ADMIN)
    assert resp.status in (201, 503), resp.status  # never a 500 on the way back
    return resp.status == 201


async def create_one(client: Client) -> str:
    """One authorization made while the database answers, for the outage to reach."""
    resp = await client.post(API, json=create_body(), headers=ADMIN)
    assert resp.status == 201
    return str((await resp.json())["id"])


async def test_a_hung_database_answers_503_in_bounded_time_and_recovers(
    database: PrivatePostgres, private_redis: PrivateRedis, start: ClientFactory
) -> None:
    config = fault_config(database, private_redis)
    client = await start(config)
    existing = await create_one(client)

    frozen = await asyncio.to_thread(database.freeze)
    assert len(frozen) > 1  # the postmaster and its children
    limit = config.request_timeout + 1.0
    answers = await outage_requests(client, existing)
    for answer in answers:
        assert_clean_503(answer, limit)
    ready = await timed(client, "GET", "/health/ready")
    assert_clean_ready_503(ready)
    live = await client.get("/health/live")
    assert live.status == 200  # liveness never depends on the database

    await asyncio.to_thread(database.thaw)
    await eventually(lambda: recovered(client), within=15, what="creates after the thaw")
    assert (await client.get("/health/ready")).status == 200
    resp = await client.post(f"{API}/{existing}/activate", headers=ADMIN)
    assert resp.status == 200  # the row the hung requests could not touch is intact


def assert_clean_ready_503(answer: tuple[int, dict[str, str], Any, float]) -> None:
    status, headers, body, took = answer
    assert status == 503, body
    assert headers.get("Retry-After", "").isdigit()
    assert body["status"] == "error", body
    assert "database" in body["error"], body
    assert took < 2.0, f"readiness took {took:.2f} s"


async def test_a_stopped_database_answers_503_and_a_restart_is_found_without_a_restart(
    database: PrivatePostgres, private_redis: PrivateRedis, start: ClientFactory
) -> None:
    config = fault_config(database, private_redis)
    client = await start(config)
    existing = await create_one(client)

    await asyncio.to_thread(database.stop)
    answers = await outage_requests(client, existing)
    for answer in answers:
        assert_clean_503(answer, config.request_timeout + 1.0)
    assert_clean_ready_503(await timed(client, "GET", "/health/ready"))
    assert (await client.get("/health/live")).status == 200

    await asyncio.to_thread(database.start)
    await eventually(lambda: recovered(client), within=15, what="creates after the restart")
    statuses = [(await client.get(f"{API}/{existing}", headers=ADMIN)).status
                for _ in range(config.database.pool_max + 2)]
    # Pooled connections that died with the server fail once each, as 503s, then go.
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[-1] == 200, statuses
    assert (await client.get("/health/ready")).status == 200
