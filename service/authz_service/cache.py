"""Redis cache for the `check` hot path, invalidated by a per-user generation counter.

A check reads the user's generation first and caches its answer under a key that contains
it. Every change bumps the generation after its transaction commits, so the very next
check misses and reads the database; an answer computed from older data can only land
under the old generation, which nobody reads any more. Redis trouble never fails a check:
the database answers instead.

Each process also keeps the answers in memory under the same (epoch, generation). A check
still reads the user's generation from Redis after its request arrived, so an answer
cached before a revoke's 200 is never served after it; the reads of all checks waiting
in one turn of the event loop go out as one Lua call. The epoch is a random value stored once
per Redis data set: when Redis restarts empty, generations start again from 0, and the
new epoch keeps answers remembered under the old data set's numbers from matching.

A change that can alter an answer (activate, revoke) is fenced: before it writes, one
call bumps the generation and raises the user's `busy` count (with a TTL); after its
transaction, another bumps the generation again and lowers the count. While a user is
busy nobody caches an answer for them, so an answer read from the database before the
commit is never stored where a check after the commit would find it, even if the second
call never arrives (Redis gone mid-change): the count then simply expires. If the first
call fails, the change is refused (503) and nothing is written: a revoke answered 200 has
always fenced the cache, so no "allowed" from before it survives a Redis outage, a hung
Redis or its recovery. Checks never need Redis: they read the database instead.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any
from urllib.parse import quote

import orjson

from authz_service.batch import Batch
from authz_service.config import RedisConfig
from authz_service.errors import DependencyUnavailable
from authz_service.redis_client import RedisClient, RedisError, Script

log = logging.getLogger(__name__)
PREFIX = "authz:v1"
EPOCH_KEY = f"{PREFIX}:epoch"
MEMORY_ENTRIES = 100_000  # answers kept per process (~200 bytes each)
# Seconds a user stays busy if a change never reports its end: far longer than a change's
# transaction may run (the request deadline), so it ends before the fence does.
BUSY_TTL = 30
# After Redis failed, checks go straight to the database for this long instead of each
# waiting for its own timeout (a hung Redis would otherwise add its timeout to every check).
PAUSE_AFTER_FAILURE = 3.0
Stamp = tuple[str | None, str]  # (epoch, generation) an answer is cached under


def create_client(config: RedisConfig) -> RedisClient:
    return RedisClient(config.host, config.port, config.password, config.db, config.timeout)


def _gen_key(user_id: str) -> str:
    return f"{PREFIX}:gen:{quote(user_id, safe='')}"


def _busy_key(user_id: str) -> str:
    return f"{PREFIX}:busy:{quote(user_id, safe='')}"


def _check_key(user_id: str, generation: str, role_type: str, region_code: str) -> str:
    return f"{PREFIX}:check:{quote(user_id, safe='')}:{generation}:{role_type}:{region_code}"


# One round trip per turn of the event loop for every check waiting in it: the epoch, then
# for each (user, role, region) asked the user's generation, the answer cached under it and
# how long Redis keeps that answer (so the copy in memory expires with it); for a busy user
# no generation and no answer. ARGV: the key prefix, then per check the quoted user id and
# ":role:region". The script builds the keys from them (the same keys `_gen_key`,
# `_busy_key` and `_check_key` name): two short arguments a check instead of four keys.
_LOOKUP = Script("""
local out = {redis.call('GET', KEYS[1]) or false}
local prefix = ARGV[1]
for i = 2, #ARGV, 2 do
  local user = ARGV[i]
  if redis.call('EXISTS', prefix .. ':busy:' .. user) == 1 then
    out[#out + 1] = false
    out[#out + 1] = false
    out[#out + 1] = -2
  else
    local gen = redis.call('GET', prefix .. ':gen:' .. user) or '0'
    local key = prefix .. ':check:' .. user .. ':' .. gen .. ARGV[i + 1]
    out[#out + 1] = gen
    out[#out + 1] = redis.call('GET', key) or false
    out[#out + 1] = redis.call('PTTL', key)
  end
end
return out
""")
# A change's fence (KEYS: generation, busy): BEGIN before it writes, END after it.
_BEGIN = Script("""
redis.call('INCR', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
""")
_END = Script("""
redis.call('INCR', KEYS[1])
if redis.call('DECR', KEYS[2]) <= 0 then
  redis.call('DEL', KEYS[2])
end
return 1
""")
# The answers computed in one turn, stored with one call (ARGV[1] is the TTL).
_STORE = Script("""
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[1])
end
return #KEYS
""")

Key = tuple[str, str, str]  # (user, role, region)
# (stamp, cached answer, its TTL in ms); no stamp: the user is busy, cache nothing
Found = tuple[Stamp | None, bytes | None, int]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class CheckCache:
    def __init__(self, client: RedisClient, ttl: int, memory: int = MEMORY_ENTRIES) -> None:
        self.client = client
        self.ttl = ttl
        self.memory = memory
        self._paused_until = 0.0  # monotonic time; see PAUSE_AFTER_FAILURE
        self._lookups: Batch[Key, Found] = Batch(self._lookup)
        self._stores: Batch[tuple[str, bytes], None] = Batch(self._store)
        self._answers: dict[Key, tuple[Stamp, dict[str, Any], float]] = {}  # memory

    async def get(self, user_id: str, role_type: str, region_code: str
                  ) -> tuple[dict[str, Any] | None, Stamp | None]:
        """(cached answer or None, stamp to cache under or None if Redis failed)."""
        key = (user_id, role_type, region_code)
        if time.monotonic() < self._paused_until:
            return None, None
        try:
            stamp, cached, ttl_ms = await self._lookups.add(key)
        except RedisError as exc:
            self._failed(exc)
            return None, None
        if stamp is None:  # a change of this user is in progress: ask the database
            return None, None
        remembered = self._answers.get(key)
        if remembered is not None and remembered[0] == stamp and (
                time.monotonic() < remembered[2]):
            return remembered[1], stamp
        if cached is None:
            return None, stamp
        value: dict[str, Any] = orjson.loads(cached)
        self._remember(key, stamp, value, ttl_ms / 1000)
        return value, stamp

    async def put(self, user_id: str, stamp: Stamp, role_type: str, region_code: str,
                  value: dict[str, Any]) -> None:
        """Store in memory now and in Redis with the next batch (the caller need not wait:
        an answer stored late under an old generation is never read)."""
        self._stores.add((_check_key(user_id, stamp[1], role_type, region_code),
                          orjson.dumps(value)))
        self._remember((user_id, role_type, region_code), stamp, value, self.ttl)

    async def _lookup(self, keys: list[Key]) -> list[Found]:
        args = [PREFIX]
        for user, role, region in keys:
            args += [quote(user, safe=""), f":{role}:{region}"]
        values = await self.client.run(_LOOKUP, [EPOCH_KEY], args)
        epoch = None if values[0] is None else _text(values[0])
        if epoch is None:  # a new data set: answers go to memory once it has an epoch
            await self._new_epoch()
        return [(None if values[i] is None else (epoch, _text(values[i])), values[i + 1],
                 int(values[i + 2])) for i in range(1, len(values), 3)]

    async def _store(self, items: list[tuple[str, bytes]]) -> list[None]:
        try:
            await self.client.run(_STORE, [k for k, _ in items],
                                  [self.ttl, *(v for _, v in items)])
        except RedisError as exc:
            self._failed(exc)
        return [None] * len(items)

    async def _new_epoch(self) -> None:
        try:
            await self.client.execute("SET", EPOCH_KEY, secrets.token_hex(8), "NX")
        except RedisError as exc:
            log.warning("redis unavailable for check cache: %s", exc,
                        extra={"dependency": "redis"})

    def _remember(self, key: Key, stamp: Stamp, value: dict[str, Any], ttl: float) -> None:
        if stamp[0] is None or ttl <= 0:  # no epoch yet (a new data set): Redis only
            return
        if len(self._answers) >= self.memory:
            del self._answers[next(iter(self._answers))]  # the oldest goes first
        self._answers[key] = (stamp, value, time.monotonic() + ttl)

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if now >= self._paused_until:  # once per pause, not once per waiting check
            log.warning("redis unavailable for check cache: %s", exc,
                        extra={"dependency": "redis"})
        self._paused_until = now + PAUSE_AFTER_FAILURE

    async def begin_change(self, user_id: str) -> None:
        """Fence the user's cached answers before a change writes; `DependencyUnavailable`
        (and the change must not happen) when Redis cannot be told. Tried even while
        checks skip Redis (PAUSE_AFTER_FAILURE): changes are rare, and the first one after
        Redis is back should not be refused."""
        try:
            await self.client.run(_BEGIN, [_gen_key(user_id), _busy_key(user_id)], [BUSY_TTL])
        except RedisError as exc:
            self._failed(exc)
            raise DependencyUnavailable(
                "redis", "changes to grants wait for the check cache") from None

    async def end_change(self, user_id: str) -> None:
        """After the change's transaction (committed or not): drop the fence. If Redis
        cannot be told, the fence expires after BUSY_TTL; answers stay right meanwhile."""
        try:
            await self.client.run(_END, [_gen_key(user_id), _busy_key(user_id)], [])
        except RedisError as exc:
            self._failed(exc)
            log.warning("check cache fence of a user stays up to %ss", BUSY_TTL,
                        extra={"dependency": "redis", "userId": user_id})
