"""The one error middleware (one JSON error shape), request context and metrics."""

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
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AppError as exc:
        headers = None
        if isinstance(exc, DependencyUnavailable):
            headers = {"Retry-After": str(exc.retry_after)}
            log.warning("dependency unavailable: %s", exc.message,
                        extra={"dependency": exc.dependency})
        return error_response(exc.status, exc.code, exc.message, exc.field, headers)
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        # OperationalError covers a lost connection and statement_timeout (QueryCanceled);
        # InterfaceError a connection closed under us after a cancelled query.
        log.warning("database unavailable: %s", exc, extra={"dependency": "database"})
        return error_response(503, "dependency_unavailable", "database is unavailable",
                              headers={"Retry-After": "5"})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        message = exc.reason if exc.status != 413 else (
            f"request body is larger than {request.app[CONFIG].body_limit} bytes")
        return error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"),
                              message, headers=headers or None)
    except Exception:
        log.exception("unhandled error")
        return error_response(500, "internal", "internal server error")


@web.middleware
async def deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request answers within `request_timeout` seconds (+ the reaper's tick),
    whatever hangs below it: the database work it waits for is detached
    (`deadline.detach`), so the cancellation ends the handler at once."""
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


@web.middleware
async def context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Trace id from `traceparent`/`X-Request-Id`, request metrics by route and status."""
    with logs.scope():
        trace_id = logs.trace_id_from(request.headers)
        logs.bind(traceId=trace_id)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            response.headers["X-Request-Id"] = trace_id
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            elapsed = time.perf_counter() - started
            request.app[METRICS].request(request.method, route, str(status), elapsed)
            # Probes and scrapes at debug, so they do not drown the API's lines; a line
            # below LOG_LEVEL costs one level test.
            level = logging.INFO if route.startswith("/api/") else logging.DEBUG
            if access.isEnabledFor(level):
                access.log(level, "%s %s %d", request.method, route, status,
                           extra={"route": route, "status": status,
                                  "durationMs": round(elapsed * 1000, 2)})
