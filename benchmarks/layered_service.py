"""The service with its check cut down to a layer, for `check_layers` (issue 10: what each
layer of a cached check costs). `python -m benchmarks.layered_service LAYER serve`.

Only for this benchmark: each layer swaps a piece of the real service for a stand-in before
the service starts, so the difference between two layers is what that piece costs.

- `app`: the service's application and routes, no middleware, the check a constant answer;
- `middleware`: + the middleware (trace id, log context, deadline, errors, metrics);
- `request`: + authentication and the query's parameters (the answer still a constant);
- `lookup`: + the cache's read of the user's generation in Redis (the answer a constant);
- `check`: the real service.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
from aiohttp import web

LAYERS = ("app", "middleware", "request", "lookup", "check")
ANSWER = {"allowed": True, "authorizationId": None}


def _constant(_request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(ANSWER), content_type="application/json",
                        charset="utf-8")


def cut_to(layer: str) -> None:
    """Swap the pieces above `layer` for stand-ins (before the app is created)."""
    from authz_service import api, app
    from authz_service.keys import AUTHORIZATIONS

    if layer == "check":
        return
    if layer == "app":
        create = app.create_app

        def without_middleware(config: Any) -> web.Application:
            application = create(config)
            application._middlewares = web.Application()._middlewares  # an empty list
            return application

        app.create_app = without_middleware

    async def check(request: web.Request) -> web.Response:
        if layer in ("request", "lookup"):
            principal = api.authenticate(request)
            query = api._params(request, "checkAuthorization", "query")
            if layer == "lookup":
                await request.app[AUTHORIZATIONS].cache.get(
                    principal.user_id, query["roleType"], query["regionCode"])
        return _constant(request)

    api.check_authorization = check


def main() -> int:
    layer = sys.argv.pop(1)
    if layer not in LAYERS:
        print(f"layer must be one of {', '.join(LAYERS)}", file=sys.stderr)
        return 2
    cut_to(layer)
    from authz_service.cli import main as service_main

    return service_main()


if __name__ == "__main__":
    sys.exit(main())
