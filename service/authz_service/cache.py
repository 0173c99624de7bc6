"""Redis cache for the `check` hot path, invalidated by a per-user generation counter.

A check reads the user's generation first and caches its answer under a key that contains
it. Every change bumps the generation after its transaction commits, so the very next
check misses and reads the database; an answer computed from older data can only land
under the old generation, which nobody reads any more. Redis trouble never fails a check:
the database answers instead.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from authz_service.config import RedisConfig

log = logging.getLogger(__name__)
PREFIX = "authz:v1"


def create_client(config: RedisConfig) -> aioredis.Redis:
    return aioredis.Redis(
        host=config.host, port=config.port, password=config.password, db=config.db,
        socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=15,
        # A cache must fail fast: one retry (a dropped pooled connection), no backoff.
        retry=Retry(NoBackoff(), 1),
    )


def _gen_key(user_id: str) -> str:
    return f"{PREFIX}:gen:{quote(user_id, safe='')}"


def _check_key(user_id: str, generation: str, role_type: str, region_code: str) -> str:
    return f"{PREFIX}:check:{quote(user_id, safe='')}:{generation}:{role_type}:{region_code}"


# One round trip for the hot path: read the user's generation, then the answer cached
# under it (two GETs in a row would double the Redis latency of every check).
_GET_CHECK = """
local gen = redis.call('GET', KEYS[1]) or '0'
return {gen, redis.call('GET', ARGV[1] .. gen .. ARGV[2])}
"""


class CheckCache:
    def __init__(self, client: aioredis.Redis, ttl: int) -> None:
        self.client = client
        self.ttl = ttl
        self._get_check = client.register_script(_GET_CHECK)

    async def get(self, user_id: str, role_type: str, region_code: str
                  ) -> tuple[dict[str, Any] | None, str | None]:
        """(cached answer or None, generation to cache under or None if Redis failed)."""
        head, _, tail = _check_key(user_id, "\0", role_type, region_code).partition("\0")
        try:
            raw_gen, cached = await self._get_check(keys=[_gen_key(user_id)],
                                                    args=[head, tail])
            generation = raw_gen.decode() if isinstance(raw_gen, bytes) else str(raw_gen)
        except RedisError as exc:
            log.warning("redis unavailable for check cache: %s", exc,
                        extra={"dependency": "redis"})
            return None, None
        if cached is None:
            return None, generation
        value: dict[str, Any] = json.loads(cached)
        return value, generation

    async def put(self, user_id: str, generation: str, role_type: str, region_code: str,
                  value: dict[str, Any]) -> None:
        try:
            await self.client.set(_check_key(user_id, generation, role_type, region_code),
                                  json.dumps(value), ex=self.ttl)
        except RedisError as exc:
            log.warning("redis unavailable for check cache: %s", exc,
                        extra={"dependency": "redis"})

    async def invalidate(self, user_id: str) -> None:
        try:
            await self.client.incr(_gen_key(user_id))
        except RedisError as exc:
            # Cached answers expire after the TTL; say loudly that they may be stale.
            log.error("could not invalidate check cache for user (stale up to %ss): %s",
                      self.ttl, exc, extra={"dependency": "redis", "userId": user_id})
