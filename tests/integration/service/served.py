"""`authz-service` as a real process on a loopback port, configured with known secret
values, for the tests that talk to it the way clients do (schemathesis' requests, raw
sockets) and then read everything it logged: the referral/statistics stand-in beside it.

Every response body a test saw goes into `Served.bodies`, so a test can prove that no
configured secret ever left the process (`leaked`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from devenv import procs

from .conftest import PREVIOUS_SECRET, SECRET, Env, service_env

BIN = Path(sys.executable).parent
HACK = Path(__file__).resolve().parents[3] / "hack"
# Known values, so their absence from logs and bodies can be checked. The database password
# is only put in the URL: the local PostgreSQL trusts loopback, so it is set and harmless.
DB_PASSWORD = "db-pass-5d1f0c7e9a2b"
REDIS_PASSWORD = "redis-pass-8c3e1a9f4b6d"


@dataclass
class Served:
    base_url: str
    log_path: Path
    proc: subprocess.Popen[bytes]
    stub_url: str
    secrets: tuple[str, ...]
    bodies: list[bytes] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def leaked(self) -> list[str]:
        """Which configured secrets appear in the log or in any recorded response body."""
        texts = [self.log_path.read_bytes(), *self.bodies]
        return [s for s in self.secrets if any(s.encode() in t for t in texts)]


def _wait_http(url: str, proc: subprocess.Popen[bytes], within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        assert proc.poll() is None, f"{proc.args!r} exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {within}s"
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _redis_server(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """A private Redis that requires REDIS_PASSWORD (the shared one has no password)."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder), "--requirepass", REDIS_PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_port(port: int, proc: subprocess.Popen[bytes], within: float) -> None:
    deadline = time.monotonic() + within
    while not procs.port_open(port):
        assert proc.poll() is None, f"{proc.args!r} exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"port {port} did not open within {within}s"
        time.sleep(0.05)


@contextlib.contextmanager
def served(devenv: Env, database_url: str, folder: Path,
           extra: dict[str, str] | None = None, ready: str = "/health") -> Iterator[Served]:
    """The service (one worker, relay and consumer on, as deployed) on a free loopback
    port, with a private password-protected Redis and the referral/statistics stand-in."""
    folder.mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen[bytes]] = []
    try:
        redis_port, stub_port, port = procs.free_port(), procs.free_port(), procs.free_port()
        redis = _redis_server(folder / "redis", redis_port)
        started.append(redis)
        stub = subprocess.Popen(
            [str(BIN / "python"), "-m", "devenv.stubs", "--port", str(stub_port)],
            env={**os.environ, "PYTHONPATH": str(HACK)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(stub)
        _wait_port(redis_port, redis, 15)
        stub_url = f"http://127.0.0.1:{stub_port}"
        _wait_http(f"{stub_url}/health", stub, 30)
        parts = urlsplit(database_url)
        user = parts.username or "postgres"
        db_url = parts._replace(
            netloc=f"{user}:{DB_PASSWORD}@{parts.hostname}:{parts.port or 5432}").geturl()
        env = {**os.environ, **service_env(devenv, db_url), "PORT": str(port),
               "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_port),
               "REDIS_PASSWORD": REDIS_PASSWORD, "WEB_CONCURRENCY": "1",
               "REFERRAL_SERVICE_URL": stub_url, "STATISTICS_SERVICE_URL": stub_url,
               # topics of its own (the broker creates them): thousands of generated
               # events must not reach anyone else's consumer
               "KAFKA_EVENTS_TOPIC": f"attacks-events-{folder.name}-{port}",
               "KAFKA_IDENTITY_TOPIC": f"attacks-identity-{folder.name}-{port}",
               **(extra or {})}
        log_path = folder / "service.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen([str(BIN / "authz-service"), "serve"], env=env,
                                    stdout=log_file, stderr=subprocess.STDOUT)
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + ready, proc, 60)
        yield Served(base, log_path, proc, stub_url,
                     secrets=(SECRET, PREVIOUS_SECRET, DB_PASSWORD, REDIS_PASSWORD))
    finally:
        for proc in reversed(started):
            _stop(proc)


def no_secret_left(service: Served) -> None:
    """After the process stopped: its whole log and every body the module's requests got
    hold none of the configured secrets, and no request ended in a 500. Checked when the
    module's fixture ends, so whatever order (or worker) ran the tests, all are covered;
    a failure here shows as an error of the module's last test."""
    assert service.bodies, "no request reached the service"
    assert service.leaked() == []
    log = service.log()
    assert "unhandled error" not in log
    assert '"status": 500' not in log
    assert "Traceback" not in log
