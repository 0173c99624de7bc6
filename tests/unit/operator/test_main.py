from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from authz_operator.main import (
    GC_THRESHOLD,
    keep_out,
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



def test_the_operator_runs_without_the_client_libraries_kopf_would_import() -> None:
    """`main` (kopf's `run --help`: kopf imported whole, nothing started), then the handlers
    and everything they import, in a fresh interpreter: nothing needs the clients kept out
    (an import of one would fail), and none of their dependencies is loaded another way."""
    code = (
        "import sys\n"
        "from authz_operator.main import main\n"
        "assert main(['--help']) == 0\n"
        "import authz_operator.handlers\n"
        "import gc\n"
        "print(gc.get_threshold())\n"
        "heavy = ('kubernetes', 'pykube', 'requests', 'pydantic', 'oauthlib')\n"
        "print(sorted(m for m in heavy if sys.modules.get(m) is not None))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    *_, thresholds, heavy = done.stdout.strip().splitlines()
    assert heavy == "[]"
    assert thresholds == f"({GC_THRESHOLD}, 10, 10)"   # the collector's, set by main


def test_keep_out_leaves_a_module_already_imported() -> None:
    loaded: dict[str, Any] = {"kubernetes": sys}
    keep_out(("kubernetes", "pykube"), loaded)
    assert loaded == {"kubernetes": sys, "pykube": None}
