"""The canonical JSON that every hash is taken of: the json module's bytes, faster
(podconfig.canonical_json)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from authz_operator import resources as r
from authz_operator.podconfig import canonical_json, content_hash
from authz_operator.spec import parse_spec

from .samples import OWNER, spec_body


def json_module(value: Any) -> bytes:
    """What the hashes were taken of before orjson: they must not change."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def every_child() -> list[Any]:
    """Every object the builders make, for a spec that turns every part on, with text that
    needs escaping in its configuration."""
    spec = parse_spec(spec_body(
        ingress={"enabled": True, "host": "authz.example.com", "tlsSecretName": "tls"},
        autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 5},
        logLevel="debug", replicas=3))
    target = r.target_from_spec(spec, {"authorization-secrets": "41"})
    children = [c for c in r.desired_children(spec, OWNER, target).values() if c is not None]
    return [*children, r.desired_migration_job(spec, OWNER, target, revision=2),
            r.desired_migration_job(spec, OWNER, target, revision=3, down_to="0002")]


def floats(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from floats(v)
    elif isinstance(value, list):
        for v in value:
            yield from floats(v)


def test_every_child_is_hashed_over_the_json_modules_bytes_and_holds_no_float() -> None:
    children = every_child()
    assert {c["kind"] for c in children} >= {
        "Deployment", "Service", "ConfigMap", "ServiceAccount", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "Ingress", "Job"}
    for child in children:
        assert canonical_json(child) == json_module(child), child["kind"]
        assert list(floats(child)) == [], child["kind"]


@pytest.mark.parametrize("value", [
    {"b": 1, "a": [True, False, None], "B": {"z": "", "_": {}}, "": []},
    ["quote \" backslash \\ slash / tab \t newline \n nul \x00 bell \x07 del \x7f </script>"],
    {"big": 2**63 - 1, "negative": -2**63, "zero": 0},
    {"ünïcode key": "välue", "emoji": "\U0001f600", "bidi": "\u202e", "cjk": "\u4e2d"},
    [["image", "0123abcd", "deadbeef"]],   # a revision key's input
])
def test_the_bytes_are_the_json_modules(value: Any) -> None:
    assert canonical_json(value) == json_module(value)


def test_a_hash_recorded_before_is_the_same() -> None:
    """A revision's key and a child's desired-hash are stored in the cluster: the same input
    gives the hash an operator of the earlier version wrote (sha256 of json.dumps)."""
    import hashlib

    value = {"image": "registry.example/a:1", "config": {"LOG_LEVEL": "info", "X": "é"}}
    assert content_hash(value) == hashlib.sha256(json_module(value)).hexdigest()[:16]


def test_keys_orjson_refuses_take_the_json_modules_path() -> None:
    value = {10: "a", 9: "b"}   # json sorts them as numbers, then writes them as text
    assert canonical_json(value) == json_module(value) == b'{"9":"b","10":"a"}'
