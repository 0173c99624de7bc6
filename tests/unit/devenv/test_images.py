"""The harness's reading of our image references and failure-injection tags."""

from __future__ import annotations

import pytest

from devenv import images


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


def test_plain_tag_is_the_service_image() -> None:
    assert images.parse("r/authorization-service:1.4.0") == images.ImageRun(
        "1.4.0", "1.4.0", None, ())


@pytest.mark.parametrize("failure", ["unready", "crash"])
def test_serving_failures_keep_the_base_version(failure: str) -> None:
    run = images.parse(f"authorization-service:2.0.0-{failure}")
    assert (run.failure, run.base_tag, run.extra_migrations) == (failure, "2.0.0", ())


def test_badmigration_adds_a_failing_migration() -> None:
    run = images.parse("authorization-service:1.0.0-badmigration")
    assert run.extra_migrations == (images.IMAGES_DIR / "_badmigration" / "migrations",)


def test_a_newer_test_image_brings_its_migrations() -> None:
    run = images.parse("authorization-service:1.5.0-unready")
    assert run.extra_migrations == (images.IMAGES_DIR / "1.5.0" / "migrations",)
    assert {p.name for p in run.extra_migrations[0].iterdir()} >= {"0004_revoked_by.up.sql"}
