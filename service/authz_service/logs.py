"""Structured JSON logs in the seed's shape, with per-request context from contextvars."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

SERVICE = "authorization-service"
CONTEXT_FIELDS = ("traceId", "userId", "authorizationId", "roleType")
_context: ContextVar[Mapping[str, str]] = ContextVar("authz_log_context", default={})  # noqa: B039
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def bind(**fields: str | None) -> None:
    """Add fields (traceId, userId, ...) to every log line of the current task."""
    merged = dict(_context.get())
    merged.update({k: v for k, v in fields.items() if v is not None})
    _context.set(merged)


def open_scope(trace_id: str | None = None) -> Token[Mapping[str, str]]:
    """A fresh context for one request (or job), undone by `close_scope`; without the
    `with` of `scope`, which costs a generator per request."""
    return _context.set({"traceId": trace_id} if trace_id else {})


def close_scope(token: Token[Mapping[str, str]]) -> None:
    _context.reset(token)


@contextmanager
def scope() -> Iterator[None]:
    token = open_scope()
    try:
        yield
    finally:
        close_scope(token)


def trace_id_from(headers: Mapping[str, str]) -> str:
    """W3C `traceparent` trace id, else a sane `X-Request-Id`, else a new id."""
    match = _TRACEPARENT.fullmatch(headers.get("traceparent", "").strip().lower())
    if match and match.group(1) != "0" * 32:
        return match.group(1)
    request_id = headers.get("X-Request-Id", "").strip()
    if _SAFE_ID.fullmatch(request_id):
        return request_id
    return os.urandom(16).hex()  # 32 hex digits like uuid4().hex, without the UUID object


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "service": SERVICE,
            "logger": record.name,
        }
        line.update(_context.get())
        for key in (*CONTEXT_FIELDS, "event", "dependency", "status", "route", "durationMs",
                    "count", "topic", "eventId"):
            value = record.__dict__.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
