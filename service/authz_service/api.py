"""Routes under /api/v1: authorizations, the check hot path, assessments."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from authz_service import auth, domain, logs
from authz_service.domain import Principal, RoleType, Status
from authz_service.errors import InvalidInput
from authz_service.keys import (
    AUTHORIZATIONS,
    CONFIG,
    OPENAPI,
    REFERRAL,
    STATISTICS,
    STORE,
    VERIFIER,
)
from authz_service.store import Filters

PREFIX = "/api/v1"


def _json(data: Any, status: int = 200) -> web.Response:
    """A JSON response as web.json_response writes it, serialized by orjson."""
    return web.Response(body=orjson.dumps(data), status=status,
                        content_type="application/json", charset="utf-8")


def authenticate(request: web.Request) -> Principal:
    token = auth.bearer_token(request.headers.get("Authorization"))
    principal = request.app[VERIFIER].verify(token)
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
        # orjson is strict where JSON is: it refuses NaN/Infinity, a lone surrogate (which
        # PostgreSQL could not store: a 500 later), a BOM and nesting past 1024 levels.
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput("request body is not valid JSON") from None
    return operation.body(payload)


def _params(request: web.Request, operation_id: str, location: str) -> dict[str, Any]:
    operation = request.app[OPENAPI][operation_id]
    values = request.match_info if location == "path" else request.query
    return operation.parameters(location, values)


async def create_authorization(request: web.Request) -> web.Response:
    principal = authenticate(request)
    body = await _body(request, "createAuthorization")
    domain.ensure_can_act_for(principal, body["userId"])
    created = await request.app[AUTHORIZATIONS].create(
        body["userId"], RoleType(body["roleType"]), body["regionCode"])
    return _json(created.to_json(), status=201)


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
    return _json({"items": [a.to_json() for a in items], "nextCursor": next_cursor})


async def get_authorization(request: web.Request) -> web.Response:
    principal = authenticate(request)
    path = _params(request, "getAuthorization", "path")
    found = await request.app[STORE].get(path["id"])
    domain.ensure_can_act_for(principal, found.user_id)
    return _json(found.to_json())


async def activate_authorization(request: web.Request) -> web.Response:
    principal = authenticate(request)
    domain.ensure_admin(principal)
    path = _params(request, "activateAuthorization", "path")
    changed = await request.app[AUTHORIZATIONS].activate(path["id"])
    return _json(changed.to_json())


async def revoke_authorization(request: web.Request) -> web.Response:
    principal = authenticate(request)
    domain.ensure_admin(principal)
    path = _params(request, "revokeAuthorization", "path")
    body = await _body(request, "revokeAuthorization")
    changed = await request.app[AUTHORIZATIONS].revoke(path["id"], body["reason"])
    return _json(changed.to_json())


async def check_authorization(request: web.Request) -> web.Response:
    principal = authenticate(request)
    query = _params(request, "checkAuthorization", "query")
    user_id = query["userId"]
    domain.ensure_can_act_for(principal, user_id)
    answer = await request.app[AUTHORIZATIONS].check(user_id, query["roleType"],
                                                     query["regionCode"])
    return _json(answer)


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
    return _json(domain.assessment(found, planting, team_size, threshold))


async def openapi_document(request: web.Request) -> web.Response:
    return _json(request.app[OPENAPI].document)


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
