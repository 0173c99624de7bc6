from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from authz_service.app import create_app
from authz_service.config import load_config
from authz_service.domain import (
    Authorization,
    RoleType,
    Status,
    decode_cursor,
    encode_cursor,
    validate_region,
)
from authz_service.errors import InvalidInput
from authz_service.openapi import OpenApi, load_document

API = OpenApi(load_document())
GOOD = {"userId": "u-1", "roleType": "COMMUNITY", "regionCode": "440106"}


def test_document_is_openapi_31_and_has_the_contract_paths() -> None:
    doc = API.document
    assert doc["openapi"].startswith("3.1")
    for path in ("/api/v1/authorizations", "/api/v1/authorizations/{id}",
                 "/api/v1/authorizations/check", "/api/v1/authorizations/{id}/activate",
                 "/api/v1/authorizations/{id}/revoke", "/api/v1/authorizations/{id}/assessment",
                 "/health", "/health/live", "/health/ready", "/metrics"):
        assert path in doc["paths"]


def test_good_body_passes() -> None:
    assert API["createAuthorization"].body(GOOD) == GOOD


@pytest.mark.parametrize(("body", "field"), [
    ({k: v for k, v in GOOD.items() if k != "userId"}, "userId"),
    ({**GOOD, "roleType": "MAYOR"}, "roleType"),
    ({**GOOD, "regionCode": "44"}, "regionCode"),
    ({**GOOD, "regionCode": 440106}, "regionCode"),
    ({**GOOD, "extra": 1}, "extra"),
    ({**GOOD, "userId": ""}, "userId"),
    ([], None),
])
def test_bad_body_names_the_field(body: Any, field: str | None) -> None:
    with pytest.raises(InvalidInput) as info:
        API["createAuthorization"].body(body)
    assert info.value.field == field


def test_query_is_coerced_and_defaulted() -> None:
    op = API["listAuthorizations"]
    assert op.parameters("query", {}) == {"limit": 20}
    assert op.parameters("query", {"limit": "5", "status": "ACTIVE"}) == {
        "limit": 5, "status": "ACTIVE"}


@pytest.mark.parametrize(("query", "field"), [
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"status": "DONE"}, "status"), ({"roleType": "x"}, "roleType"),
])
def test_bad_query_names_the_parameter(query: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        API["listAuthorizations"].parameters("query", query)
    assert info.value.field == field


def test_required_query_parameter() -> None:
    with pytest.raises(InvalidInput) as info:
        API["checkAuthorization"].parameters("query", {"userId": "u", "roleType": "COMMUNITY"})
    assert info.value.field == "regionCode"


def test_path_id_must_be_a_uuid() -> None:
    op = API["getAuthorization"]
    with pytest.raises(InvalidInput) as info:
        op.parameters("path", {"id": "42"})
    assert info.value.field == "id"
    ident = "6f1c1a52-9d7e-4f6e-9a43-2f0d1c3b4a5e"
    assert op.parameters("path", {"id": ident}) == {"id": ident}


def _app_routes() -> set[tuple[str, str]]:
    config = load_config({"DATABASE_URL": "postgresql://u@127.0.0.1/db",
                          "KAFKA_BROKERS": "127.0.0.1:9092", "JWT_SECRET": "s" * 32})
    routes = set()
    for route in create_app(config).router.routes():
        resource = route.resource
        if route.method != "HEAD" and resource is not None:
            routes.add((route.method.lower(), resource.canonical))
    return routes


def test_every_route_the_app_serves_is_documented_and_back() -> None:
    """One source of truth: a route added to the app without the document (or the other
    way round) fails here, and so cannot escape validation, the contract or attack tests."""
    documented = {(method, path) for path, item in API.document["paths"].items()
                  for method in item if method in ("get", "post", "put", "patch", "delete")}
    assert _app_routes() == documented


@pytest.mark.parametrize("prefix", [f"{n:02d}" for n in range(100)])
def test_the_region_rules_are_the_documents(prefix: str) -> None:
    """For every province prefix, role and code shape, the document accepts a body exactly
    when the domain rule does (the document is what clients read)."""
    for tail in ("0000", "0100", "0106", "9900", "0001", "1000", "0010"):
        code = prefix + tail
        for role in RoleType:
            body = {**GOOD, "roleType": role.value, "regionCode": code}
            try:
                validate_region(role, code)
                domain_ok = True
            except InvalidInput:
                domain_ok = False
            try:
                API["createAuthorization"].body(body)
                document_ok = True
            except InvalidInput:
                document_ok = False
            assert document_ok == domain_ok, (role, code)


@pytest.mark.parametrize("value", ["440106\n", "\n440106", "44010"])
def test_patterns_end_where_the_string_ends(value: str) -> None:
    """ECMA-262 `$`: a trailing newline is not the end (Python's `$` would allow it)."""
    with pytest.raises(InvalidInput):
        API["checkAuthorization"].parameters(
            "query", {"userId": "u", "roleType": "COMMUNITY", "regionCode": value})


def test_a_pattern_with_a_rule_says_the_rule() -> None:
    with pytest.raises(InvalidInput, match="province code"):
        API["createAuthorization"].body({**GOOD, "roleType": "PROVINCE_COMPANY"})


def test_cursor_positions_round_trip_and_any_documented_one_is_accepted() -> None:
    op = API["listAuthorizations"]
    ident = "6f1c1a52-9d7e-4f6e-9a43-2f0d1c3b4a5e"
    stamp = datetime(2026, 12, 2, 5, 11, 5, 567677, tzinfo=UTC)
    auth = Authorization(id=ident, user_id="u", role_type=RoleType.COMMUNITY,
                         region_code="440106", status=Status.PENDING, created_at=stamp,
                         updated_at=stamp)
    cursor = encode_cursor(auth)
    assert op.parameters("query", {"cursor": cursor})["cursor"] == cursor
    assert decode_cursor(cursor) == (stamp, ident)
    for documented in ("0." + ident, "9" * 16 + "." + ident.upper()):
        op.parameters("query", {"cursor": documented})
        decode_cursor(documented)
    for bad in ("!!!", "9" * 17 + "." + ident, "1." + ident[:-1], "-1." + ident):
        with pytest.raises(InvalidInput):
            op.parameters("query", {"cursor": bad})


@pytest.mark.parametrize("name", ["status", "roleType", "regionCode", "userId", "cursor",
                                  "limit"])
def test_an_empty_optional_value_is_a_value_not_an_absence(name: str) -> None:
    """`?status=` is not a status (the document's enum says so); only absent means none."""
    with pytest.raises(InvalidInput) as info:
        API["listAuthorizations"].parameters("query", {name: ""})
    assert info.value.field == name
