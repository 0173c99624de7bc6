"""Seed health endpoints: /health (database and Redis), /health/live, /health/ready.

`/health/live` (the liveness probe) touches no dependency: a database outage must make
pods unready, never get them killed and restarted. Each dependency probe answers within
TIMEOUT seconds even when the dependency hangs (`deadline.within`), so `/health/ready`
says 503 quickly when the database is stopped or hung, and while the service drains
after SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from authz_service.deadline import Expired, within
from authz_service.keys import DRAINING, REDIS, STORE

log = logging.getLogger(__name__)
TIMEOUT = 1.0
RETRY_AFTER = "5"


async def _probe(check: Callable[[], Awaitable[Any]]) -> dict[str, str]:
    try:
        await within(check(), TIMEOUT)
    except Expired:
        return {"status": "down", "message": f"no answer within {TIMEOUT:g} s"}
    except Exception as exc:
        return {"status": "down", "message": type(exc).__name__}
    return {"status": "up"}


class ShuttingDown(Exception):  # its name is the probe's message
    """This process got SIGTERM and serves only what load balancers still send."""


async def _draining() -> None:
    raise ShuttingDown


async def _report(checks: dict[str, Callable[[], Awaitable[Any]]]) -> web.Response:
    names = list(checks)
    results = await asyncio.gather(*(_probe(checks[n]) for n in names))
    details = dict(zip(names, results, strict=True))
    ok = all(r["status"] == "up" for r in results)
    body = {
        "status": "ok" if ok else "error",
        "info": {n: r for n, r in details.items() if r["status"] == "up"},
        "error": {n: r for n, r in details.items() if r["status"] != "up"},
        "details": details,
    }
    if not ok:
        log.warning("health check failed: %s", ", ".join(body["error"]))
    return web.json_response(body, status=200 if ok else 503,
                             headers=None if ok else {"Retry-After": RETRY_AFTER})


async def health(request: web.Request) -> web.Response:
    return await _report({"database": request.app[STORE].ping,
                          "redis": request.app[REDIS].ping})


async def ready(request: web.Request) -> web.Response:
    checks: dict[str, Callable[[], Awaitable[Any]]] = {"database": request.app[STORE].ping}
    if request.app[DRAINING].is_set():
        checks["service"] = _draining
    return await _report(checks)


async def live(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def setup(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
