from __future__ import annotations

import pytest

from authz_operator.main import kopf_args


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
