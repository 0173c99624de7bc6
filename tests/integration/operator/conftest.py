"""Fixtures for running the real operator (in-process, see inprocess.py) against the local
API server: the CRD installed, a recorder of every HTTP request the operator sends, the
operator itself confined to the test's namespace, and helpers to wait by polling with
short deadlines."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from devenv import state as devstate

# The client libraries kopf logs in through here (the tests import them) read $KUBECONFIG at
# import: point it at the local cluster before anything imports it.
if devstate.load().kubeconfig:
    os.environ["KUBECONFIG"] = devstate.load().kubeconfig

import aiohttp
import psycopg
import pytest
import urllib3

from authz_operator.kube import Kube
from tests.conftest import DevEnv

from .inprocess import Operator

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "crds" / "authorizationservices.rwadurian.io.yaml"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} (last seen: {last!r})")


def stays(what: str, probe: Callable[[], bool], seconds: float) -> None:
    """`probe` holds for `seconds` (a window in which the wrong thing would have happened)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert probe(), f"no longer true: {what}"
        time.sleep(0.2)


def measured(what: str, value: float, unit: str) -> None:
    """Report a number for the issue note (on the real stderr: pytest captures sys.stderr)."""
    print(f"measured: {what}: {value:.2f} {unit}", file=sys.__stderr__)


@dataclass
class Recorder:
    """Every HTTP request sent from any thread but the test's own (i.e. by the operator,
    through either client: kopf's aiohttp or our kubernetes/urllib3), as (method, url)."""

    main: threading.Thread = field(default_factory=threading.main_thread)
    calls: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, method: str, url: str) -> None:
        if threading.current_thread() is not self.main:
            with self.lock:
                self.calls.append((method.upper(), url))

    def mark(self) -> int:
        with self.lock:
            return len(self.calls)

    def writes_since(self, mark: int) -> list[tuple[str, str]]:
        with self.lock:
            return [c for c in self.calls[mark:] if c[0] not in ("GET", "HEAD", "OPTIONS")]


@pytest.fixture(scope="session")
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    orig_urlopen = urllib3.PoolManager.urlopen
    orig_request = aiohttp.ClientSession._request

    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        rec.record(method, url)
        return orig_urlopen(self, method, url, *args, **kwargs)

    def request(self: Any, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        rec.record(method, str(url))
        return orig_request(self, method, url, *args, **kwargs)

    setattr(urllib3.PoolManager, "urlopen", urlopen)  # noqa: B010 (keep mypy out of it)
    setattr(aiohttp.ClientSession, "_request", request)  # noqa: B010
    yield rec
    setattr(urllib3.PoolManager, "urlopen", orig_urlopen)  # noqa: B010
    setattr(aiohttp.ClientSession, "_request", orig_request)  # noqa: B010


@pytest.fixture(scope="session")
def kubectl(cluster: DevEnv) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, input: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cluster.kubectl or "kubectl", f"--kubeconfig={cluster.kubeconfig}", *args],
            input=input, capture_output=True, text=True, check=check, timeout=60)
    return run


@pytest.fixture(scope="session")
def crd(cluster: DevEnv, kubectl: Callable[..., Any]) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kubectl("wait", "--for=condition=Established", "--timeout=30s",
            "crd/authorizationservices.rwadurian.io")


@pytest.fixture(scope="session")
def kube(cluster: DevEnv) -> Iterator[Kube]:
    """The test's own client (runs in the main thread, so the recorder ignores it)."""
    os.environ["KUBECONFIG"] = cluster.kubeconfig  # kopf and the operator's client read it
    k = Kube.connect(cluster.kubeconfig)
    k.field_manager = "pytest"  # what a user's `kubectl apply --server-side` would be
    yield k
    k.close()


@pytest.fixture
def operator(crd: None, kube: Kube, namespace: str, recorder: Recorder,
             shared_database: str) -> Iterator[Operator]:
    """The real operator, watching only this test's namespace."""
    op = Operator(namespace)
    op.start()
    yield op
    op.stop()


@pytest.fixture
def database(devenv: DevEnv) -> Iterator[str]:
    """A new, empty database for this test; dropped afterwards."""
    name = f"op_{secrets.token_hex(4)}"
    with psycopg.connect(devenv.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield urlsplit(devenv.database_url)._replace(path=f"/{name}").geturl()
    with psycopg.connect(devenv.database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
