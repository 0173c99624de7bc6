"""The benchmark's floor: a bare aiohttp app answering the check's URL with a constant, on
the same event loop (uvloop) as the service. `python -m benchmarks.bare_app PORT`."""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web

ANSWER = b'{"allowed":true,"authorizationId":null}'


async def check(_request: web.Request) -> web.Response:
    return web.Response(body=ANSWER, content_type="application/json", charset="utf-8")


def main() -> None:
    app = web.Application()
    app.router.add_get("/api/v1/authorizations/check", check)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None,
                loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
