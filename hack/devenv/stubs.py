"""Stand-ins for the referral and statistics services (other teams' services).

Run both on one port: `python -m devenv.stubs --port N` (with `hack` on sys.path), or
import `create_app(state)` in tests. Data and faults are set through `/_stub/*`:

- `PUT /_stub/teams/{userId}` `{"teamSize": 3, "planting": {"440000": 120}}`
- `PUT /_stub/fault` `{"service": "statistics", "mode": "error"|"hang"|"none"}`
- `GET /_stub/calls` the requests seen (path, whether a bearer token came with it).

Served like the real services: `GET /api/v1/referrals/{userId}/team` ->
`{"userId", "teamSize"}` and `GET /api/v1/statistics/team-planting?userId=&regionCode=` ->
`{"userId", "regionCode", "plantingCount"}`. Calls without a bearer token get 401.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class StubState:
    teams: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)  # service -> error|hang
    calls: list[dict[str, Any]] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)


STATE = web.AppKey("stub_state", StubState)


async def _guard(request: web.Request, service: str) -> None:
    state = request.app[STATE]
    token = request.headers.get("Authorization", "")
    state.calls.append({"service": service, "path": request.path,
                        "authorization": token})
    if not token.startswith("Bearer "):
        raise web.HTTPUnauthorized(text='{"message": "missing token"}',
                                   content_type="application/json")
    mode = state.faults.get(service)
    if mode == "error":
        raise web.HTTPServiceUnavailable(text='{"message": "stub fault"}',
                                         content_type="application/json")
    if mode == "hang":
        await state.released.wait()


async def referral_team(request: web.Request) -> web.Response:
    await _guard(request, "referral")
    user_id = request.match_info["user_id"]
    team = request.app[STATE].teams.get(user_id, {})
    return web.json_response({"userId": user_id, "teamSize": int(team.get("teamSize", 0))})


async def team_planting(request: web.Request) -> web.Response:
    await _guard(request, "statistics")
    user_id = request.query.get("userId", "")
    region = request.query.get("regionCode", "")
    team = request.app[STATE].teams.get(user_id, {})
    count = int(team.get("planting", {}).get(region, 0))
    return web.json_response({"userId": user_id, "regionCode": region,
                              "plantingCount": count})


async def put_team(request: web.Request) -> web.Response:
    request.app[STATE].teams[request.match_info["user_id"]] = await request.json()
    return web.json_response({"ok": True})


async def put_fault(request: web.Request) -> web.Response:
    body = await request.json()
    state = request.app[STATE]
    if body.get("mode", "none") == "none":
        state.faults.pop(body["service"], None)
        state.released.set()
        state.released = asyncio.Event()
    else:
        state.faults[body["service"]] = body["mode"]
    return web.json_response({"ok": True})


async def get_calls(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].calls)


def create_app(state: StubState | None = None) -> web.Application:
    app = web.Application()
    app[STATE] = state if state is not None else StubState()
    app.router.add_get("/api/v1/referrals/{user_id}/team", referral_team)
    app.router.add_get("/api/v1/statistics/team-planting", team_planting)
    app.router.add_put("/_stub/teams/{user_id}", put_team)
    app.router.add_put("/_stub/fault", put_fault)
    app.router.add_get("/_stub/calls", get_calls)
    app.router.add_get("/health", health)
    return app


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="devenv.stubs",
                                     description="referral + statistics stand-ins")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    web.run_app(create_app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
