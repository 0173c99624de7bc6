from __future__ import annotations

import json
import logging

import pytest

from authz_service import logs
from authz_service.consumer import parse_identity_event


@pytest.mark.parametrize(("raw", "expected"), [
    ({"eventId": "e1", "type": "user.deactivated", "userId": "u1"},
     ("e1", "user.deactivated", "u1")),
    ({"eventId": "e1", "type": "user.deactivated", "payload": {"userId": "u1"}},
     ("e1", "user.deactivated", "u1")),
    ({"eventId": "e1", "type": "user.deactivated", "data": {"id": "u1"}},
     ("e1", "user.deactivated", "u1")),
    ({"type": "user.deactivated", "userId": "u1"}, None),
    ({"eventId": "e1", "type": "user.deactivated"}, None),
    ([1, 2], None),
])
def test_identity_events(raw: object, expected: object) -> None:
    assert parse_identity_event(json.dumps(raw).encode()) == expected


@pytest.mark.parametrize("raw", [None, b"", b"{not json", b"\xff\xfe"])
def test_garbage_identity_events(raw: bytes | None) -> None:
    assert parse_identity_event(raw) is None


def test_trace_id_sources() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert logs.trace_id_from({"traceparent": parent}) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert logs.trace_id_from({"X-Request-Id": "req-42"}) == "req-42"
    assert logs.trace_id_from({"X-Request-Id": "bad id\n"}) != "bad id\n"
    assert len(logs.trace_id_from({})) == 32


def test_json_log_line_carries_context() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "Authorization %s", ("created",),
                               None)
    record.__dict__["authorizationId"] = "a-1"
    with logs.scope():
        logs.bind(traceId="t-1", userId="u-1")
        line = json.loads(logs.JsonFormatter().format(record))
    assert line["message"] == "Authorization created"
    assert line["level"] == "info"
    assert line["service"] == "authorization-service"
    assert (line["traceId"], line["userId"], line["authorizationId"]) == ("t-1", "u-1", "a-1")
    assert line["timestamp"].endswith("Z")
