"""The test tags of our image and what each one is (pure; no I/O but path checks).

Every tag is an image built by `devenv.imagebuild`: the service image from
`Dockerfile.service`, or a thin variant on top of it. A tag's suffix injects a failure
(documented in docs/development.md):

- `-unready`: `authz-service serve` never answers its probes;
- `-crash`: `authz-service serve` exits 1 at once;
- `-oom`: `authz-service serve` allocates more memory than any limit allows (OOM-killed);
- `-badmigration`: migrations include one that fails half-way (so it must roll back).

A tag may also bring extra migrations, as a newer image would: `hack/images/<tag>/migrations`
(the tag without its failure suffix) is copied into the image's `/app/migrations`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from devenv import paths

IMAGE_RE = re.compile(r"^(?:.+/)?authorization-service:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]*)$")
FAILURES = ("unready", "crash", "oom", "badmigration")
IMAGES_DIR = paths.REPO / "hack" / "images"


@dataclass(frozen=True)
class ImageRun:
    """What a tag of our image is: its base version, injected failure, extra migrations."""

    tag: str
    base_tag: str
    failure: str | None
    extra_migrations: tuple[Path, ...]


def parse(image: str) -> ImageRun:
    match = IMAGE_RE.match(image)
    if match is None:
        raise ValueError(f"not our image: {image!r}")
    tag = match.group("tag")
    failure = next((f for f in FAILURES if tag.endswith(f"-{f}")), None)
    base_tag = tag[: -len(failure) - 1] if failure else tag
    extra: list[Path] = []
    tag_dir = IMAGES_DIR / base_tag / "migrations"
    if tag_dir.is_dir():
        extra.append(tag_dir)
    if failure == "badmigration":
        extra.append(IMAGES_DIR / "_badmigration" / "migrations")
    return ImageRun(tag, base_tag, failure, tuple(extra))


# -- real images (devenv.imagebuild) ---------------------------------------------------------

# The names pods know our images by: the sample's and the tests' registry, never pulled (the
# images are imported into the node's containerd; imagePullPolicy IfNotPresent finds them).
REPOSITORIES = ("registry.example/authorization-service",)
# The operator image as manifests/base/kustomization.yaml names it (`kubectl apply -k`).
OPERATOR_IMAGE = "registry.example/authz-operator:0.1.0"
# Every tag the sample and the tests run; each is the service image or a thin variant of it.
TEST_TAGS = ("1.4.0", "1.4.1", "1.5.0", "1.6.0", "1.4.0-unready", "1.4.0-crash",
             "1.4.0-oom", "1.4.1-badmigration", "1.5.0-unready")
SERVE_FAILURES = {
    "crash": 'echo "injected crash" >&2; exit 1',
    # 4 GiB, touched page by page: more than the seed's (or any test's) memory limit.
    "oom": 'exec /opt/venv/bin/python -c "b = bytearray(4 * 1024 ** 3)"',
    "unready": ('echo "injected: never ready" >&2; exec /opt/venv/bin/python -c '
                '"import signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); '
                'signal.pause()"'),
}
ENTRY_POINT = "/opt/venv/bin/authz-service"


def variant_files(base_ref: str, run: ImageRun) -> dict[str, str] | None:
    """The build context of a test variant on top of the service image (None: the service
    image itself). Extra migrations are copied in as `migrations0/`, `migrations1/`, ...;
    a serving failure replaces the entry point with a script that misbehaves for `serve` and
    runs the real CLI for everything else (so `migrate` still works)."""
    if not run.extra_migrations and run.failure not in SERVE_FAILURES:
        return None
    lines = [f"FROM {base_ref}"]
    lines += [f"COPY migrations{i}/ /app/migrations/" for i in range(len(run.extra_migrations))]
    files: dict[str, str] = {}
    if run.failure in SERVE_FAILURES:
        files["authz-service"] = "\n".join([
            "#!/bin/sh",
            f"# Test image {run.tag}: `serve` misbehaves; every other command is the real CLI.",
            f'if [ "$1" = serve ]; then {SERVE_FAILURES[run.failure]}; fi',
            'exec /opt/venv/bin/python -c "import sys; from authz_service.cli import main; '
            'sys.exit(main())" "$@"', ""])
        lines.append(f"COPY authz-service {ENTRY_POINT}")
    files["Containerfile"] = "\n".join(lines) + "\n"
    return files
