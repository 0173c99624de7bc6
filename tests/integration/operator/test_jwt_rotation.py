"""JWT secret rotation end to end: the operator wires `spec.jwt.previousSecretRef` into the
pods, and the service (a container of our image on the real node) accepts tokens signed with
either the current or the previous secret, and no other."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import jwt

from authz_operator.kube import Kube
from tests.conftest import DevEnv

from .conftest import wait_for
from .helpers import NAME, secret
from .inprocess import Operator
from .test_migrations import V1, _ready, service_cr

SERVICE_PODS = f"app.kubernetes.io/instance={NAME},!rwadurian.io/migration"
# HS256 keys of at least 32 bytes (PyJWT warns below that, and warnings are errors here).
NEW, OLD, OTHER = ("n" * 32 + "-new-secret", "o" * 32 + "-old-secret", "x" * 32 + "-other")


def _status_code(base: str, signing_secret: str) -> int:
    now = int(time.time())
    token = jwt.encode({"sub": "rotation-admin", "roles": ["admin"], "iat": now,
                        "exp": now + 300}, signing_secret, algorithm="HS256")
    req = urllib.request.Request(f"{base}/api/v1/authorizations?userId=someone",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            json.load(resp)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_tokens_signed_with_the_previous_secret_are_accepted(
        operator: Operator, kube: Kube, devenv: DevEnv, namespace: str, database: str) -> None:
    kube.apply(secret(namespace, data={"database-url": database, "jwt-secret": NEW}))
    kube.apply(secret(namespace, name="jwt-old", data={"value": OLD}))
    kube.apply(service_cr(devenv, namespace, V1, jwt={
        "secretRef": {"name": "authorization-secrets", "key": "jwt-secret"},
        "previousSecretRef": {"name": "jwt-old", "key": "value"}}))
    wait_for("Ready", lambda: _ready(kube, namespace, V1), timeout=120)
    [pod] = kube.list("Pod", namespace, SERVICE_PODS)
    base = f"http://{pod['status']['podIP']}:3002"   # pods are reachable in the namespace
    assert _status_code(base, NEW) == 200
    assert _status_code(base, OLD) == 200
    assert _status_code(base, OTHER) == 401
