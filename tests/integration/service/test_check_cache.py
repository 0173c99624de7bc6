"""The per-process memory of check answers across workers: every worker reads the user's
generation in Redis per check, so a revoke through one worker is never answered "allowed"
by another after its 200, even when Redis lost its data in between."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from authz_service.cache import EPOCH_KEY, _check_key, _gen_key
from authz_service.config import Config

from .conftest import ADMIN, ClientFactory
from .test_api import API, check, create, uid

pytestmark = pytest.mark.servers
Client = TestClient[Any, Any]


async def remembered_allow(start: ClientFactory, config: Config
                           ) -> tuple[Client, Client, str, str]:
    """Two workers; an ACTIVE grant (generation 2: the activate's fence bumped it before
    and after) whose allow the first one remembers.
    Returns (first, second, user, authorization id)."""
    first, second = await start(config), await start(config)
    user = uid()
    created = await create(first, user, "COMMUNITY", "440106")
    await first.post(f"{API}/{created['id']}/activate", headers=ADMIN)
    for _ in range(3):  # database, then Redis, then memory
        assert (await check(first, user, "COMMUNITY", "440106"))["allowed"] is True
    return first, second, user, created["id"]


async def revoke(client: Client, ident: str) -> None:
    resp = await client.post(f"{API}/{ident}/revoke", json={"reason": "r"}, headers=ADMIN)
    assert resp.status == 200


async def test_a_revoke_through_one_worker_shows_on_the_next_check_of_another(
    start: ClientFactory, config: Config
) -> None:
    first, second, user, ident = await remembered_allow(start, config)
    await revoke(second, ident)
    assert (await check(first, user, "COMMUNITY", "440106"))["allowed"] is False


async def test_an_emptied_redis_cannot_make_a_remembered_allow_match_again(
    start: ClientFactory, config: Config
) -> None:
    first, second, user, ident = await remembered_allow(start, config)
    redis = aioredis.Redis(host=config.redis.host, port=config.redis.port)
    try:  # Redis restarts empty: generations count from 0 again
        await redis.delete(EPOCH_KEY, _gen_key(user),
                           _check_key(user, "2", "COMMUNITY", "440106"))
        await revoke(second, ident)
        assert await redis.get(_gen_key(user)) == b"2"  # the same number as before
    finally:
        await redis.aclose()
    assert (await check(first, user, "COMMUNITY", "440106"))["allowed"] is False
