"""The one middleware: request context, deadline, the one JSON error shape, metrics."""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
from aiohttp import web
from aiohttp.typedefs import Handler
from psycopg_pool import PoolTimeout

from authz_service import logs
from authz_service.errors import AppError, DeadlineExceeded, DependencyUnavailable
from authz_service.keys import CONFIG, DEADLINES, METRICS

log = logging.getLogger(__name__)
access = logging.getLogger("authz_service.access")

_HTTP_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden",
               404: "not_found", 405: "method_not_allowed", 409: "conflict",
               413: "payload_too_large", 415: "unsupported_media_type",
               503: "dependency_unavailable"}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, str] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return web.json_response({"error": body}, status=status, headers=headers)


@web.middleware
async def handle(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request, in one middleware (each one is a coroutine and a call per request,
    a tenth of a cached check): its log context and trace id (`traceparent`/`X-Request-Id`),
    its deadline, the one JSON error shape, and its metrics and access line."""
    trace_id = logs.trace_id_from(request.headers)
    scope = logs.open_scope(trace_id)
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await _within_deadline(request, handler)
        except web.HTTPException as exc:
            if exc.status < 400:
                status = exc.status
                raise
            response = _http_error(request, exc)
        except Exception as exc:
            response = _error(exc)
        status = response.status
        response.headers["X-Request-Id"] = trace_id
        return response
    finally:
        _record(request, status, time.perf_counter() - started)
        logs.close_scope(scope)


async def _within_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler, answered within `request_timeout` seconds (+ the reaper's tick) whatever
    hangs below it: the database work it waits for is detached (`deadline.detach`), so the
    cancellation ends the handler at once."""
    seconds = request.app[CONFIG].request_timeout
    reaper = request.app[DEADLINES]
    task = asyncio.current_task()
    assert task is not None  # aiohttp runs handlers in tasks
    reaper.watch(task, seconds)
    try:
        return await handler(request)
    except asyncio.CancelledError:
        if reaper.forget(task):
            task.uncancel()
            raise DeadlineExceeded(seconds) from None
        raise
    finally:
        if reaper.forget(task):  # cancelled, but the handler finished all the same
            task.uncancel()


def _error(exc: Exception) -> web.Response:
    """The JSON error for what a handler raised (called in its `except` block)."""
    if isinstance(exc, AppError):
        headers = None
        if isinstance(exc, DependencyUnavailable):
            headers = {"Retry-After": str(exc.retry_after)}
            log.warning("dependency unavailable: %s", exc.message,
                        extra={"dependency": exc.dependency})
        return error_response(exc.status, exc.code, exc.message, exc.field, headers)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | PoolTimeout):
        # OperationalError covers a lost connection and statement_timeout (QueryCanceled);
        # InterfaceError a connection closed under us after a cancelled query.
        log.warning("database unavailable: %s", exc, extra={"dependency": "database"})
        return error_response(503, "dependency_unavailable", "database is unavailable",
                              headers={"Retry-After": "5"})
    log.exception("unhandled error")
    return error_response(500, "internal", "internal server error")


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
    message = exc.reason if exc.status != 413 else (
        f"request body is larger than {request.app[CONFIG].body_limit} bytes")
    return error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), message,
                          headers=headers or None)


def _record(request: web.Request, status: int, elapsed: float) -> None:
    """Request metrics by route and status, and the access line."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    request.app[METRICS].request(request.method, route, str(status), elapsed)
    # Probes and scrapes at debug, so they do not drown the API's lines; a line below
    # LOG_LEVEL costs one level test.
    level = logging.INFO if route.startswith("/api/") else logging.DEBUG
    if access.isEnabledFor(level):
        access.log(level, "%s %s %d", request.method, route, status,
                   extra={"route": route, "status": status,
                          "durationMs": round(elapsed * 1000, 2)})
