"""Least privilege, proven against the real API server's RBAC: the operator runs as its
ServiceAccount (a token from the TokenRequest API, `kubectl create token`) with exactly the
RBAC objects that manifests/ ships, and does its whole job; and it is refused what it has no
business doing.

The shipped objects are put into the test's namespace (`retarget`: namespaced objects moved,
cluster-wide RBAC renamed per test) so parallel tests and the local environment's own operator
are not disturbed. The operator is started with `--namespace=<test namespace> --standalone`
(the cluster-wide peering object is shared by everyone, so this test does not join it)."""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devenv import procs
from tests.conftest import DevEnv
from tests.support.kube import api_client, condition, watch_until
from tests.unit.install.manifests import MANIFESTS, NAMESPACED, dump, render, retarget

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "rwadurian.io", "v1alpha1", "authorizationservices"
NAME = "authz"
SA = "authz-operator"
IMAGE = "registry.example/authorization-service:{tag}"   # containers on the real node
# A refusal in the operator's log: kopf's APIForbiddenError, the API's "is forbidden", our
# KubeError ("PATCH /path: 403 ..."). Not a bare "403": log timestamps have milliseconds.
REFUSED = re.compile(r"[Ff]orbidden|status=403|: 403 |'code': 403")


@dataclass
class Installed:
    namespace: str
    admin: Any                 # kubernetes ApiClient as cluster admin
    sa_kubeconfig: Path        # the operator's identity
    sa: Any                    # kubernetes ApiClient as the operator


def _kubectl(cluster: DevEnv, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run([cluster.kubectl, f"--kubeconfig={cluster.kubeconfig}", *args],
                         input=stdin, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
    return out.stdout


def _sa_kubeconfig(cluster: DevEnv, namespace: str, path: Path) -> Path:
    """A kubeconfig with the API server and CA of the admin's, and a TokenRequest token."""
    token = _kubectl(cluster, "create", "token", SA, "-n", namespace, "--duration=1h").strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    cluster_entry = admin["clusters"][0]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster_entry],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": SA, "context": {"cluster": cluster_entry["name"], "user": SA,
                                              "namespace": namespace}}],
        "current-context": SA,
    }))
    return path


def _install(cluster: DevEnv, namespace: str, tmp_path: Path, source: Path) -> Installed:
    objs = [o for o in retarget(render(source), namespace)
            if o["kind"] not in ("Deployment", "PodDisruptionBudget", "Service")]
    _kubectl(cluster, "apply", "--server-side", "--field-manager=authz-install", "-f", "-",
             stdin=dump(objs))
    kubeconfig = _sa_kubeconfig(cluster, namespace, tmp_path / "sa-kubeconfig")
    return Installed(namespace, api_client(cluster.kubeconfig), kubeconfig,
                     api_client(str(kubeconfig)))


def _cleanup_cluster_rbac(cluster: DevEnv, namespace: str) -> None:
    for kind in ("clusterrolebinding", "clusterrole"):
        for name in (f"authz-operator-{namespace}", f"authz-operator-discovery-{namespace}"):
            subprocess.run([cluster.kubectl, f"--kubeconfig={cluster.kubeconfig}", "delete",
                            kind, name, "--ignore-not-found"], capture_output=True, timeout=60,
                           check=False)


def _installed(cluster: DevEnv, namespace: str, tmp_path: Path,
               manifests: Path) -> Iterator[Installed]:
    inst = _install(cluster, namespace, tmp_path, manifests)
    yield inst
    inst.admin.close()
    inst.sa.close()
    _cleanup_cluster_rbac(cluster, namespace)


@pytest.fixture
def cluster_mode(cluster: DevEnv, namespace: str, tmp_path: Path) -> Iterator[Installed]:
    yield from _installed(cluster, namespace, tmp_path, MANIFESTS)


@pytest.fixture
def namespaced_mode(cluster: DevEnv, namespace: str, tmp_path: Path) -> Iterator[Installed]:
    yield from _installed(cluster, namespace, tmp_path, NAMESPACED)


@pytest.fixture
def other_namespace(cluster: DevEnv) -> Iterator[str]:
    api = api_client(cluster.kubeconfig)
    core = client.CoreV1Api(api)
    name = f"t-other-{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"authz-test": "true"}}})
    core.create_namespaced_secret(name, {"metadata": {"name": "not-yours"},
                                         "stringData": {"k": "v"}})
    yield name
    core.delete_namespace(name)
    api.close()


# ---------------------------------------------------------------------------------------------
# what it may not do


def _forbidden(call: Callable[[], Any]) -> bool:
    try:
        call()
    except ApiException as exc:
        return bool(exc.status == 403)
    return False


def test_cluster_mode_cannot_delete_a_namespace_or_write_secrets(
        cluster_mode: Installed, other_namespace: str) -> None:
    core = client.CoreV1Api(cluster_mode.sa)
    assert _forbidden(lambda: core.delete_namespace(other_namespace))
    assert client.CoreV1Api(cluster_mode.admin).read_namespace(other_namespace)
    assert _forbidden(lambda: core.patch_namespaced_secret(
        "not-yours", other_namespace, {"stringData": {"k": "stolen"}}))
    assert _forbidden(lambda: core.create_namespaced_secret(
        cluster_mode.namespace, {"metadata": {"name": "mine"}}))
    assert _forbidden(lambda: client.RbacAuthorizationV1Api(cluster_mode.sa)
                      .list_cluster_role_binding())
    assert _forbidden(lambda: core.create_namespaced_pod(
        cluster_mode.namespace, {"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "busybox"}]}}))


def test_namespaced_mode_cannot_read_secrets_elsewhere(
        namespaced_mode: Installed, other_namespace: str) -> None:
    core = client.CoreV1Api(namespaced_mode.sa)
    assert _forbidden(lambda: core.read_namespaced_secret("not-yours", other_namespace))
    assert _forbidden(lambda: core.list_secret_for_all_namespaces())
    assert _forbidden(lambda: client.AppsV1Api(namespaced_mode.sa)
                      .list_deployment_for_all_namespaces())
    # ... while its own namespace works
    core.list_namespaced_secret(namespaced_mode.namespace)
    client.CustomObjectsApi(namespaced_mode.sa).list_namespaced_custom_object(
        "kopf.dev", "v1", namespaced_mode.namespace, "kopfpeerings")


# ---------------------------------------------------------------------------------------------
# the whole journey as the ServiceAccount


@dataclass
class RunningOperator:
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> str:
        """SIGTERM (kopf stops cleanly), SIGKILL if it hangs; returns the operator's log."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        return self.log.read_text(errors="replace")


def _start_operator(inst: Installed, tmp_path: Path, *extra: str,
                    env: dict[str, str] | None = None) -> RunningOperator:
    log = tmp_path / "operator.log"
    port = procs.free_port()
    environ = {k: v for k, v in os.environ.items()
               if k not in ("AUTHZ_KUBECONFIG", "WATCH_NAMESPACES")}
    environ.update({"KUBECONFIG": str(inst.sa_kubeconfig), **(env or {})})
    exe = Path(sys.executable).parent / "authz-operator"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), *extra, f"--liveness=http://127.0.0.1:{port}/healthz"],
            stdout=out, stderr=subprocess.STDOUT, env=environ, start_new_session=True)
    return RunningOperator(proc, log)


def _secret(inst: Installed, database_url: str) -> None:
    client.CoreV1Api(inst.admin).create_namespaced_secret(inst.namespace, {
        "metadata": {"name": "authorization-secrets"}, "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in {
            "database-url": database_url, "jwt-secret": secrets.token_urlsafe(32),
            "redis-password": ""}.items()}})


def _resource(inst: Installed, devenv: DevEnv, tag: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AuthorizationService",
        "metadata": {"name": NAME, "namespace": inst.namespace},
        "spec": {
            "image": IMAGE.format(tag=tag),
            "replicas": 1,
            "autoscaling": {"enabled": False},
            "ingress": {"enabled": False},
            "imagePullSecrets": [],
            "database": {"urlSecretRef": {"name": "authorization-secrets",
                                          "key": "database-url"}},
            "redis": {"host": devenv.redis_host, "port": devenv.redis_port},
            "kafka": {"brokers": [devenv.kafka_brokers]},
            "jwt": {"secretRef": {"name": "authorization-secrets", "key": "jwt-secret"}},
        },
    }


def _wait_resource(inst: Installed, what: str, predicate: Callable[[dict[str, Any]], bool],
                   timeout: float = 120) -> dict[str, Any]:
    """Poll the resource (every 0.5 s) until `predicate` holds; fail with what was seen."""
    objects = client.CustomObjectsApi(inst.admin)
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = objects.get_namespaced_custom_object(GROUP, VERSION, inst.namespace, PLURAL, NAME)
        if predicate(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; status: {last.get('status')}")


def _ready_at(generation: int) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        st = obj.get("status") or {}
        return (st.get("phase") == "Ready" and st.get("observedGeneration") == generation
                and condition(obj, "Ready") == "True")
    return check


def test_whole_journey_as_the_service_account(
        cluster_mode: Installed, devenv: DevEnv, fresh_database: str, tmp_path: Path) -> None:
    inst = cluster_mode
    op = _start_operator(inst, tmp_path, f"--namespace={inst.namespace}", "--standalone")
    objects = client.CustomObjectsApi(inst.admin)
    try:
        _secret(inst, fresh_database)
        objects.create_namespaced_custom_object(GROUP, VERSION, inst.namespace, PLURAL,
                                                _resource(inst, devenv, "1.4.0"))
        # create -> migrate -> ready
        first = _wait_resource(inst, "Ready after create", _ready_at(1))
        assert condition(first, "Migrated") == "True", first["status"]
        assert first["status"]["revision"] == 1

        # update -> migrate -> ready at revision 2
        objects.patch_namespaced_custom_object(GROUP, VERSION, inst.namespace, PLURAL, NAME,
                                               {"spec": {"image": IMAGE.format(tag="1.4.1")}})
        second = _wait_resource(inst, "Ready after update", _ready_at(2))
        assert second["status"]["image"] == IMAGE.format(tag="1.4.1")
        assert second["status"]["revision"] == 2

        # rollback by hand to revision 1 (what `kubectl authz rollback` writes)
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, inst.namespace, PLURAL, NAME,
            {"metadata": {"annotations": {"rwadurian.io/rollback-to": "1"}}})
        _wait_resource(inst, "rolled back to the 1.4.0 image", lambda o: (
            (o.get("status") or {}).get("image") == IMAGE.format(tag="1.4.0")
            and (o.get("status") or {}).get("phase") == "Ready"))

        # delete -> the children go (owner references)
        objects.delete_namespaced_custom_object(GROUP, VERSION, inst.namespace, PLURAL, NAME)
        watch_until(client.AppsV1Api(inst.admin).list_namespaced_deployment,
                    lambda items: not items, inst.namespace, timeout=60)
    finally:
        log = op.stop()
        print(log[-5000:])
    forbidden = [line for line in log.splitlines() if REFUSED.search(line)]
    assert not forbidden, "the operator was refused something:\n" + "\n".join(forbidden[:20])


def test_namespaced_mode_operator_runs_with_peering(
        namespaced_mode: Installed, devenv: DevEnv, fresh_database: str,
        tmp_path: Path) -> None:
    """WATCH_NAMESPACES as the overlay sets it, kopf's namespaced peering (KopfPeering) as the
    overlay installs it, and only the overlay's Role: the resource gets its children."""
    inst = namespaced_mode
    op = _start_operator(inst, tmp_path, env={"WATCH_NAMESPACES": inst.namespace})
    objects = client.CustomObjectsApi(inst.admin)
    try:
        _secret(inst, fresh_database)
        objects.create_namespaced_custom_object(GROUP, VERSION, inst.namespace, PLURAL,
                                                _resource(inst, devenv, "1.4.0"))
        watch_until(client.AppsV1Api(inst.admin).list_namespaced_deployment,
                    lambda items: any(d["metadata"]["name"] == NAME for d in items),
                    inst.namespace, timeout=60)
        # the replica announced itself in the namespace's peering object
        deadline = time.monotonic() + 30
        peers: dict[str, Any] = {}
        while time.monotonic() < deadline and not peers:
            peering = objects.get_namespaced_custom_object(
                "kopf.dev", "v1", inst.namespace, "kopfpeerings", "default")
            peers = peering.get("status") or {}
            if not peers:
                time.sleep(0.5)
        assert peers, "the operator never wrote its keep-alive into KopfPeering default"
    finally:
        log = op.stop()
        print(log[-5000:])
    forbidden = [line for line in log.splitlines() if REFUSED.search(line)]
    assert not forbidden, "the operator was refused something:\n" + "\n".join(forbidden[:20])
