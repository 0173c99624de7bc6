"""kopf's watch events parsed by orjson instead of the json module.

kopf reads every watch event as one line of JSON and parses it with `json.loads`
(`kopf._cogs.clients.api.stream`, kopf 1.45). At 1,000 resources that parsing was 15% of
the operator's busy time (py-spy, issue 11); orjson parses the same text into the same
dicts, lists, strings and numbers in about half the time (an AuthorizationService of 12 KB
with its managedFields: 33 us against 70 us). kopf has no setting for its decoder, so
`install` swaps the `json` name that module looks up for each line; nothing else of kopf's
uses it there. Text orjson refuses (an integer beyond 64 bits, which the API server does
not send) is parsed by the json module as before.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import orjson


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class OrjsonFirst:
    """What kopf's watch module sees as `json`: our `loads`."""

    loads = staticmethod(loads)


def install(module: ModuleType | None = None) -> bool:
    """Swap the decoder of kopf's watch streams (`module`: kopf's, unless a test gives one);
    False, and nothing changed, if kopf no longer parses them with the json module there."""
    if module is None:
        from kopf._cogs.clients import api
        module = api
    current = getattr(module, "json", None)
    if current is OrjsonFirst:
        return True
    if current is not json:
        return False
    setattr(module, "json", OrjsonFirst)   # noqa: B010 (kopf's module declares no such name)
    return True
