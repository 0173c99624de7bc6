"""Assessment: the statistics and referral stand-ins over real HTTP, with faults."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from authz_service.config import Config
from authz_service.domain import RoleType
from devenv.stubs import StubState

from .conftest import ADMIN, SECRET, ClientFactory, bearer

pytestmark = pytest.mark.servers
API = "/api/v1/authorizations"
ATTEMPTS = 2


@pytest.fixture
async def setup(start: ClientFactory, config: Config,
                stub_server: tuple[str, StubState]
                ) -> tuple[TestClient[Any, Any], StubState, Config]:
    url, state = stub_server
    cfg = replace(config, services=replace(config.services, referral_url=url,
                                           statistics_url=url, timeout=0.5,
                                           attempts=ATTEMPTS))
    return await start(cfg), state, cfg


async def authorization(client: TestClient[Any, Any], user: str) -> str:
    resp = await client.post(API, json={"userId": user, "roleType": "CITY_COMPANY",
                                        "regionCode": "440100"}, headers=ADMIN)
    assert resp.status == 201
    ident: str = (await resp.json())["id"]
    return ident


@pytest.mark.parametrize(("planting", "eligible"), [(99, False), (100, True), (250, True)])
async def test_eligibility_against_the_role_threshold(
    setup: tuple[TestClient[Any, Any], StubState, Config], planting: int, eligible: bool
) -> None:
    client, state, cfg = setup
    user = f"user-{secrets.token_hex(4)}"
    state.teams[user] = {"teamSize": 4, "planting": {"440100": planting, "440300": 999}}
    ident = await authorization(client, user)
    resp = await client.get(f"{API}/{ident}/assessment", headers=bearer(user))
    assert resp.status == 200
    assert await resp.json() == {
        "authorizationId": ident, "userId": user, "roleType": "CITY_COMPANY",
        "regionCode": "440100", "teamSize": 4, "teamPlantingCount": planting,
        "threshold": cfg.thresholds[RoleType.CITY_COMPANY],
        "eligible": eligible,
    }


async def test_calls_are_signed_with_jwt_secret_for_jwt_expires_in(
    setup: tuple[TestClient[Any, Any], StubState, Config]
) -> None:
    client, state, cfg = setup
    ident = await authorization(client, f"user-{secrets.token_hex(4)}")
    assert (await client.get(f"{API}/{ident}/assessment", headers=ADMIN)).status == 200
    assert {c["service"] for c in state.calls} == {"referral", "statistics"}
    for call in state.calls:
        claims = jwt.decode(call["authorization"].removeprefix("Bearer "), SECRET,
                            algorithms=["HS256"])
        assert claims["sub"] == "authorization-service"
        assert claims["exp"] - claims["iat"] == cfg.jwt.expires_in


@pytest.mark.parametrize(("service", "mode"), [
    ("statistics", "error"), ("referral", "error"), ("statistics", "hang"),
    ("referral", "hang"),
])
async def test_a_down_dependency_is_503_naming_it_after_bounded_retries(
    setup: tuple[TestClient[Any, Any], StubState, Config], service: str, mode: str
) -> None:
    client, state, _cfg = setup
    ident = await authorization(client, f"user-{secrets.token_hex(4)}")
    state.faults[service] = mode
    resp = await client.get(f"{API}/{ident}/assessment", headers=ADMIN)
    assert resp.status == 503
    body = await resp.json()
    assert body["error"]["code"] == "dependency_unavailable"
    assert body["error"]["message"].startswith(f"{service} is unavailable")
    assert resp.headers["Retry-After"].isdigit()
    assert sum(1 for c in state.calls if c["service"] == service) == ATTEMPTS


async def test_an_unreachable_dependency_is_503(start: ClientFactory, config: Config) -> None:
    cfg = replace(config, services=replace(config.services,
                                           referral_url="http://127.0.0.1:1",
                                           statistics_url="http://127.0.0.1:1",
                                           timeout=0.5, attempts=1))
    client = await start(cfg)
    ident = await authorization(client, f"user-{secrets.token_hex(4)}")
    resp = await client.get(f"{API}/{ident}/assessment", headers=ADMIN)
    assert resp.status == 503


async def test_only_the_owner_or_an_admin_may_assess(
    setup: tuple[TestClient[Any, Any], StubState, Config]
) -> None:
    client, _state, _cfg = setup
    ident = await authorization(client, f"user-{secrets.token_hex(4)}")
    resp = await client.get(f"{API}/{ident}/assessment", headers=bearer("someone-else"))
    assert resp.status == 403
