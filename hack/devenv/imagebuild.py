"""Container images built from our own Dockerfiles, with no registry and no Docker engine.

1. A Python base image made from Debian's packages with mmdebstrap (`localhost/authz-python`),
   turned into an image with buildah (`from scratch`, `add`, `commit`).
2. `Dockerfile.service` and `Dockerfile.operator`, unchanged, built with `buildah bud` on
   that base (`--build-arg PYTHON_IMAGE=...`).
3. The failure-injection and test variants (`-unready`, `-crash`, `-badmigration`, the
   1.5.0 and 1.6.0 migrations) as thin images on top of the service image
   (`devenv.images.variant_files`).

Every image is named by a hash of its inputs, so an unchanged tree is never rebuilt: the tag
`dev-<hash>` exists in buildah's storage (`~/.cache/authz-dev/containers`, outside the repo)
and its OCI archive in `~/.cache/authz-dev/images/`. Every buildah call runs in a private
mount namespace of its own, so no mount it makes can outlive it on the host.

Builds need the package registries (pip inside the build), so they run on the host's network,
before anything enters the environment's namespace.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devenv import images, paths

STORAGE = paths.CACHE / "containers"
ARCHIVES = paths.CACHE / "images"
BASE = "localhost/authz-python:3.11-bookworm"
BASE_PACKAGES = ("python3.11", "python3.11-venv", "python-is-python3", "ca-certificates")
SERVICE = "localhost/authorization-service"
OPERATOR = "localhost/authz-operator"
PAUSE = "localhost/pause:catatonit"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# What the Dockerfiles COPY (and .dockerignore lets in): the inputs of both images.
CONTEXT_INPUTS = ("requirements.lock", "requirements-build.lock", "pyproject.toml", "README.md",
                  "operator", "service", "migrations", ".dockerignore")


def _say(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Built:
    """One image: its name in buildah's storage and its OCI archive for containerd."""

    ref: str
    archive: Path


def tree_hash(root: Path, inputs: tuple[str, ...], extra: tuple[str, ...] = ()) -> str:
    """A hash of the files under `inputs` (paths and contents, caches left out) plus `extra`
    strings: the identity of an image's inputs."""
    digest = hashlib.sha256()
    for name in inputs:
        top = root / name
        files = [top] if top.is_file() else sorted(
            f for f in top.rglob("*") if f.is_file() and "__pycache__" not in f.parts
            and not f.name.endswith(".pyc") and ".egg-info" not in str(f))
        for f in files:
            digest.update(str(f.relative_to(root)).encode() + b"\0")
            digest.update(f.read_bytes() + b"\0")
    for value in extra:
        digest.update(value.encode() + b"\0")
    return digest.hexdigest()[:16]


def _buildah(*args: str, cwd: Path | None = None, quiet: bool = True) -> str:
    runroot = paths.RUN / "buildah"
    runroot.mkdir(parents=True, exist_ok=True)
    argv = ["unshare", "--mount", "--propagation", "private",
            "buildah", "--root", str(STORAGE / "storage"), "--runroot", str(runroot),
            "--storage-driver", "overlay", *args]
    proc = subprocess.run(argv, cwd=cwd, text=True, capture_output=quiet)
    if proc.returncode != 0:
        detail = (proc.stdout or "")[-3000:] + (proc.stderr or "")[-3000:] if quiet else ""
        raise RuntimeError(f"buildah {' '.join(args[:2])} failed ({proc.returncode}):\n{detail}")
    return proc.stdout.strip() if quiet else ""


def _exists(ref: str) -> bool:
    try:
        _buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref)
    except RuntimeError:
        return False
    return True


def _archive(ref: str) -> Built:
    """The image as an OCI archive (what containerd imports), written once per tag."""
    ARCHIVES.mkdir(parents=True, exist_ok=True)
    name = ref.split("/", 1)[-1].replace(":", "_").replace("/", "_")
    out = ARCHIVES / f"{name}.tar"
    if not out.exists():
        tmp = out.with_suffix(".partial")
        tmp.unlink(missing_ok=True)
        _buildah("push", "--quiet", ref, f"oci-archive:{tmp}:{ref}")
        tmp.replace(out)
    return Built(ref, out)


def base_image() -> str:
    """Debian bookworm (minbase) with Python 3.11, from this machine's Debian sources."""
    ref = f"{BASE}-{tree_hash(paths.REPO, (), BASE_PACKAGES)}"
    if _exists(ref):
        return ref
    started = time.monotonic()
    _say(f"mmdebstrap bookworm + {', '.join(BASE_PACKAGES)} -> {ref} (about a minute)")
    work = paths.RUN / "imagebuild"
    work.mkdir(parents=True, exist_ok=True)
    tar = work / "base.tar"
    subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}", "--format=tar", "bookworm",
                    str(tar)], check=True)
    container = _buildah("from", "scratch")
    try:
        _buildah("add", container, str(tar), "/")
        _buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                 "/sbin:/bin", "--env", "LANG=C.UTF-8", "--cmd", "python3", container)
        _buildah("commit", "--quiet", container, ref)
    finally:
        _buildah("rm", container)
        tar.unlink(missing_ok=True)
    _say(f"base image built in {time.monotonic() - started:.0f}s")
    return ref


def _bud(dockerfile: Path, ref: str, context: Path, base: str) -> None:
    started = time.monotonic()
    _say(f"buildah bud -f {dockerfile.name} -> {ref}")
    # pip inside the build verifies PyPI with the host's CA bundle (the base has Debian's
    # bundle, which lacks this machine's proxy CA).
    _buildah("bud", "--quiet", "--layers", "--network", "host", "--pull-never",
             "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", "--build-arg", f"PYTHON_IMAGE={base}",
             "-f", str(dockerfile), "-t", ref, str(context))
    _say(f"built {ref} in {time.monotonic() - started:.0f}s")


def project_image(dockerfile: str, repository: str, base: str) -> Built:
    """`Dockerfile.service` or `Dockerfile.operator` built unchanged, named by its inputs."""
    ref = f"{repository}:dev-{tree_hash(paths.REPO, (dockerfile, *CONTEXT_INPUTS), (base,))}"
    if not _exists(ref):
        _bud(paths.REPO / dockerfile, ref, paths.REPO, base)
    return _archive(ref)


def variant_image(service: Built, tag: str) -> Built:
    """A thin image on top of the service image for a test tag (`1.5.0`, `1.4.0-unready`)."""
    run = images.parse(f"{SERVICE}:{tag}")
    files = images.variant_files(service.ref, run)
    if files is None:
        return service
    sources = tuple(str(p.relative_to(paths.REPO)) for p in run.extra_migrations)
    ref = f"{SERVICE}:variant-{tree_hash(paths.REPO, sources, (service.ref, *files.values()))}"
    if not _exists(ref):
        context = paths.RUN / "imagebuild" / ref.rsplit(":", 1)[1]
        shutil.rmtree(context, ignore_errors=True)
        context.mkdir(parents=True)
        for i, folder in enumerate(run.extra_migrations):
            shutil.copytree(folder, context / f"migrations{i}")
        for name, text in files.items():
            (context / name).write_text(text)
            (context / name).chmod(0o755)
        _bud(context / "Containerfile", ref, context, service.ref)
        shutil.rmtree(context, ignore_errors=True)
    return _archive(ref)


def pause_image() -> Built:
    """The pod sandbox image: Debian's static catatonit in an empty image (0.3 MB)."""
    binary = Path("/usr/bin/catatonit")
    ref = f"{PAUSE}-{hashlib.sha256(binary.read_bytes()).hexdigest()[:12]}"
    if not _exists(ref):
        container = _buildah("from", "scratch")
        try:
            _buildah("copy", container, str(binary), "/catatonit")
            _buildah("config", "--entrypoint", '["/catatonit", "-P"]', container)
            _buildah("commit", "--quiet", container, ref)
        finally:
            _buildah("rm", container)
    return _archive(ref)


@dataclass(frozen=True)
class ImageSet:
    """Every image the environment runs, and the names pods know them by."""

    pause: Built
    service: Built
    operator: Built
    tags: dict[str, Built]        # name a pod uses (e.g. registry.example/...:1.5.0) -> image


def to_state(images: ImageSet) -> dict[str, list[str]]:
    """The set as plain data for state.json: built on the host, used inside the namespace."""
    named = {"pause": images.pause, "service": images.service, "operator": images.operator}
    named.update({f"tag:{name}": built for name, built in images.tags.items()})
    return {name: [b.ref, str(b.archive)] for name, b in named.items()}


def from_state(raw: dict[str, list[str]]) -> ImageSet:
    def built(key: str) -> Built:
        ref, archive = raw[key]
        return Built(ref, Path(archive))
    return ImageSet(pause=built("pause"), service=built("service"),
                    operator=built("operator"),
                    tags={k.removeprefix("tag:"): built(k) for k in raw if k.startswith("tag:")})


def prune(keep: ImageSet, base: str) -> None:
    """Forget the images and archives of earlier trees: each edit makes a new set (about
    0.5 GB of images and 1.3 GB of archives), and a cache that only grows fills the disk.
    Layers they shared with the kept set stay, so the next build still finds them."""
    images = (keep.pause, keep.service, keep.operator, *keep.tags.values())
    kept = {base, *(b.ref for b in images)}
    archives = {b.archive for b in images}
    for archive in ARCHIVES.glob("*.tar"):
        if archive not in archives:
            archive.unlink(missing_ok=True)
    listed = _buildah("images", "--format", "{{.Name}}:{{.Tag}}")
    stale = [ref for ref in listed.split()
             if ref.startswith((SERVICE, OPERATOR, BASE, PAUSE)) and ref not in kept
             and ref.rsplit(":", 1)[-1].startswith(("dev-", "variant-", "3.11-", "catatonit-"))]
    if stale:
        _say(f"removing {len(stale)} images of earlier trees")
        for ref in stale:
            with contextlib.suppress(RuntimeError):   # still needed by a kept one: it stays
                _buildah("rmi", ref)


def build_all() -> ImageSet:
    """Build (or find) every image; prints what it builds."""
    base = base_image()
    service = project_image("Dockerfile.service", SERVICE, base)
    operator = project_image("Dockerfile.operator", OPERATOR, base)
    tags: dict[str, Built] = {}
    for tag in images.TEST_TAGS:
        built = variant_image(service, tag)
        for repository in images.REPOSITORIES:
            tags[f"{repository}:{tag}"] = built
    tags[images.OPERATOR_IMAGE] = operator
    everything = ImageSet(pause=pause_image(), service=service, operator=operator, tags=tags)
    prune(everything, base)
    return everything
