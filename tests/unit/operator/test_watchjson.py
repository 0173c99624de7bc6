"""kopf's watch events parsed by orjson first (watchjson.py): the same values, the json
module's where orjson refuses, and the swap only where kopf parses its watch lines."""

from __future__ import annotations

import inspect
import json
import types

from kopf._cogs.clients import api

from authz_operator import watchjson


def test_the_same_values_as_the_json_module_and_its_fallback() -> None:
    line = json.dumps({"type": "MODIFIED", "object": {
        "metadata": {"name": "a", "labels": {"x": "ü"}}, "spec": {"n": 3, "f": 0.5,
                                                                "l": [None, True]}}})
    assert watchjson.loads(line) == json.loads(line)
    assert watchjson.loads(line.encode()) == json.loads(line)
    huge = '{"n": 1180591620717411303424}'     # 2**70: orjson refuses, json does not
    assert watchjson.loads(huge) == {"n": 2**70}


def test_install_swaps_only_the_json_module_and_only_once() -> None:
    module = types.ModuleType("fake_kopf_api")
    module.json = json   # type: ignore[attr-defined]
    assert watchjson.install(module)
    assert module.json is watchjson.OrjsonFirst
    assert watchjson.install(module)              # again: nothing more to do
    other = types.ModuleType("changed_kopf_api")
    other.json = object()  # type: ignore[attr-defined]
    assert not watchjson.install(other)
    assert not watchjson.install(types.ModuleType("no_json_at_all"))


def test_kopfs_watch_lines_go_through_the_swapped_name() -> None:
    """If kopf stops parsing its watch lines with `json.loads` in this module, the swap
    does nothing: this fails, and the log warns at the operator's start."""
    assert "json.loads(line" in inspect.getsource(api.stream)
    assert watchjson.install()
    assert getattr(api, "json") is watchjson.OrjsonFirst   # noqa: B009 (mypy: a module)
