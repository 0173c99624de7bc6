"""`kubectl authz ...` through the real kubectl plugin mechanism (kubectl finds
`kubectl-authz` on PATH) against the local API server. No operator watches the test's
namespace: the test plays the operator's part by writing status, children and events, then
checks what the plugin shows and what it writes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from authz_operator.resources import ANN_RETRY, ANN_ROLLBACK_TO
from tests.conftest import DevEnv
from tests.support.kube import api_client

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[3]
GROUP, VERSION, PLURAL = "rwadurian.io", "v1alpha1", "authorizationservices"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def api(cluster: DevEnv) -> Iterator[Any]:
    subprocess.run([cluster.kubectl, f"--kubeconfig={cluster.kubeconfig}", "apply",
                    "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")],
                   check=True, capture_output=True, timeout=60)
    c = api_client(cluster.kubeconfig)
    yield c
    c.close()


@pytest.fixture
def kubectl_authz(cluster: DevEnv, namespace: str) -> Run:
    venv_bin = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig,
           "PATH": f"{Path(cluster.kubectl).parent}:{venv_bin}:{os.environ.get('PATH', '')}"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cluster.kubectl, "authz", *args, "-n", namespace], env=env,
                              capture_output=True, text=True, timeout=60, check=False)
    return run


def _create(api: Any, namespace: str) -> None:
    objects = client.CustomObjectsApi(api)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AuthorizationService",
        "metadata": {"name": "authz", "namespace": namespace},
        "spec": {
            "image": "registry.example/authz-fake:1.4.1",
            "database": {"urlSecretRef": {"name": "s", "key": "database-url"}},
            "redis": {"host": "redis"}, "kafka": {"brokers": ["kafka:9092"]},
            "jwt": {"secretRef": {"name": "s", "key": "jwt-secret"}},
        }})
    history = [
        {"revision": 1, "image": "registry.example/authz-fake:1.4.0", "schemaVersion": "0003",
         "configHash": "aaaaaaaaaaaaaaaa", "outcome": "Deployed",
         "deployedAt": "2026-11-26T10:00:00Z"},
        {"revision": 2, "image": "registry.example/authz-fake:1.4.1", "schemaVersion": "0003",
         "configHash": "bbbbbbbbbbbbbbbb", "outcome": "Deployed",
         "deployedAt": "2026-11-26T11:00:00Z"},
    ]
    objects.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "authz", {
        "status": {"phase": "Ready", "ready": "2/2", "revision": 2, "schemaVersion": "0003",
                   "image": "registry.example/authz-fake:1.4.1", "history": history,
                   "conditions": [{"type": "Ready", "status": "True",
                                   "reason": "RolloutComplete", "message": "2 of 2 available",
                                   "lastTransitionTime": "2026-11-26T11:00:00Z",
                                   "observedGeneration": 1}]}})
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "authz-config"}, "data": {"port": "3002"}})
    cr = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "authz")
    core.create_namespaced_event(namespace, {
        "metadata": {"name": "authz.test1"}, "type": "Normal", "reason": "RolloutComplete",
        "message": "revision 2 serving", "lastTimestamp": "2026-11-26T11:00:00Z",
        "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AuthorizationService",
                           "name": "authz", "namespace": namespace,
                           "uid": cr["metadata"]["uid"]}})


def _get(api: Any, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "authz")
    return obj


def test_missing_resource_is_a_clear_error(api: Any, kubectl_authz: Run, namespace: str) -> None:
    for args in (("status", "authz"), ("history", "authz"), ("rollback", "authz"),
                 ("retry", "authz"), ("pause", "authz")):
        out = kubectl_authz(*args)
        assert out.returncode == 1, args
        assert out.stderr.strip() == (
            f'kubectl-authz: error: AuthorizationService "authz" not found in namespace '
            f'"{namespace}"')


def test_status_and_history(api: Any, kubectl_authz: Run, namespace: str) -> None:
    _create(api, namespace)
    out = kubectl_authz("status", "authz")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"AuthorizationService {namespace}/authz"
    assert lines[1] == "├─ Phase: Ready   Ready: 2/2   Revision: 2   Schema: 0003"
    assert "│  └─ [+] Ready=True RolloutComplete: 2 of 2 available" in out.stdout
    assert "│  ├─ [+] ConfigMap authz-config: 1 keys" in lines
    assert "│  └─ [x] Deployment authz: missing" in lines
    assert lines[-1].endswith("Normal  RolloutComplete (AuthorizationService): revision 2 serving")

    out = kubectl_authz("history", "authz")
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert rows[0].split() == ["REVISION", "IMAGE", "SCHEMA", "CONFIG", "OUTCOME", "DEPLOYED",
                               "MESSAGE"]
    assert rows[1].split()[:2] == ["1", "registry.example/authz-fake:1.4.0"]
    assert rows[2].split()[:2] == ["*", "2"]


def test_rollback_retry_pause_resume_write_what_the_operator_reads(
        api: Any, kubectl_authz: Run, namespace: str) -> None:
    _create(api, namespace)
    out = kubectl_authz("rollback", "authz", "--to-revision", "7")
    assert out.returncode == 1
    assert "revision 7 is not recorded (recorded: 1, 2)" in out.stderr
    assert ANN_ROLLBACK_TO not in (_get(api, namespace)["metadata"].get("annotations") or {})

    out = kubectl_authz("rollback", "authz")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "AuthorizationService authz: rollback to revision 1 requested"
    assert _get(api, namespace)["metadata"]["annotations"][ANN_ROLLBACK_TO] == "1"

    out = kubectl_authz("retry", "authz")
    assert out.returncode == 0, out.stderr
    first = _get(api, namespace)["metadata"]["annotations"][ANN_RETRY]
    assert kubectl_authz("retry", "authz").returncode == 0
    assert _get(api, namespace)["metadata"]["annotations"][ANN_RETRY] != first  # a new request

    generation = _get(api, namespace)["metadata"]["generation"]
    assert kubectl_authz("pause", "authz").returncode == 0
    paused = _get(api, namespace)
    assert paused["spec"]["paused"] is True
    assert paused["metadata"]["generation"] == generation + 1
    out = kubectl_authz("pause", "authz")
    assert out.stdout.strip() == "AuthorizationService authz: already paused"
    assert kubectl_authz("resume", "authz").returncode == 0
    assert _get(api, namespace)["spec"]["paused"] is False
