from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from authz_service import domain, regions
from authz_service.domain import Authorization, Principal, RoleType, Status
from authz_service.errors import Conflict, Forbidden, InvalidInput

T0 = datetime(2024, 1, 20, 10, 30, tzinfo=UTC)


def pending(**overrides: object) -> Authorization:
    values: dict[str, object] = {
        "id": "6f1c1a52-9d7e-4f6e-9a43-2f0d1c3b4a5e", "user_id": "user-001",
        "role_type": RoleType.AUTH_PROVINCE_COMPANY, "region_code": "440000",
        "status": Status.PENDING, "created_at": T0, "updated_at": T0,
    }
    values.update(overrides)
    return Authorization(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "valid", "province", "city"), [
    ("440000", True, True, False),
    ("440100", True, False, True),
    ("440106", True, False, False),
    ("110000", True, True, False),
    ("110100", True, False, True),
    ("990000", False, False, False),   # no such province
    ("44000", False, False, False),
    ("44000a", False, False, False),
    ("\uff14\uff14\uff10\uff10\uff10\uff10", False, False, False),  # full-width digits
])
def test_region_codes(code: str, valid: bool, province: bool, city: bool) -> None:
    assert (regions.is_valid(code), regions.is_province(code), regions.is_city(code)) == (
        valid, province, city)


@pytest.mark.parametrize(("role", "code", "ok"), [
    (RoleType.PROVINCE_COMPANY, "440000", True),
    (RoleType.PROVINCE_COMPANY, "440100", False),
    (RoleType.AUTH_PROVINCE_COMPANY, "440106", False),
    (RoleType.CITY_COMPANY, "440100", True),
    (RoleType.AUTH_CITY_COMPANY, "440000", False),
    (RoleType.CITY_COMPANY, "440106", False),
    (RoleType.COMMUNITY, "440106", True),
    (RoleType.COMMUNITY, "440000", True),
    (RoleType.COMMUNITY, "000000", False),
])
def test_region_rules(role: RoleType, code: str, ok: bool) -> None:
    if ok:
        domain.validate_region(role, code)
    else:
        with pytest.raises(InvalidInput) as info:
            domain.validate_region(role, code)
        assert info.value.field == "regionCode"


def test_pending_activates_then_revokes() -> None:
    later = T0 + timedelta(minutes=5)
    active = domain.activate(pending(), later)
    assert (active.status, active.activated_at, active.updated_at) == (
        Status.ACTIVE, later, later)
    revoked = domain.revoke(active, "fraud", later)
    assert (revoked.status, revoked.revoke_reason, revoked.revoked_at) == (
        Status.REVOKED, "fraud", later)


def test_pending_may_be_revoked_directly() -> None:
    assert domain.revoke(pending(), "no", T0).status is Status.REVOKED


@pytest.mark.parametrize(("start", "change"), [
    (Status.ACTIVE, "activate"), (Status.REVOKED, "activate"), (Status.REVOKED, "revoke"),
])
def test_illegal_transitions_conflict(start: Status, change: str) -> None:
    auth = pending(status=start)
    def act() -> object:
        if change == "activate":
            return domain.activate(auth, T0)
        return domain.revoke(auth, "again", T0)

    with pytest.raises(Conflict):
        act()


def test_users_act_only_for_themselves_admins_for_anyone() -> None:
    admin = Principal("a", frozenset({"admin"}))
    user = Principal("u", frozenset())
    domain.ensure_can_act_for(admin, "someone")
    domain.ensure_can_act_for(user, "u")
    with pytest.raises(Forbidden):
        domain.ensure_can_act_for(user, "someone")
    domain.ensure_admin(admin)
    with pytest.raises(Forbidden):
        domain.ensure_admin(user)


def test_json_shape() -> None:
    assert pending().to_json() == {
        "id": "6f1c1a52-9d7e-4f6e-9a43-2f0d1c3b4a5e", "userId": "user-001",
        "roleType": "AUTH_PROVINCE_COMPANY", "regionCode": "440000", "status": "PENDING",
        "createdAt": "2024-01-20T10:30:00Z", "updatedAt": "2024-01-20T10:30:00Z",
        "activatedAt": None, "revokedAt": None, "revokeReason": None,
    }


@pytest.mark.parametrize(("count", "eligible"), [(499, False), (500, True), (501, True)])
def test_assessment_threshold(count: int, eligible: bool) -> None:
    result = domain.assessment(pending(), count, 7, 500)
    assert (result["eligible"], result["teamSize"], result["threshold"]) == (eligible, 7, 500)


def test_event_shape() -> None:
    event = domain.event("e1", domain.EVENT_CREATED, T0, pending())
    assert event == {"eventId": "e1", "type": "authorization.created",
                     "occurredAt": "2024-01-20T10:30:00Z",
                     "authorization": pending().to_json()}
