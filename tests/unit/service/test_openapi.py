from __future__ import annotations

from typing import Any

import pytest

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
