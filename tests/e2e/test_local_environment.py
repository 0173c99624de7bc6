"""What `./hack/up` promises a newcomer: `.local/env.sh` with every variable, the sample
resource Ready (reconciled by the operator running in the cluster), and the sample's service
(containers of our image on the real node, wired by the operator to the sample's Secret)
answering HTTP through its Service with the sample's JWT secret."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.request
from typing import Any

import jwt

from devenv import build, paths
from tests.conftest import DevEnv

EXPECTED = ("KUBECONFIG", "PATH", "DATABASE_URL", "REDIS_URL", "KAFKA_BROKERS", "AUTHZ_URL",
            "JWT_SECRET")


def _env_sh() -> dict[str, str]:
    out = subprocess.run(["bash", "-c", f"set -a; source {paths.ENV_SH}; env -0"],
                         capture_output=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": os.environ["HOME"]})
    pairs = (item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    return dict(pairs)


def _call(url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def test_env_sh_exports_everything_a_newcomer_needs(cluster: DevEnv) -> None:
    env = _env_sh()
    missing = [k for k in EXPECTED if not env.get(k)]
    assert not missing, f".local/env.sh lacks {missing}"
    assert env["PATH"].split(":")[0] == str(paths.CACHE / f"k8s-{build.k8s_version()}")
    kubectl = subprocess.run(
        ["kubectl", "get", "authorizationservices", "-A", "-o", "json"],
        capture_output=True, text=True, check=True, env=env)
    items = [i for i in json.loads(kubectl.stdout)["items"]
             if i["metadata"]["namespace"] == "rwadurian"]   # tests run others meanwhile
    assert items, "no sample AuthorizationService"
    ready = [c for c in items[0]["status"]["conditions"] if c["type"] == "Ready"]
    assert [c["status"] for c in ready] == ["True"], items[0]["status"]


def test_the_sample_service_answers_with_the_sample_jwt_secret() -> None:
    env = _env_sh()
    base = env["AUTHZ_URL"]
    with urllib.request.urlopen(f"{base}/health", timeout=10) as resp:
        assert resp.status == 200
    now = int(time.time())
    admin = jwt.encode({"sub": "e2e-admin", "roles": ["admin"], "iat": now, "exp": now + 300},
                       env["JWT_SECRET"], algorithm="HS256")
    user_id = f"e2e-{secrets.token_hex(4)}"
    created = _call(f"{base}/api/v1/authorizations", admin,
                    {"userId": user_id, "roleType": "COMMUNITY", "regionCode": "440104"})
    assert created["userId"] == user_id
    fetched = _call(f"{base}/api/v1/authorizations/{created['id']}", admin)
    assert fetched["id"] == created["id"]
