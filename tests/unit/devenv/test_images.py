"""The harness's reading of our image references and failure-injection tags."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv import images, paths


@pytest.mark.parametrize(
    ("image", "ours"),
    [
        ("authorization-service:1.4.0", True),
        ("registry.example/authorization-service:1.4.0", True),
        ("registry.example:5000/team/authorization-service:1.4.0-unready", True),
        ("registry.example/authorization-service", False),
        ("registry.example/authorization-service-x:1.0", False),
        ("busybox:1.36", False),
    ],
)
def test_is_ours(image: str, ours: bool) -> None:
    assert images.is_ours(image) is ours


def test_plain_tag_runs_the_container_command() -> None:
    run = images.parse("r/authorization-service:1.4.0", ["authz-service", "serve"], None)
    assert run == images.ImageRun("1.4.0", "1.4.0", None, ("authz-service", "serve"), ())
    assert images.resolve_argv(run) == [str(paths.VENV_BIN / "authz-service"), "serve"]


def test_no_command_means_the_image_default() -> None:
    assert images.parse("authorization-service:1", None, None).argv == images.DEFAULT_COMMAND
    assert images.parse("authorization-service:1", None, ["migrate", "up"]).argv == (
        "authz-service", "migrate", "up")


@pytest.mark.parametrize("failure", ["unready", "crash"])
def test_serving_failures_replace_the_server_but_not_migrations(failure: str) -> None:
    serve = images.parse(f"authorization-service:2.0.0-{failure}", ["authz-service", "serve"],
                         None)
    assert (serve.failure, serve.base_tag) == (failure, "2.0.0")
    assert "authz-service" not in " ".join(images.resolve_argv(serve))
    migrate = images.parse(f"authorization-service:2.0.0-{failure}",
                           ["authz-service", "migrate", "up"], None)
    assert migrate.is_migration
    assert images.resolve_argv(migrate)[1:] == ["migrate", "up"]


def test_badmigration_adds_a_failing_migration(tmp_path: Path) -> None:
    run = images.parse("authorization-service:1.0.0-badmigration",
                       ["authz-service", "migrate", "up"], None)
    assert run.extra_migrations == (images.IMAGES_DIR / "_badmigration" / "migrations",)
    merged = images.merged_migrations(run, tmp_path / "m")
    assert merged is not None
    names = {p.name for p in merged.iterdir()}
    assert {p.name for p in run.extra_migrations[0].iterdir()} <= names
    assert {p.name for p in (paths.REPO / "migrations").iterdir()} <= names


def test_plain_image_keeps_the_repo_migrations(tmp_path: Path) -> None:
    run = images.parse("authorization-service:0.0.1", None, None)
    assert images.merged_migrations(run, tmp_path / "m") is None

