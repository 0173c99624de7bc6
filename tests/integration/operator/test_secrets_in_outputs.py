"""Secrets (issue 12): no configured secret value (the JWT secret and the previous one, the
database URL's password, the Redis password) ever appears in anything a person or a log
collector reads. One full journey (create, a crashing rollout rolled back automatically,
an upgrade with a migration; an operator process of our own, real pods on the node, a Redis
of the test's own that really requires its password), then a grep of every output: the
operator's log, every Event of the namespace, the resource with its status and annotations,
every other object of the namespace but the Secret, the logs of every pod (service and Job
pods, crashed ones' previous runs too), the service's health and error bodies, and the
plugin's output (its error included). Each value is looked for as it is and base64-encoded.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest

from authz_operator.kube import Kube
from devenv import netns, paths, procs
from tests.conftest import DevEnv

from .helpers import NAME, OperatorProcess, phase_is, resource_stream, until
from .test_migrations import V1, V2, service_cr
from .test_operator_faults import CRASH, World

pytestmark = [pytest.mark.cluster, pytest.mark.servers]

SECRET = "authz-secrets"
KINDS = ("authorizationservices", "deployments", "replicasets", "pods", "jobs", "configmaps",
         "services", "serviceaccounts", "poddisruptionbudgets", "horizontalpodautoscalers",
         "events")


class PrivateRedis:
    """A redis-server of the test's own that requires a password, on the node's IP (where
    pods reach it), stopped by its pid."""

    def __init__(self, password: str, base: Path) -> None:
        self.port = procs.free_port()
        base.mkdir(parents=True, exist_ok=True)
        with (base / "redis.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
                 "--bind", netns.NODE_IP, "--requirepass", password, "--save", "",
                 "--appendonly", "no", "--dir", str(base)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while not procs.port_open(self.port, netns.NODE_IP):
            assert self.proc.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server not listening"
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def distinctive() -> dict[str, str]:
    """Values no output could contain by chance."""
    return {k: f"{k}-{secrets.token_hex(16)}" for k in ("jwtcur", "jwtprev", "dbpw", "redispw")}


@pytest.fixture
def values() -> dict[str, str]:
    return distinctive()


@pytest.fixture
def redis(values: dict[str, str]) -> Iterator[PrivateRedis]:
    server = PrivateRedis(values["redispw"], paths.RUN / "private" / f"r{secrets.token_hex(4)}")
    yield server
    server.stop()


def with_password(url: str, password: str) -> str:
    """The database URL with a password (the local server trusts the pod network, so it
    is not checked, but the service reads it and must keep it to itself)."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
                          ).geturl()


def test_no_secret_value_appears_in_any_output(
        crd: None, kube: Kube, api: Any, devenv: DevEnv, namespace: str, database: str,
        kubectl: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path,
        values: dict[str, str], redis: PrivateRedis) -> None:
    url = with_password(database, values["dbpw"])
    kube.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": SECRET, "namespace": namespace},
                "stringData": {"jwt": values["jwtcur"], "jwt-previous": values["jwtprev"],
                               "database-url": url, "redis-password": values["redispw"]}})
    refs = {"jwt": {"secretRef": {"name": SECRET, "key": "jwt"},
                    "previousSecretRef": {"name": SECRET, "key": "jwt-previous"}},
            "database": {"urlSecretRef": {"name": SECRET, "key": "database-url"}},
            "redis": {"host": netns.NODE_IP, "port": redis.port,
                      "passwordSecretRef": {"name": SECRET, "key": "redis-password"}}}
    op = OperatorProcess(namespace, devenv.kubeconfig, tmp_path / "operator.log")
    op.start()
    world = World(kube, api, devenv, namespace, database, op)
    try:
        outputs = journey(world, refs, values)
    finally:
        op.stop()
    outputs["operator log"] = op.output()
    outputs.update(namespace_objects(kubectl, namespace))
    outputs.update(pod_logs(kubectl, namespace))

    # The grep can find them: the Secret itself holds every value, and every output we grep
    # is really there.
    held = json.loads(kubectl("get", "secret", SECRET, "-n", namespace, "-o", "json").stdout)
    decoded = " ".join(base64.b64decode(v).decode() for v in held["data"].values())
    assert [k for k, v in values.items() if v not in decoded] == []
    logged = [k for k, v in outputs.items() if k.startswith("logs of pod") and v.strip()]
    assert outputs["operator log"].strip()
    assert any("-migrate-" in k for k in logged)
    assert any("-migrate-" not in k for k in logged)
    needles = {**values, "database-url": url}   # base64 of the whole URL too
    leaks = [(what, key) for what, text in outputs.items() for key, value in needles.items()
             if value in text or base64.b64encode(value.encode()).decode() in text]
    assert leaks == [], leaks


def journey(world: World, refs: dict[str, Any], values: dict[str, str]) -> dict[str, str]:
    """Create; a crashing rollout rolled back; an upgrade with a migration; then ask the
    service and the plugin. Returns what the service and the plugin answered."""
    ns = world.namespace

    def stream() -> Generator[dict[str, dict[str, Any]], None, None]:
        return resource_stream(world.api, ns, 150)

    def apply(image: str) -> None:
        # a crash is found without the progress deadline; a busy node may need more than 15 s
        body = service_cr(world.devenv, ns, image, rollout={
            "progressDeadlineSeconds": 120, "autoRollback": True, "revisionHistoryLimit": 10})
        body["spec"].update(refs)
        world.kube.apply(body)
    apply(V1)
    until("Ready on 1.4.0", stream(), lambda o: phase_is("Ready")(o) and o["status"].get(
        "image") == V1)
    apply(CRASH)
    until("rolled back", stream(), lambda o: any(
        c["type"] == "Degraded" and c.get("reason") == "RolledBack"
        for c in (o.get("status") or {}).get("conditions") or []))
    apply(V2)
    until("Ready on 1.5.0", stream(), lambda o: phase_is("Ready")(o) and o["status"].get(
        "image") == V2)
    out = service_answers(world, values)
    for args in (("status", NAME), ("history", NAME), ("rollback", NAME, "--to-revision", "99")):
        done = world.plugin(*args)
        out[f"kubectl authz {' '.join(args)}"] = done.stdout + done.stderr
    assert "99" in out[f"kubectl authz rollback {NAME} --to-revision 99"]
    return out


def service_answers(world: World, values: dict[str, str]) -> dict[str, str]:
    """Health (Redis up proves the password was passed on) and error bodies: a token signed
    with the wrong secret, a good one (the previous secret's) asking for what is not there."""
    # a ready pod's own address: the Service's endpoints may lag right after a rollout
    serving = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=server"
    pod = next(p for p in world.kube.list("Pod", world.namespace, serving)
               if not p["metadata"].get("deletionTimestamp") and any(
                   c["type"] == "Ready" and c["status"] == "True"
                   for c in p["status"].get("conditions") or []))
    port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    base = f"http://{pod['status']['podIP']}:{port}"
    claims = {"sub": "secrets-test", "roles": ["admin"], "exp": int(time.time()) + 300}
    wrong = jwt.encode(claims, "not-the-secret-" + secrets.token_hex(16), algorithm="HS256")
    good = jwt.encode(claims, values["jwtprev"], algorithm="HS256")
    out: dict[str, str] = {}
    health = get(f"{base}/health")
    assert json.loads(health)["details"]["redis"]["status"] == "up", health
    out["GET /health"] = health
    missing = "00000000-0000-4000-8000-000000000000"
    for what, token, path in (("wrong secret", wrong, "/api/v1/authorizations?userId=u"),
                              ("malformed", "not-a-jwt", "/api/v1/authorizations?userId=u"),
                              ("unknown id", good, f"/api/v1/authorizations/{missing}")):
        out[f"GET {path} ({what})"] = get(base + path, token)
    return out


def get(url: str, token: str | None = None) -> str:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                 if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        with exc:
            return f"{exc.code} {exc.read().decode()}"


def namespace_objects(kubectl: Callable[..., subprocess.CompletedProcess[str]],
                      namespace: str) -> dict[str, str]:
    """Every object of the namespace but the Secrets, as the API server returns them."""
    return {f"kubectl get {kind}": kubectl("get", kind, "-n", namespace, "-o", "json").stdout
            for kind in KINDS}


def pod_logs(kubectl: Callable[..., subprocess.CompletedProcess[str]],
             namespace: str) -> dict[str, str]:
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    out: dict[str, str] = {}
    for pod in pods:
        name = pod["metadata"]["name"]
        out[f"logs of pod {name}"] = kubectl("logs", name, "-n", namespace,
                                             "--all-containers", check=False).stdout
        if any(cs.get("restartCount") for cs in pod["status"].get("containerStatuses") or []):
            out[f"previous logs of pod {name}"] = kubectl(
                "logs", name, "-n", namespace, "--all-containers", "--previous",
                check=False).stdout
    return out
