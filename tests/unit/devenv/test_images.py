"""The harness's reading of our image references and failure-injection tags."""

from __future__ import annotations

import pytest

from devenv import images


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


@pytest.mark.parametrize("image", ["registry.example/authorization-service",
                                   "registry.example/authorization-service-x:1.0",
                                   "busybox:1.36"])
def test_other_images_are_not_test_tags(image: str) -> None:
    with pytest.raises(ValueError, match="not our image"):
        images.parse(image)
