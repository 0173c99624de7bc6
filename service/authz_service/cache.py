"""Redis cache for the `check` hot path, invalidated by a per-user generation counter.

A check reads the user's generation first and caches its answer under a key that contains
it. Every change bumps the generation after its transaction commits, so the very next
check misses and reads the database; an answer computed from older data can only land
under the old generation, which nobody reads any more. Redis trouble never fails a check:
the database answers instead.

Each process also keeps the answers in memory under the same (epoch, generation). A check
still reads the user's generation from Redis after its request arrived, so an answer
cached before a revoke's 200 is never served after it; the reads of all checks waiting
in one turn of the event loop go out as one MGET. The epoch is a random value stored once
per Redis data set: when Redis restarts empty, generations start again from 0, and the
new epoch keeps answers remembered under the old data set's numbers from matching.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any
from urllib.parse import quote

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from authz_service.config import RedisConfig

log = logging.getLogger(__name__)
PREFIX = "authz:v1"
EPOCH_KEY = f"{PREFIX}:epoch"
MEMORY_ENTRIES = 100_000  # answers kept per process (~200 bytes each)
Stamp = tuple[str | None, str]  # (epoch, generation) an answer is cached under


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


class Generations:
    """Reads users' generations, batching every read asked for in one turn of the loop
    into a single MGET (with the epoch key first)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._waiting: dict[str, list[asyncio.Future[Stamp]]] = {}

    def read(self, user_id: str) -> asyncio.Future[Stamp]:
        """(epoch or None when Redis has none yet, generation) of the user."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Stamp] = loop.create_future()
        if not self._waiting:
            loop.call_soon(lambda: asyncio.ensure_future(self._flush()))
        self._waiting.setdefault(user_id, []).append(future)
        return future

    async def _flush(self) -> None:
        waiting, self._waiting = self._waiting, {}
        users = list(waiting)
        try:
            values = await self.client.mget([EPOCH_KEY, *map(_gen_key, users)])
        except Exception as exc:  # every waiter learns it, none hangs
            for futures in waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        epoch = None if values[0] is None else _text(values[0])
        if epoch is None:
            await self._new_epoch()
        for user, value in zip(users, values[1:], strict=True):
            answer = (epoch, "0" if value is None else _text(value))
            for future in waiting[user]:
                if not future.done():
                    future.set_result(answer)

    async def _new_epoch(self) -> None:
        try:
            await self.client.set(EPOCH_KEY, secrets.token_hex(8), nx=True)
        except RedisError as exc:
            log.warning("redis unavailable for check cache: %s", exc,
                        extra={"dependency": "redis"})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# An answer and how long Redis keeps it, so the copy in memory expires with it.
_GET_ANSWER = """
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
"""
class CheckCache:
    def __init__(self, client: aioredis.Redis, ttl: int, memory: int = MEMORY_ENTRIES) -> None:
        self.client = client
        self.ttl = ttl
        self.memory = memory
        self.generations = Generations(client)
        self._get_answer = client.register_script(_GET_ANSWER)
        # (user, role, region) -> (stamp, answer, expires at)
        self._answers: dict[tuple[str, str, str], tuple[Stamp, dict[str, Any], float]] = {}

    async def get(self, user_id: str, role_type: str, region_code: str
                  ) -> tuple[dict[str, Any] | None, Stamp | None]:
        """(cached answer or None, stamp to cache under or None if Redis failed)."""
        try:
            stamp = await self.generations.read(user_id)
            key = (user_id, role_type, region_code)
            remembered = self._answers.get(key)
            if (remembered is not None and remembered[0] == stamp
                    and time.monotonic() < remembered[2]):
                return remembered[1], stamp
            cached, ttl_ms = await self._get_answer(
                keys=[_check_key(user_id, stamp[1], role_type, region_code)])
        except RedisError as exc:
            log.warning("redis unavailable for check cache: %s", exc,
                        extra={"dependency": "redis"})
            return None, None
        if cached is None:
            return None, stamp
        value: dict[str, Any] = orjson.loads(cached)
        self._remember(key, stamp, value, ttl_ms / 1000)
        return value, stamp

    async def put(self, user_id: str, stamp: Stamp, role_type: str, region_code: str,
                  value: dict[str, Any]) -> None:
        try:
            await self.client.set(_check_key(user_id, stamp[1], role_type, region_code),
                                  orjson.dumps(value), ex=self.ttl)
        except RedisError as exc:
            log.warning("redis unavailable for check cache: %s", exc,
                        extra={"dependency": "redis"})
            return
        self._remember((user_id, role_type, region_code), stamp, value, self.ttl)

    def _remember(self, key: tuple[str, str, str], stamp: Stamp, value: dict[str, Any],
                  ttl: float) -> None:
        if stamp[0] is None or ttl <= 0:  # no epoch yet (a new data set): Redis only
            return
        if len(self._answers) >= self.memory:
            del self._answers[next(iter(self._answers))]  # the oldest goes first
        self._answers[key] = (stamp, value, time.monotonic() + ttl)

    async def invalidate(self, user_id: str) -> None:
        try:
            await self.client.incr(_gen_key(user_id))
        except RedisError as exc:
            # Cached answers expire after the TTL; say loudly that they may be stale.
            log.error("could not invalidate check cache for user (stale up to %ss): %s",
                      self.ttl, exc, extra={"dependency": "redis", "userId": user_id})
