"""Routes under /api/v1: authorizations, the check hot path, assessments."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from authz_service import auth, domain, logs
from authz_service.domain import Principal, RoleType, Status
from authz_service.errors import InvalidInput
from authz_service.keys import (
    CACHE,
    CONFIG,
    METRICS,
    OPENAPI,
    REFERRAL,
    RELAY,
    STATISTICS,
    STORE,
)
from authz_service.store import Filters

log = logging.getLogger(__name__)
PREFIX = "/api/v1"


def authenticate(request: web.Request) -> Principal:
    token = auth.bearer_token(request.headers.get("Authorization"))
    principal = auth.verify(token, request.app[CONFIG].jwt)
    logs.bind(userId=principal.user_id)
    return principal


async def _body(request: web.Request, operation_id: str) -> Any:
    operation = request.app[OPENAPI][operation_id]
    raw = await request.read()
    if not raw.strip():
        if operation.body_required:
            raise InvalidInput("request body is required")
        return None
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidInput("request body is not valid JSON") from None
    return operation.body(payload)


def _params(request: web.Request, operation_id: str, location: str) -> dict[str, Any]:
    operation = request.app[OPENAPI][operation_id]
    values = request.match_info if location == "path" else request.query
    return operation.parameters(location, values)


def _changed(request: web.Request, event: str, changed: domain.Authorization) -> None:
    request.app[METRICS].authorizations.labels(event, changed.role_type.value).inc()
    request.app[RELAY].notify()
    logs.bind(authorizationId=changed.id, roleType=changed.role_type.value)
    log.info("Authorization %s", event.rsplit(".", 1)[-1], extra={"event": event})


async def create_authorization(request: web.Request) -> web.Response:
    principal = authenticate(request)
    body = await _body(request, "createAuthorization")
    domain.ensure_can_act_for(principal, body["userId"])
    created = await request.app[STORE].create(
        body["userId"], RoleType(body["roleType"]), body["regionCode"])
    _changed(request, domain.EVENT_CREATED, created)
    return web.json_response(created.to_json(), status=201)


async def list_authorizations(request: web.Request) -> web.Response:
    principal = authenticate(request)
    query = _params(request, "listAuthorizations", "query")
    user_id = query.get("userId")
    if not principal.is_admin:
        if user_id is not None:
            domain.ensure_can_act_for(principal, user_id)
        user_id = principal.user_id
    filters = Filters(
        user_id=user_id,
        role_type=RoleType(query["roleType"]) if "roleType" in query else None,
        region_code=query.get("regionCode"),
        status=Status(query["status"]) if "status" in query else None,
    )
    items, next_cursor = await request.app[STORE].page(filters, query["limit"],
                                                       query.get("cursor"))
    return web.json_response({"items": [a.to_json() for a in items], "nextCursor": next_cursor})


async def get_authorization(request: web.Request) -> web.Response:
    principal = authenticate(request)
    path = _params(request, "getAuthorization", "path")
    found = await request.app[STORE].get(path["id"])
    domain.ensure_can_act_for(principal, found.user_id)
    return web.json_response(found.to_json())


async def activate_authorization(request: web.Request) -> web.Response:
    principal = authenticate(request)
    domain.ensure_admin(principal)
    path = _params(request, "activateAuthorization", "path")
    changed = await request.app[STORE].transition(path["id"], domain.activate,
                                                  domain.EVENT_ACTIVATED)
    await request.app[CACHE].invalidate(changed.user_id)
    _changed(request, domain.EVENT_ACTIVATED, changed)
    return web.json_response(changed.to_json())


async def revoke_authorization(request: web.Request) -> web.Response:
    principal = authenticate(request)
    domain.ensure_admin(principal)
    path = _params(request, "revokeAuthorization", "path")
    body = await _body(request, "revokeAuthorization")
    reason: str = body["reason"]
    changed = await request.app[STORE].transition(
        path["id"], lambda a, now: domain.revoke(a, reason, now), domain.EVENT_REVOKED)
    await request.app[CACHE].invalidate(changed.user_id)
    _changed(request, domain.EVENT_REVOKED, changed)
    return web.json_response(changed.to_json())


async def check_authorization(request: web.Request) -> web.Response:
    principal = authenticate(request)
    query = _params(request, "checkAuthorization", "query")
    user_id, role, region = query["userId"], query["roleType"], query["regionCode"]
    domain.ensure_can_act_for(principal, user_id)
    cache = request.app[CACHE]
    cached, generation = await cache.get(user_id, role, region)
    if cached is not None:
        answer, source = cached, "cache"
    else:
        found = await request.app[STORE].find_active(user_id, RoleType(role), region)
        answer = {"allowed": found is not None,
                  "authorizationId": found.id if found else None}
        source = "database"
        if generation is not None:
            await cache.put(user_id, generation, role, region, answer)
    request.app[METRICS].checks.labels(str(answer["allowed"]).lower(), source).inc()
    return web.json_response(answer)


async def assess_authorization(request: web.Request) -> web.Response:
    principal = authenticate(request)
    path = _params(request, "assessAuthorization", "path")
    found = await request.app[STORE].get(path["id"])
    domain.ensure_can_act_for(principal, found.user_id)
    logs.bind(authorizationId=found.id, roleType=found.role_type.value)
    team_size, planting = await asyncio.gather(
        request.app[REFERRAL].team_size(found.user_id),
        request.app[STATISTICS].team_planting_count(found.user_id, found.region_code),
    )
    threshold = request.app[CONFIG].thresholds[found.role_type]
    return web.json_response(domain.assessment(found, planting, team_size, threshold))


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI].document)


def setup(app: web.Application) -> None:
    router = app.router
    router.add_post(f"{PREFIX}/authorizations", create_authorization)
    router.add_get(f"{PREFIX}/authorizations", list_authorizations)
    # `check` before `{id}`, which would otherwise match it.
    router.add_get(f"{PREFIX}/authorizations/check", check_authorization)
    router.add_get(f"{PREFIX}/authorizations/{{id}}", get_authorization)
    router.add_post(f"{PREFIX}/authorizations/{{id}}/activate", activate_authorization)
    router.add_post(f"{PREFIX}/authorizations/{{id}}/revoke", revoke_authorization)
    router.add_get(f"{PREFIX}/authorizations/{{id}}/assessment", assess_authorization)
    router.add_get("/openapi.json", openapi_document)
