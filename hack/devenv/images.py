"""What the harness runs for a container of our image (pure; no I/O but path checks).

The cluster has no container runtime, so for `authorization-service:<tag>` (any registry
prefix) the pod runner runs the container's command from this checkout. A tag's suffix
injects a failure (documented in docs/development.md):

- `-unready`: the serving process never answers its readiness probe;
- `-crash`: the serving process exits 1 at once;
- `-badmigration`: migrations include one that fails half-way (so it must roll back).

A tag may also bring extra migrations, as a newer image would: `hack/images/<tag>/migrations`
(the tag without its failure suffix) is laid over the repo's `migrations/`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devenv import paths

IMAGE_RE = re.compile(r"^(?:.+/)?authorization-service:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]*)$")
FAILURES = ("unready", "crash", "badmigration")
IMAGES_DIR = paths.REPO / "hack" / "images"
DEFAULT_COMMAND = ("authz-service", "serve")


@dataclass(frozen=True)
class ImageRun:
    """How to run one container of our image."""

    tag: str
    base_tag: str
    failure: str | None
    argv: tuple[str, ...]
    extra_migrations: tuple[Path, ...]

    @property
    def is_migration(self) -> bool:
        return "migrate" in self.argv


def is_ours(image: str) -> bool:
    return IMAGE_RE.match(image) is not None


def parse(image: str, command: Sequence[str] | None, args: Sequence[str] | None) -> ImageRun:
    match = IMAGE_RE.match(image)
    if match is None:
        raise ValueError(f"not our image: {image!r}")
    tag = match.group("tag")
    failure = next((f for f in FAILURES if tag.endswith(f"-{f}")), None)
    base_tag = tag[: -len(failure) - 1] if failure else tag
    argv = tuple(command or DEFAULT_COMMAND[:1]) + tuple(args or (() if command else
                                                                   DEFAULT_COMMAND[1:]))
    extra: list[Path] = []
    tag_dir = IMAGES_DIR / base_tag / "migrations"
    if tag_dir.is_dir():
        extra.append(tag_dir)
    if failure == "badmigration":
        extra.append(IMAGES_DIR / "_badmigration" / "migrations")
    return ImageRun(tag, base_tag, failure, argv, tuple(extra))


def resolve_argv(run: ImageRun) -> list[str]:
    """The local command line: our console scripts come from the repo's virtualenv, and the
    injected serving failures replace the server with a process that misbehaves."""
    if not run.is_migration and run.failure == "crash":
        return [sys.executable, "-c", "import sys; print('injected crash'); sys.exit(1)"]
    if not run.is_migration and run.failure == "unready":
        return [sys.executable, "-c",
                "import signal; print('injected: never ready', flush=True); signal.pause()"]
    first = run.argv[0]
    local = paths.VENV_BIN / first
    return [str(local) if local.exists() else first, *run.argv[1:]]


def merged_migrations(run: ImageRun, into: Path) -> Path | None:
    """A folder with the repo's migrations plus the tag's extra ones (links), or None when
    the image has the repo's migrations only."""
    if not run.extra_migrations:
        return None
    into.mkdir(parents=True, exist_ok=True)
    for folder in (paths.REPO / "migrations", *run.extra_migrations):
        for f in sorted(folder.iterdir()):
            target = into / f.name
            if not target.exists():
                target.symlink_to(f)
    return into


# -- real images (devenv.imagebuild) ---------------------------------------------------------

# The names pods know our images by: the sample's and the tests' registry, never pulled (the
# images are imported into the node's containerd; imagePullPolicy IfNotPresent finds them).
REPOSITORIES = ("registry.example/authorization-service",)
# The operator image as manifests/base/kustomization.yaml names it (`kubectl apply -k`).
OPERATOR_IMAGE = "registry.example/authz-operator:0.1.0"
# Every tag the sample and the tests run; each is the service image or a thin variant of it.
TEST_TAGS = ("1.4.0", "1.4.1", "1.5.0", "1.6.0", "1.4.0-unready", "1.4.0-crash",
             "1.4.1-badmigration", "1.5.0-unready")
SERVE_FAILURES = {
    "crash": 'echo "injected crash" >&2; exit 1',
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
