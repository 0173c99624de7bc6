"""The service's Redis client against a real redis-server of the test's own: commands sent
together share one connection and get their own replies, scripts survive Redis forgetting
them, a hung Redis fails fast, a restarted one is reconnected, a password and a database
number are honoured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from authz_service.redis_client import RedisClient, RedisError, ReplyError, Script
from tests.support.private import PrivateRedis

pytestmark = pytest.mark.servers
PATIENT = 10.0  # seconds: no test but the hung one waits for a reply this long
HASTY = 0.3  # the hung Redis's test
SUM = Script("return tonumber(ARGV[1]) + tonumber(redis.call('GET', KEYS[1]) or '0')")


@pytest.fixture
async def client(private_redis: PrivateRedis) -> AsyncIterator[RedisClient]:
    redis = RedisClient("127.0.0.1", private_redis.port, timeout=PATIENT)
    yield redis
    await redis.aclose()
    private_redis.thaw()


async def test_commands_sent_together_share_a_connection_and_get_their_own_replies(
    client: RedisClient,
) -> None:
    connection = await client.execute("CLIENT", "ID")
    replies = await asyncio.gather(*(client.execute("ECHO", f"m{i}") for i in range(300)))
    assert replies == [f"m{i}".encode() for i in range(300)]
    assert await client.execute("CLIENT", "ID") == connection


async def test_a_caller_that_gives_up_does_not_shift_the_replies_of_the_next(
    client: RedisClient,
) -> None:
    await client.ping()  # connected, so the task below writes BLPOP in its first step
    blocked = asyncio.create_task(client.execute("BLPOP", "nothing-here", 0.2))
    await asyncio.sleep(0)  # that step: BLPOP is sent; Redis holds the next replies meanwhile
    blocked.cancel()
    assert await client.execute("ECHO", "after") == b"after"  # not BLPOP's nil


async def test_a_script_is_run_by_its_digest_and_resent_when_redis_forgot_it(
    client: RedisClient,
) -> None:
    await client.execute("SET", "base", 40)
    assert await client.run(SUM, ["base"], [2]) == 42
    await client.execute("SCRIPT", "FLUSH")
    assert await client.run(SUM, ["base"], [3]) == 43
    assert await client.execute("SCRIPT", "EXISTS", SUM.sha) == [1]


async def test_an_error_reply_names_redis_message_and_leaves_the_connection_usable(
    client: RedisClient,
) -> None:
    connection = await client.execute("CLIENT", "ID")
    with pytest.raises(ReplyError, match="boom"):
        await client.run(Script("return redis.error_reply('boom')"), [], [])
    await client.execute("SET", "text", "x")
    with pytest.raises(ReplyError, match="WRONGTYPE"):
        await client.execute("LPUSH", "text", "y")
    assert await client.ping()
    assert await client.execute("CLIENT", "ID") == connection


async def test_a_hung_redis_fails_every_waiting_command_fast_then_is_reconnected(
    private_redis: PrivateRedis,
) -> None:
    client = RedisClient("127.0.0.1", private_redis.port, timeout=HASTY)
    try:
        assert await client.ping()
        await asyncio.to_thread(private_redis.freeze)
        started = time.monotonic()
        failed = await asyncio.gather(*(client.execute("ECHO", i) for i in range(5)),
                                      return_exceptions=True)
        waited = time.monotonic() - started
        assert all(isinstance(e, RedisError) and "did not answer within 0.3 s" in str(e)
                   for e in failed), failed
        assert waited < PATIENT, f"failed after {waited:.2f} s"  # bounded, not a speed
        await asyncio.to_thread(private_redis.thaw)
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_stopped_redis_is_an_error_and_a_restarted_one_is_used_again(
    client: RedisClient, private_redis: PrivateRedis,
) -> None:
    assert await client.ping()
    await asyncio.to_thread(private_redis.stop)
    with pytest.raises(RedisError, match="cannot connect"):
        await client.ping()
    await asyncio.to_thread(private_redis.start)  # same port
    assert await client.ping()
    # Killed under the client: the next command succeeds, on a new connection.
    connection = await client.execute("CLIENT", "ID")
    other = RedisClient("127.0.0.1", private_redis.port, timeout=PATIENT)
    try:
        assert await other.execute("CLIENT", "KILL", "ID", connection) == 1
    finally:
        await other.aclose()
    assert await client.execute("CLIENT", "ID") != connection


async def test_a_password_and_a_database_number_are_used_on_every_connection(
    client: RedisClient, private_redis: PrivateRedis,
) -> None:
    assert await client.execute("CONFIG", "SET", "requirepass", "s3cret") == b"OK"
    wrong = RedisClient("127.0.0.1", private_redis.port, password="wrong", timeout=PATIENT)
    with pytest.raises(ReplyError, match="WRONGPASS"):
        await wrong.ping()
    right = RedisClient("127.0.0.1", private_redis.port, password="s3cret", db=3,
                        timeout=PATIENT)
    try:
        await right.execute("SET", "where", "db3")
        # Every connection, its own too (SKIPME no): the next command connects again.
        assert await right.execute("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no") >= 1
        assert await right.execute("GET", "where") == b"db3"
        assert await right.execute("SELECT", 0) == b"OK"
        assert await right.execute("GET", "where") is None
    finally:
        await right.aclose()
        await wrong.aclose()
