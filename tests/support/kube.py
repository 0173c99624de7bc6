"""Small helpers for tests that talk to the local API server: clients from the test
kubeconfig, and waiting by watching (never by sleeping)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client, config, watch

T = TypeVar("T")


def poll_until(what: str, probe: Callable[[], T | None], timeout: float = 60,
               interval: float = 1.0) -> T:
    """For APIs that cannot be watched (metrics): ask until `probe` returns something."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: nothing within {timeout:.0f}s")
        time.sleep(interval)


def api_client(kubeconfig: str) -> Any:
    return config.new_client_from_config(config_file=kubeconfig)


def watch_until(
    list_fn: Callable[..., Any],
    predicate: Callable[[list[dict[str, Any]]], bool],
    *args: Any,
    timeout: int = 60,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """List, then watch, until `predicate(objects)` holds for the current set of objects
    (as plain dicts). Fails with the last state seen after `timeout` seconds. Works for
    typed lists and for custom objects (which the client returns as dicts)."""
    serialize = client.ApiClient().sanitize_for_serialization
    listed = serialize(list_fn(*args, **kwargs))
    objects = {o["metadata"]["uid"]: o for o in listed.get("items") or []}
    if predicate(list(objects.values())):
        return list(objects.values())
    w = watch.Watch()
    for event in w.stream(list_fn, *args, resource_version=listed["metadata"]["resourceVersion"],
                          timeout_seconds=timeout, **kwargs):
        obj = serialize(event["object"])
        if event["type"] == "DELETED":
            objects.pop(obj["metadata"]["uid"], None)
        else:
            objects[obj["metadata"]["uid"]] = obj
        if predicate(list(objects.values())):
            w.stop()
            return list(objects.values())
    raise AssertionError(f"condition not met within {timeout}s; last seen: {objects}")


def condition(obj: dict[str, Any], type_: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return str(c.get("status"))
    return None
