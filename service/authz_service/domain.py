"""Authorizations and their rules. Pure: no I/O, time is passed in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from authz_service import regions
from authz_service.errors import Conflict, Forbidden, InvalidInput


class RoleType(StrEnum):
    COMMUNITY = "COMMUNITY"
    AUTH_CITY_COMPANY = "AUTH_CITY_COMPANY"
    AUTH_PROVINCE_COMPANY = "AUTH_PROVINCE_COMPANY"
    CITY_COMPANY = "CITY_COMPANY"
    PROVINCE_COMPANY = "PROVINCE_COMPANY"


class Status(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    REVOKED = "REVOKED"


PROVINCE_ROLES = frozenset({RoleType.AUTH_PROVINCE_COMPANY, RoleType.PROVINCE_COMPANY})
CITY_ROLES = frozenset({RoleType.AUTH_CITY_COMPANY, RoleType.CITY_COMPANY})

EVENT_CREATED = "authorization.created"
EVENT_ACTIVATED = "authorization.activated"
EVENT_REVOKED = "authorization.revoked"


@dataclass(frozen=True)
class Principal:
    user_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


@dataclass(frozen=True)
class Authorization:
    id: str
    user_id: str
    role_type: RoleType
    region_code: str
    status: Status
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None = None
    revoked_at: datetime | None = None
    revoke_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat().replace("+00:00", "Z")

        return {
            "id": self.id,
            "userId": self.user_id,
            "roleType": self.role_type.value,
            "regionCode": self.region_code,
            "status": self.status.value,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "activatedAt": iso(self.activated_at),
            "revokedAt": iso(self.revoked_at),
            "revokeReason": self.revoke_reason,
        }


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def encode_cursor(auth: Authorization) -> str:
    """The keyset position after `auth`: `<createdAt in µs since 1970>.<id>` (the page
    order is (created_at, id)). Every string of that shape is a position, so the document's
    pattern says exactly which cursors are accepted."""
    return f"{(auth.created_at - EPOCH) // MICROSECOND}.{auth.id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    micros, _, ident = cursor.partition(".")
    try:
        if not micros.isdigit() or len(micros) > 16:  # 16 digits: before the year 2287
            raise ValueError(micros)
        return EPOCH + int(micros) * MICROSECOND, str(uuid.UUID(ident))
    except ValueError:
        raise InvalidInput("cursor is malformed", field="cursor") from None


def validate_region(role_type: RoleType, region_code: str) -> None:
    """Province roles need `NN0000`, city roles `NNNN00`, COMMUNITY any valid code."""
    if not regions.is_valid(region_code):
        raise InvalidInput("regionCode is not a valid 6-digit division code", field="regionCode")
    if role_type in PROVINCE_ROLES and not regions.is_province(region_code):
        raise InvalidInput(
            f"{role_type.value} needs a province code (NN0000)", field="regionCode"
        )
    if role_type in CITY_ROLES and not regions.is_city(region_code):
        raise InvalidInput(
            f"{role_type.value} needs a city code (NNNN00, not NN0000)", field="regionCode"
        )


def activate(auth: Authorization, now: datetime) -> Authorization:
    if auth.status is not Status.PENDING:
        raise Conflict(f"cannot activate an authorization that is {auth.status.value}")
    return replace(auth, status=Status.ACTIVE, activated_at=now, updated_at=now)


def revoke(auth: Authorization, reason: str, now: datetime) -> Authorization:
    if auth.status is Status.REVOKED:
        raise Conflict("authorization is already REVOKED")
    return replace(auth, status=Status.REVOKED, revoked_at=now, revoke_reason=reason,
                   updated_at=now)


def ensure_can_act_for(principal: Principal, user_id: str) -> None:
    """Admins act for anyone; a user only for themselves."""
    if not principal.is_admin and principal.user_id != user_id:
        raise Forbidden("you may only act on your own authorizations")


def ensure_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("this action needs the admin role")


def assessment(
    auth: Authorization, team_planting_count: int, team_size: int, threshold: int
) -> dict[str, Any]:
    """Eligibility: the team's planting count in the region reaches the role's threshold."""
    return {
        "authorizationId": auth.id,
        "userId": auth.user_id,
        "roleType": auth.role_type.value,
        "regionCode": auth.region_code,
        "teamSize": team_size,
        "teamPlantingCount": team_planting_count,
        "threshold": threshold,
        "eligible": team_planting_count >= threshold,
    }


def event(event_id: str, event_type: str, occurred_at: datetime, auth: Authorization
          ) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "type": event_type,
        "occurredAt": occurred_at.isoformat().replace("+00:00", "Z"),
        "authorization": auth.to_json(),
    }
