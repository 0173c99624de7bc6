from __future__ import annotations

import pytest

from authz_operator.main import (
    kopf_args,
    spans_the_cluster,
    watched_namespaces,
)


def test_defaults_watch_all_namespaces_with_a_random_priority() -> None:
    args = kopf_args([], {})
    assert args[:3] == ["run", "-m", "authz_operator.handlers"]
    assert "--all-namespaces" in args
    [priority] = [a for a in args if a.startswith("--priority=")]
    assert int(priority.split("=")[1]) >= 1


def test_watch_namespaces_from_the_environment() -> None:
    args = kopf_args([], {"WATCH_NAMESPACES": "a, b"})
    assert args[3:7] == ["--namespace", "a", "--namespace", "b"]
    assert "--all-namespaces" not in args


@pytest.mark.parametrize("given", [["--standalone"], ["--priority=5"]])
def test_explicit_peering_choices_are_kept(given: list[str]) -> None:
    args = kopf_args([*given, "-n", "x"], {"WATCH_NAMESPACES": "a"})
    assert [a for a in args if a.startswith("--priority")] == (
        ["--priority=5"] if given == ["--priority=5"] else [])
    assert "--namespace" not in args


@pytest.mark.parametrize(("value", "namespaces", "cluster"), [
    ("", [], False),
    ("a, b", ["a", "b"], False),
    ("!t-*", ["!t-*"], True),
    ("team-*, !team-sandbox", ["team-*,!team-sandbox"], True),
])
def test_patterns_are_one_kopf_pattern_and_span_the_cluster(
        value: str, namespaces: list[str], cluster: bool) -> None:
    env = {"WATCH_NAMESPACES": value}
    assert watched_namespaces(env) == namespaces
    args = kopf_args([], env)
    assert [args[i + 1] for i, a in enumerate(args) if a == "--namespace"] == namespaces
    assert spans_the_cluster(args) is cluster
    assert spans_the_cluster(["run", "--namespace=!x-*"])

