"""The container images, checked statically: this machine has no Docker engine, so nothing
here builds an image. We parse both Dockerfiles and check what a build would rely on (every
copied path exists and is in the build context, dependencies come from the hashed lock, the
entry points are our console scripts) and what the image promises (slim Python base, no
compilers in the final stage, non-root uid 1001, read-only-root friendly, the seed's
HEALTHCHECK)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.install import dockerfile as df

ROOT = Path(__file__).resolve().parents[3]
IMAGES = ("Dockerfile.operator", "Dockerfile.service")
COMPILERS = ("gcc", "g++", "cc", "clang", "make", "build-essential", "python3-dev",
             "libpq-dev", "librdkafka-dev", "cargo", "rustc")


def _scripts() -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    scripts: dict[str, str] = pyproject["project"]["scripts"]
    return scripts


@pytest.fixture(params=IMAGES)
def image(request: pytest.FixtureRequest) -> df.Dockerfile:
    return df.parse(ROOT / str(request.param))


def test_every_stage_is_slim_python_311(image: df.Dockerfile) -> None:
    assert len(image.stages) >= 2, "multi-stage: build, then a clean final stage"
    assert {s.image for s in image.stages} == {"python:3.11-slim"}


def test_build_stage_is_named_and_final_stage_copies_only_from_it(image: df.Dockerfile) -> None:
    names = {s.name for s in image.stages[:-1]}
    copies = image.final.all("COPY")
    sources = {c.flags().get("from") for c in copies} - {None}
    assert sources, "the final stage takes the built venv from a build stage"
    assert sources <= names


def test_final_stage_installs_no_compiler(image: df.Dockerfile) -> None:
    for run in image.final.all("RUN"):
        words = run.words()
        assert not {"apt-get", "apt", "apk", "pip", "pip3"} & set(words), run.value
        assert not set(COMPILERS) & set(words), run.value


def test_dependencies_come_from_the_hashed_lock_as_wheels(image: df.Dockerfile) -> None:
    build = image.stages[0]
    pips = [r.value for r in build.all("RUN") if "pip install" in r.value]
    locked = [p for p in pips if "-r requirements.lock" in p]
    assert locked, "runtime dependencies must be installed from requirements.lock"
    for command in pips:
        for part in command.split("&&"):
            if "pip install" not in part:
                continue
            if "-r " in part:
                assert "--require-hashes" in part, part
                assert "--only-binary=:all:" in part, part
            else:  # our own wheel, built in this stage: it may not pull anything in
                assert "--no-deps" in part, part


def test_user_is_1001_and_declared_before_the_entry_point(image: df.Dockerfile) -> None:
    user = image.final.last("USER")
    assert user is not None
    assert user.value == "1001:1001"   # numeric, so runAsNonRoot can verify it
    order = [i.keyword for i in image.final.instructions]
    assert order.index("USER") < max(order.index(k) for k in ("CMD", "ENTRYPOINT") if k in order)
    useradd = [r.value for r in image.final.all("RUN") if "useradd" in r.value]
    assert useradd
    assert "--uid 1001" in useradd[0]
    assert "--gid 1001" in useradd[0]


def test_read_only_root_friendly(image: df.Dockerfile) -> None:
    env = image.final.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == "/tmp"   # the pods mount an emptyDir there
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_every_copied_path_exists_and_is_in_the_build_context(image: df.Dockerfile) -> None:
    ignore = df.IgnoreRules.load(ROOT / ".dockerignore")
    for stage in image.stages:
        for copy in stage.all("COPY") + stage.all("ADD"):
            if "from" in copy.flags():
                continue
            *sources, _dest = copy.words()
            for src in sources:
                path = ROOT / src
                assert path.exists(), f"COPY {src}: not in the repository"
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                kept = [f for f in files if not ignore.excluded(str(f.relative_to(ROOT)))]
                assert kept, f"COPY {src}: excluded from the build context by .dockerignore"


def test_entry_point_is_a_console_script(image: df.Dockerfile) -> None:
    final = image.final
    entry = final.last("ENTRYPOINT")
    cmd = final.last("CMD")
    argv = (entry.words() if entry else []) + (cmd.words() if cmd else [])
    assert argv, "the image must say what it runs"
    assert all(i.exec_form for i in (entry, cmd) if i is not None), "exec form: PID 1 gets signals"
    assert argv[0] in _scripts()


def test_operator_image_runs_the_operator_with_liveness() -> None:
    image = df.parse(ROOT / "Dockerfile.operator")
    entry = image.final.last("ENTRYPOINT")
    cmd = image.final.last("CMD")
    assert entry is not None
    assert entry.words() == ["authz-operator"]
    assert cmd is not None
    assert cmd.words() == ["--liveness=http://0.0.0.0:8080/healthz"]
    assert _scripts()["authz-operator"] == "authz_operator.main:main"


def test_service_image_serves_and_carries_migrations() -> None:
    image = df.parse(ROOT / "Dockerfile.service")
    cmd = image.final.last("CMD")
    assert cmd is not None
    assert cmd.words() == ["authz-service", "serve"]
    assert image.final.env()["PORT"] == "3002"
    expose = image.final.last("EXPOSE")
    assert expose is not None
    assert expose.words() == ["3002"]
    copies = [c.words() for c in image.final.all("COPY") if "from" not in c.flags()]
    assert ["migrations/", "/app/migrations/"] in copies   # where `authz-service migrate` looks
    assert sorted((ROOT / "migrations").glob("*.up.sql")), "migrations/ holds the SQL files"


def test_dockerignore_keeps_the_context_small() -> None:
    ignore = df.IgnoreRules.load(ROOT / ".dockerignore")
    for path in (".git/HEAD", ".venv/bin/python", ".local/run/state.json", "tests/conftest.py",
                 "hack/up", "operator/authz_operator/__pycache__/main.cpython-311.pyc",
                 "docs/development.md"):
        assert ignore.excluded(path), path
    for path in ("pyproject.toml", "requirements.lock", "operator/authz_operator/main.py",
                 "service/authz_service/openapi.yaml", "migrations/0001_init.up.sql"):
        assert not ignore.excluded(path), path


# ---------------------------------------------------------------------------------------------
# the service's HEALTHCHECK, as the seed's, and its command really telling health apart


def test_service_healthcheck_matches_the_seed() -> None:
    image = df.parse(ROOT / "Dockerfile.service")
    check = image.final.last("HEALTHCHECK")
    assert check is not None
    assert check.flags() == {"interval": "30s", "timeout": "10s", "start-period": "5s",
                             "retries": "3"}
    exec_form, argv = check.healthcheck_command()
    assert exec_form
    assert "/health'" in argv[-1]
    assert "'3002'" in argv[-1]


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def health_server(request: pytest.FixtureRequest) -> Iterator[int]:
    handler = type("Handler", (_Health,), {"status": request.param})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def _run_healthcheck(port: int) -> int:
    image = df.parse(ROOT / "Dockerfile.service")
    check = image.final.last("HEALTHCHECK")
    assert check is not None
    _, argv = check.healthcheck_command()
    assert argv[0] == "python"
    result = subprocess.run([sys.executable, *argv[1:]], env={"PORT": str(port)},
                            capture_output=True, timeout=30, check=False)
    return result.returncode


@pytest.mark.parametrize(("health_server", "healthy"), [(200, True), (503, False)],
                         indirect=["health_server"])
def test_healthcheck_command_reports_the_service_health(health_server: int,
                                                        healthy: bool) -> None:
    assert (_run_healthcheck(health_server) == 0) is healthy


def test_healthcheck_command_fails_when_nothing_listens() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # bound, not listening: connections are refused
        assert _run_healthcheck(port) != 0
