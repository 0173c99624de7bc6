"""`RedisClient`: the service's one Redis client, pipelined on one connection per process.

The service sends Redis few kinds of command: the check cache's Lua scripts, an epoch's
`SET NX` and the health probe's `PING`. The hot one is the check's lookup script, one call
per turn of the event loop. redis-py spends about 170 us of CPU on such a call (a pooled
connection checked out and back, a task per timeout, the command packed in Python); this
client about 60 us (docs/benchmarks.md). Every command is written at once on the one
connection and Redis answers in order, so a reply goes to the oldest caller still waiting.
hiredis, the C parser redis-py uses too, packs the commands and parses the replies.

A cache must fail fast: a connect or a reply that takes longer than `timeout` fails every
command on the connection with `RedisError` and closes it; the next command connects
again. A connection found lost under a command (a Redis restart) is retried once.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis

Arg = str | bytes | int | float


class RedisError(Exception):
    """Redis did not answer: the connection failed or closed, or a reply was late."""


class ConnectionLost(RedisError):
    """The connection closed before the command's reply came."""


class ReplyError(RedisError):
    """Redis answered the command with an error (its message is this exception's)."""


@dataclass(frozen=True)
class Script:
    """A Lua script, run by its SHA1 (`EVALSHA`); Redis learns the text on first use."""

    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.text.encode(), usedforsecurity=False)  # Redis's script id
        object.__setattr__(self, "sha", digest.hexdigest())


class _Connection(asyncio.Protocol):
    """One connection: the callers waiting, oldest first, each with its reply's deadline."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._reader = hiredis.Reader(replyError=ReplyError)
        self._waiting: collections.deque[
            tuple[asyncio.Future[Any], asyncio.TimerHandle]] = collections.deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport (uvloop's is not an asyncio.Transport subclass, but behaves as one).
        self.transport = cast(asyncio.Transport, transport)

    def send(self, args: tuple[Arg, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.closed or self.transport is None:
            future.set_exception(ConnectionLost("redis connection is closed"))
            return future
        late = loop.call_at(loop.time() + self.timeout, self._late)
        self._waiting.append((future, late))
        # hiredis's stub types the tuple as of one element; it takes any length.
        self.transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]
        return future

    def data_received(self, data: bytes) -> None:
        try:
            self._reader.feed(data)
            while (reply := self._reader.gets()) is not False:
                if not self._waiting:
                    raise RedisError("redis sent a reply nobody asked for")
                future, late = self._waiting.popleft()
                late.cancel()
                if future.done():  # its caller gave up (cancelled)
                    continue
                if isinstance(reply, ReplyError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, RedisError) as exc:
            self._fail(RedisError(f"redis protocol error: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionLost(f"redis connection lost: {exc or 'closed by redis'}"))

    def _late(self) -> None:
        self._fail(RedisError(f"redis did not answer within {self.timeout:g} s"))

    def _fail(self, error: RedisError) -> None:
        """Every waiting caller gets `error`; the connection is not used again."""
        self.closed = True
        while self._waiting:
            future, late = self._waiting.popleft()
            late.cancel()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self._fail(ConnectionLost("redis client closed"))


class RedisClient:
    def __init__(self, host: str, port: int, password: str | None = None, db: int = 0,
                 timeout: float = 0.5) -> None:
        self.host = host
        self.port = port
        self.password = password
        self.db = db
        self.timeout = timeout
        self._connection: _Connection | None = None
        self._connecting = asyncio.Lock()

    async def execute(self, *args: Arg) -> Any:
        """One command's reply (bytes, int, None or a list of them)."""
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        try:
            return await connection.send(args)
        except ConnectionLost:
            # Lost before this command could be answered (a Redis restart, an idle
            # connection dropped): once more on a new connection, as redis-py retried.
            return await (await self._connect()).send(args)

    async def run(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """`script`'s result; its text is sent only when Redis does not know it yet."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self.execute("EVAL", script.text, len(keys), *keys, *args)

    async def ping(self) -> bool:
        reply = await self.execute("PING")
        return bool(reply == b"PONG")

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _connect(self) -> _Connection:
        async with self._connecting:
            if self._connection is not None and not self._connection.closed:
                return self._connection  # another caller connected meanwhile
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.timeout):
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self.timeout), self.host, self.port)
            except (OSError, TimeoutError) as exc:
                raise RedisError(f"cannot connect to redis at {self.host}:{self.port}: "
                                 f"{exc or type(exc).__name__}") from None
            setup = []
            if self.password:
                setup.append(connection.send(("AUTH", self.password)))
            if self.db:
                setup.append(connection.send(("SELECT", self.db)))
            try:
                await asyncio.gather(*setup)
            except BaseException:  # refused, late, or the caller cancelled: not kept
                connection.close()
                raise
            self._connection = connection
            return connection
