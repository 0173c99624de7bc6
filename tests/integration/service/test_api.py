"""The HTTP API against the real PostgreSQL and Redis: every endpoint, every error status,
each JWT rejection, the region and user rules under concurrency, cache invalidation."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import replace
from typing import Any

import jwt
import psycopg
import pytest
from aiohttp.test_utils import TestClient

from authz_service.config import Config, DatabaseConfig, RedisConfig
from authz_service.openapi import OpenApi

from .conftest import (
    ADMIN,
    PREVIOUS_SECRET,
    SECRET,
    ClientFactory,
    bearer,
    make_token,
)

pytestmark = pytest.mark.servers
API = "/api/v1/authorizations"
Client = TestClient[Any, Any]


def uid() -> str:
    return f"user-{secrets.token_hex(4)}"


def province() -> str:
    """A province code not used by other tests in this module run."""
    return secrets.choice(["11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33",
                           "34", "35", "36", "37", "41", "42", "43", "44", "45", "46"]) + "0000"


def city() -> str:
    return f"44{secrets.randbelow(89) + 10:02d}00"


async def create(client: Client, user: str, role: str, region: str,
                 headers: dict[str, str] = ADMIN) -> dict[str, Any]:
    resp = await client.post(API, json={"userId": user, "roleType": role,
                                        "regionCode": region}, headers=headers)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def activate(client: Client, ident: str) -> Any:
    return await client.post(f"{API}/{ident}/activate", headers=ADMIN)


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])
    assert "Traceback" not in body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


async def test_create_get_activate_revoke_lifecycle(client: Client) -> None:
    user = uid()
    created = await create(client, user, "COMMUNITY", "440106")
    assert created["status"] == "PENDING"
    assert created["userId"] == user

    got = await client.get(f"{API}/{created['id']}", headers=ADMIN)
    assert got.status == 200
    assert await got.json() == created

    active = await activate(client, created["id"])
    assert active.status == 200
    body = await active.json()
    assert body["status"] == "ACTIVE"
    assert body["activatedAt"] is not None

    revoked = await client.post(f"{API}/{created['id']}/revoke", json={"reason": "moved"},
                                headers=ADMIN)
    assert revoked.status == 200
    body = await revoked.json()
    assert (body["status"], body["revokeReason"]) == ("REVOKED", "moved")

    again = await client.post(f"{API}/{created['id']}/revoke", json={"reason": "x"},
                              headers=ADMIN)
    assert (await error_of(again, 409))["code"] == "conflict"
    reactivate = await activate(client, created["id"])
    await error_of(reactivate, 409)


async def test_state_changes_write_outbox_events_in_the_same_transaction(
    client: Client, migrated_database: str
) -> None:
    created = await create(client, uid(), "COMMUNITY", "440106")
    await activate(client, created["id"])
    with psycopg.connect(migrated_database) as conn:
        rows = conn.execute(
            "SELECT event_type, payload FROM outbox WHERE aggregate_id = %s ORDER BY id",
            (created["id"],)).fetchall()
    assert [r[0] for r in rows] == ["authorization.created", "authorization.activated"]
    assert rows[1][1]["authorization"]["status"] == "ACTIVE"
    assert set(rows[1][1]) == {"eventId", "type", "occurredAt", "authorization"}


async def test_list_with_filters_and_keyset_pagination(client: Client) -> None:
    user = uid()
    made = [await create(client, user, role, region) for role, region in [
        ("COMMUNITY", "440106"), ("CITY_COMPANY", "440300"),
        ("PROVINCE_COMPANY", "440000"), ("AUTH_CITY_COMPANY", "440100")]]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(3):
        params = {"userId": user, "limit": "3"} | ({"cursor": cursor} if cursor else {})
        resp = await client.get(API, params=params, headers=ADMIN)
        assert resp.status == 200
        page = await resp.json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [m["id"] for m in made]

    resp = await client.get(API, params={"userId": user, "roleType": "CITY_COMPANY"},
                            headers=ADMIN)
    assert [i["id"] for i in (await resp.json())["items"]] == [made[1]["id"]]
    resp = await client.get(API, params={"userId": user, "status": "ACTIVE"}, headers=ADMIN)
    assert (await resp.json())["items"] == []


async def test_users_see_and_create_only_their_own(client: Client) -> None:
    me, other = uid(), uid()
    mine = await create(client, me, "COMMUNITY", "440106", headers=bearer(me))
    theirs = await create(client, other, "COMMUNITY", "440106")

    resp = await client.get(API, headers=bearer(me))
    assert [i["id"] for i in (await resp.json())["items"]] == [mine["id"]]
    await error_of(await client.get(API, params={"userId": other}, headers=bearer(me)), 403)
    await error_of(await client.get(f"{API}/{theirs['id']}", headers=bearer(me)), 403)
    resp = await client.post(API, json={"userId": other, "roleType": "COMMUNITY",
                                        "regionCode": "440106"}, headers=bearer(me))
    await error_of(resp, 403)
    await error_of(await activate_as(client, mine["id"], bearer(me)), 403)
    resp = await client.post(f"{API}/{mine['id']}/revoke", json={"reason": "x"},
                             headers=bearer(me))
    await error_of(resp, 403)


async def activate_as(client: Client, ident: str, headers: dict[str, str]) -> Any:
    return await client.post(f"{API}/{ident}/activate", headers=headers)


@pytest.mark.parametrize(("token", "message"), [
    (None, "missing"),
    ("Basic dXNlcjpwdw==", "Bearer"),
    (make_token("u", secret="wrong-secret-0123456789abcdef0123456"), "signature"),
    (make_token("u", exp=int(time.time()) - 60), "expired"),
    (make_token("u", nbf=int(time.time()) + 600), "not yet valid"),
    (jwt.encode({"sub": "u", "exp": int(time.time()) + 60}, SECRET + "x" * 40,
                algorithm="HS512"), "algorithm"),
    ("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZXhwIjo0MTAyNDQ0ODAwfQ.",
     "algorithm"),
])
async def test_jwt_rejections_are_401(client: Client, token: str | None, message: str
                                      ) -> None:
    headers = {} if token is None else {
        "Authorization": token if token.startswith("Basic") else f"Bearer {token}"}
    error = await error_of(await client.get(API, headers=headers), 401)
    assert message in error["message"]


async def test_previous_secret_is_accepted_for_rotation(client: Client) -> None:
    token = make_token("admin-1", ("admin",), secret=PREVIOUS_SECRET)
    resp = await client.get(API, headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200


@pytest.mark.parametrize(("body", "field"), [
    ({"roleType": "COMMUNITY", "regionCode": "440106"}, "userId"),
    ({"userId": "u", "roleType": "MAYOR", "regionCode": "440106"}, "roleType"),
    ({"userId": "u", "roleType": "COMMUNITY", "regionCode": "4401"}, "regionCode"),
    ({"userId": "u", "roleType": "PROVINCE_COMPANY", "regionCode": "440100"}, "regionCode"),
    ({"userId": "u", "roleType": "CITY_COMPANY", "regionCode": "440000"}, "regionCode"),
    ({"userId": "u", "roleType": "COMMUNITY", "regionCode": "990106"}, "regionCode"),
    ({"userId": "u", "roleType": "COMMUNITY", "regionCode": "440106", "x": 1}, "x"),
])
async def test_bad_input_is_400_naming_the_field(client: Client, body: dict[str, Any],
                                                 field: str) -> None:
    error = await error_of(await client.post(API, json=body, headers=ADMIN), 400)
    assert error["field"] == field


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b"\xff\xfe", b"null",
                                 b"[" * 60000, b'{"userId": ' + b"[" * 60000])
async def test_malformed_bodies_are_400_never_500(client: Client, raw: bytes) -> None:
    resp = await client.post(API, data=raw, headers={**ADMIN,
                                                     "Content-Type": "application/json"})
    await error_of(resp, 400)


@pytest.mark.parametrize(("path", "params", "field"), [
    (API, {"limit": "0"}, "limit"),
    (API, {"limit": "101"}, "limit"),
    (API, {"cursor": "!!!"}, "cursor"),
    (f"{API}/check", {"userId": "u", "roleType": "COMMUNITY"}, "regionCode"),
    (f"{API}/not-a-uuid", {}, "id"),
])
async def test_bad_query_is_400(client: Client, path: str, params: dict[str, str],
                                field: str) -> None:
    error = await error_of(await client.get(path, params=params, headers=ADMIN), 400)
    assert error["field"] == field


async def test_unknown_ids_routes_and_methods(client: Client) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert (await error_of(await client.get(f"{API}/{missing}", headers=ADMIN),
                           404))["code"] == "not_found"
    await error_of(await activate(client, missing), 404)
    await error_of(await client.get("/api/v1/nothing", headers=ADMIN), 404)
    resp = await client.delete(API, headers=ADMIN)
    await error_of(resp, 405)
    assert "Allow" in resp.headers


async def test_body_above_the_limit_is_413(client: Client, config: Config) -> None:
    body = b'{"userId": "' + b"u" * (config.body_limit + 1) + b'"}'
    resp = await client.post(API, data=body, headers={**ADMIN,
                                                      "Content-Type": "application/json"})
    error = await error_of(resp, 413)
    assert str(config.body_limit) in error["message"]


async def test_one_open_authorization_per_user_and_role(client: Client) -> None:
    user = uid()
    first = await create(client, user, "COMMUNITY", "440106")
    resp = await client.post(API, json={"userId": user, "roleType": "COMMUNITY",
                                        "regionCode": "440107"}, headers=ADMIN)
    assert "already holds" in (await error_of(resp, 409))["message"]
    await client.post(f"{API}/{first['id']}/revoke", json={"reason": "r"}, headers=ADMIN)
    await create(client, user, "COMMUNITY", "440107")  # allowed once the first is revoked


async def test_concurrent_creates_for_one_user_and_role_admit_exactly_one(
    client: Client
) -> None:
    user = uid()
    responses = await asyncio.gather(*(
        client.post(API, json={"userId": user, "roleType": "COMMUNITY",
                               "regionCode": f"4401{n:02d}"}, headers=ADMIN)
        for n in range(1, 11)))
    assert sorted(r.status for r in responses) == [201] + [409] * 9


@pytest.mark.parametrize(("role", "region"), [
    ("PROVINCE_COMPANY", "region-province"), ("AUTH_PROVINCE_COMPANY", "region-province"),
    ("CITY_COMPANY", "region-city"), ("AUTH_CITY_COMPANY", "region-city"),
])
async def test_concurrent_activations_leave_one_active_company_per_region(
    client: Client, role: str, region: str
) -> None:
    code = province() if region == "region-province" else city()
    candidates = [await create(client, uid(), role, code) for _ in range(8)]
    # Another region's company is unaffected by this region's winner.
    responses = await asyncio.gather(*(activate(client, c["id"]) for c in candidates))
    assert sorted(r.status for r in responses) == [200] + [409] * 7
    loser = next(r for r in responses if r.status == 409)
    assert "already has an ACTIVE" in (await error_of(loser, 409))["message"]


async def test_community_roles_may_share_a_region(client: Client) -> None:
    a = await create(client, uid(), "COMMUNITY", "440106")
    b = await create(client, uid(), "COMMUNITY", "440106")
    assert (await activate(client, a["id"])).status == 200
    assert (await activate(client, b["id"])).status == 200


async def check(client: Client, user: str, role: str, region: str,
                headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = await client.get(f"{API}/check", params={
        "userId": user, "roleType": role, "regionCode": region},
        headers=headers or ADMIN)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_check_is_cached_and_a_revoke_shows_on_the_very_next_check(
    client: Client
) -> None:
    user = uid()
    created = await create(client, user, "COMMUNITY", "440106")
    assert await check(client, user, "COMMUNITY", "440106") == {
        "allowed": False, "authorizationId": None}
    await activate(client, created["id"])
    assert await check(client, user, "COMMUNITY", "440106") == {
        "allowed": True, "authorizationId": created["id"]}
    # Served from Redis now: the cache metric counts it.
    await check(client, user, "COMMUNITY", "440106")
    metrics = await (await client.get("/metrics")).text()
    assert 'authz_checks_total{allowed="true",source="cache"}' in metrics
    await client.post(f"{API}/{created['id']}/revoke", json={"reason": "r"}, headers=ADMIN)
    assert await check(client, user, "COMMUNITY", "440106") == {
        "allowed": False, "authorizationId": None}


async def test_check_races_with_revoke_never_leave_a_stale_allow(client: Client) -> None:
    user = uid()
    created = await create(client, user, "COMMUNITY", "440106")
    await activate(client, created["id"])
    checks = [check(client, user, "COMMUNITY", "440106") for _ in range(20)]
    revoke = client.post(f"{API}/{created['id']}/revoke", json={"reason": "r"}, headers=ADMIN)
    await asyncio.gather(*checks, revoke)
    assert (await check(client, user, "COMMUNITY", "440106"))["allowed"] is False


async def test_users_may_check_only_themselves(client: Client) -> None:
    me = uid()
    assert (await check(client, me, "COMMUNITY", "440106", bearer(me)))["allowed"] is False
    resp = await client.get(f"{API}/check", params={
        "userId": uid(), "roleType": "COMMUNITY", "regionCode": "440106"}, headers=bearer(me))
    await error_of(resp, 403)


async def test_health_endpoints(client: Client) -> None:
    resp = await client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert set(body["info"]) == {"database", "redis"}
    assert (await (await client.get("/health/live")).json()) == {"status": "ok"}
    ready = await (await client.get("/health/ready")).json()
    assert set(ready["info"]) == {"database"}


async def test_metrics_have_process_request_and_business_series(client: Client) -> None:
    await create(client, uid(), "COMMUNITY", "440106")
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    assert "process_cpu_seconds_total" in text
    assert ('http_requests_total{method="POST",route="/api/v1/authorizations",status="201"}'
            in text)
    assert 'http_request_duration_seconds_bucket{le="0.005",method="POST"' in text
    assert ('authz_authorization_changes_total{event="authorization.created",'
            'role_type="COMMUNITY"}') in text


async def test_openapi_json_is_the_validating_document(client: Client) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    assert set(OpenApi(doc).operations) >= {"createAuthorization", "checkAuthorization"}


async def test_request_id_is_echoed(client: Client) -> None:
    resp = await client.get("/health/live", headers={"X-Request-Id": "req-123"})
    assert resp.headers["X-Request-Id"] == "req-123"


async def test_database_down_is_503_with_retry_after(start: ClientFactory, config: Config
                                                     ) -> None:
    dead = DatabaseConfig(conninfo="postgresql://postgres@127.0.0.1:1/none", pool_max=2,
                          pool_timeout=1.0)
    client = await start(replace(config, database=dead))
    resp = await client.get(API, headers=ADMIN)
    error = await error_of(resp, 503)
    assert "database" in error["message"]
    assert resp.headers["Retry-After"].isdigit()
    health = await client.get("/health/ready")
    assert health.status == 503
    assert "database" in (await health.json())["error"]


async def test_redis_down_checks_fall_back_to_the_database(start: ClientFactory,
                                                           config: Config) -> None:
    healthy = await start(config)
    client = await start(replace(config, redis=RedisConfig(host="127.0.0.1", port=1)))
    user = uid()
    created = await create(client, user, "COMMUNITY", "440106")  # creates need no cache
    # A change that moves a check's answer needs the cache's fence (docs/service.md).
    error = await error_of(await activate(client, created["id"]), 503)
    assert "redis" in error["message"]
    assert (await activate(healthy, created["id"])).status == 200
    assert await check(client, user, "COMMUNITY", "440106") == {
        "allowed": True, "authorizationId": created["id"]}
    health = await client.get("/health")
    assert health.status == 503
    body = await health.json()
    assert set(body["error"]) == {"redis"}
    assert set(body["info"]) == {"database"}
    assert (await client.get("/health/ready")).status == 200


@pytest.mark.parametrize("reason", ["", "a\u0000b", "x" * 501, 42, None])
async def test_bad_revoke_reasons_are_400(client: Client, reason: Any) -> None:
    created = await create(client, uid(), "COMMUNITY", "440106")
    resp = await client.post(f"{API}/{created['id']}/revoke", json={"reason": reason},
                             headers=ADMIN)
    assert (await error_of(resp, 400))["field"] == "reason"
