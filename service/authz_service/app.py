"""`create_app(config)`: the aiohttp application; resources open and close in cleanup
contexts (teardown runs only for what was set up)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from authz_service import api, cache, consumer, health, logs, store
from authz_service.auth import Verifier
from authz_service.authorizations import Authorizations
from authz_service.clients import create_clients
from authz_service.config import Config
from authz_service.deadline import Expired, Reaper, within
from authz_service.events import Relay
from authz_service.keys import (
    AUTHORIZATIONS,
    CACHE,
    CONFIG,
    DEADLINES,
    DRAINING,
    HTTP,
    METRICS,
    OPENAPI,
    POOL,
    REDIS,
    REFERRAL,
    RELAY,
    STATISTICS,
    STORE,
    VERIFIER,
)
from authz_service.metrics import CONTENT_TYPE, create_metrics
from authz_service.middleware import handle
from authz_service.openapi import OpenApi, load_document

log = logging.getLogger(__name__)
# aiohttp closes a connection idle this long, and also one whose request has not fully
# arrived this long after it connected (the timer is not restarted by a trickle of header
# bytes: slow clients are bounded). Longer than the 60 s idle timeout of the usual proxies
# and load balancers in front, so they never reuse a connection we are closing.
KEEPALIVE_TIMEOUT = 75.0
SHUTDOWN_STEP = 5.0  # seconds each background task gets to stop on shutdown
# The kernel's queue of connections not yet accepted. aiohttp's default of 128 overflows
# when a client opens hundreds of connections at once under load: the kernel drops their
# SYNs and the client retries after 1, 3, 7 s, so a burst became seconds-long stalls and
# timeouts (measured: 5,971 listen drops in 5 s at 20,000 checks/s offered). The kernel
# caps it at net.core.somaxconn (4096 by default), as Go's servers ask for.
LISTEN_BACKLOG = 4096


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    pool = store.create_pool(app[CONFIG].database)
    await pool.open(wait=False)  # start even while the database is down; readiness says so
    app[POOL] = pool
    app[STORE] = store.Store(pool)
    log.info("database pool opened (max %d)", app[CONFIG].database.pool_max)
    yield
    await pool.close()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    client = cache.create_client(app[CONFIG].redis)
    app[REDIS] = client
    app[CACHE] = cache.CheckCache(client, app[CONFIG].cache_ttl)
    yield
    await client.aclose()


async def http_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    async with aiohttp.ClientSession() as session:
        app[HTTP] = session
        app[REFERRAL], app[STATISTICS] = create_clients(session, config.services, config.jwt)
        yield


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    relay = Relay(app[POOL], config.kafka, app[METRICS], config.relay_interval)
    app[RELAY] = relay
    if not config.relay_enabled:
        yield
        relay.close()
        return
    task = asyncio.create_task(relay.run(), name="outbox-relay")
    yield
    await relay.stop()
    # Bounded: a pass stuck on a hung database must not hold the exit (its rows stay
    # pending in the outbox, for the next start or another replica).
    await _bounded(task, SHUTDOWN_STEP, "outbox relay")
    try:  # flush what the last requests wrote
        await within(relay.drain(config.shutdown_timeout), config.shutdown_timeout + 5)
    except Expired:
        log.warning("outbox drain on shutdown timed out; events stay pending")
    except Exception:
        log.exception("outbox drain on shutdown failed; events stay pending")
    finally:
        relay.close()


async def _bounded(task: asyncio.Task[None], seconds: float, what: str) -> None:
    try:
        await within(task, seconds)
    except Expired:
        log.warning("%s did not stop within %g s; left behind", what, seconds)
    except Exception:
        log.exception("%s failed while stopping", what)


async def authorizations_ctx(app: web.Application) -> AsyncIterator[None]:
    app[AUTHORIZATIONS] = Authorizations(app[STORE], app[CACHE], app[RELAY], app[METRICS])
    yield


async def consumer_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    if not config.consumer_enabled:
        yield
        return

    async def on_event(event_id: str, event_type: str, user_id: str) -> None:
        metrics = app[METRICS]
        if event_type != consumer.USER_DEACTIVATED:
            metrics.consumed.labels(event_type, "ignored").inc()
            return
        revoked = await app[AUTHORIZATIONS].revoke_user(user_id, event_id, event_type,
                                                        "user deactivated")
        metrics.consumed.labels(event_type, "duplicate" if revoked is None else "applied").inc()

    worker = consumer.IdentityConsumer(config.kafka, on_event)
    task = asyncio.create_task(worker.run(), name="identity-consumer")
    yield
    worker.stop()
    await _bounded(task, SHUTDOWN_STEP, "identity consumer")


class MalformedRequests(logging.Filter):
    """aiohttp logs every unparseable request (a 64 KiB header, a bad request line) as an
    error with a traceback that quotes the first 100 bytes of the offending line, which may
    be someone's `Authorization: Bearer ...`. They are the client's fault: one warning line
    naming the kind, with none of the request's bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "malformed HTTP request refused: %s", (type(exc).__name__,)
            record.exc_info, record.exc_text = None, None
        return True


async def metrics_endpoint(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(),
                        headers={"Content-Type": CONTENT_TYPE})


def create_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[handle],
                          client_max_size=config.body_limit)
    app[CONFIG] = config
    app[DRAINING] = asyncio.Event()
    app[DEADLINES] = Reaper()
    app[METRICS] = create_metrics()
    app[OPENAPI] = OpenApi(load_document())
    app[VERIFIER] = Verifier(config.jwt)
    app.cleanup_ctx.extend([database_ctx, redis_ctx, http_ctx, relay_ctx, authorizations_ctx,
                            consumer_ctx])
    api.setup(app)
    health.setup(app)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


def serve(config: Config, reuse_port: bool = False) -> None:
    """Run until SIGTERM/SIGINT: stop accepting, finish in-flight requests, flush the relay.

    `reuse_port`: one of several worker processes sharing the port (see workers.py)."""
    logs.setup(config.log_level)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequests())
    if len(config.jwt.secret.encode()) < 32:
        log.warning("JWT_SECRET is shorter than 32 bytes; use a longer secret")
    log.info("authorization service starting on port %d (%s)", config.port, config.node_env)
    app = create_app(config)
    # First, before the cleanup contexts open anything (as run_app's own handlers would).
    app.on_startup.insert(0, _handle_signals)
    web.run_app(app, port=config.port, shutdown_timeout=config.shutdown_timeout,
                print=None, access_log=None, handle_signals=False,
                keepalive_timeout=KEEPALIVE_TIMEOUT, reuse_port=reuse_port or None,
                backlog=LISTEN_BACKLOG,
                loop=uvloop.new_event_loop())
    log.info("authorization service stopped")


async def _handle_signals(app: web.Application) -> None:
    """SIGTERM/SIGINT: readiness turns 503 and the service serves on for `shutdown_grace`
    seconds (load balancers stop sending meanwhile), then stops accepting, finishes what
    is in flight (up to `shutdown_timeout`) and cleans up. Stopping at once instead would
    reset connections that were accepted by the kernel but not yet by the server."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if app[DRAINING].is_set():
            return
        app[DRAINING].set()
        grace = app[CONFIG].shutdown_grace
        log.info("stopping: draining for %g s, then finishing in-flight requests", grace)
        loop.call_later(grace, _exit)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)


def _exit() -> None:
    # run_app's own way out: it stops the site, waits for handlers, runs the cleanups.
    raise web.GracefulExit
