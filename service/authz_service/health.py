"""Seed health endpoints: /health (database and Redis), /health/live, /health/ready."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from authz_service.keys import REDIS, STORE

log = logging.getLogger(__name__)
TIMEOUT = 2.0


async def _probe(check: Callable[[], Awaitable[Any]]) -> dict[str, str]:
    try:
        await asyncio.wait_for(check(), timeout=TIMEOUT)
    except Exception as exc:
        return {"status": "down", "message": type(exc).__name__}
    return {"status": "up"}


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
                             headers=None if ok else {"Retry-After": "5"})


async def health(request: web.Request) -> web.Response:
    return await _report({"database": request.app[STORE].ping,
                          "redis": request.app[REDIS].ping})


async def ready(request: web.Request) -> web.Response:
    return await _report({"database": request.app[STORE].ping})


async def live(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def setup(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
