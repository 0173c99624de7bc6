"""The operator scale benchmark's hands on the cluster: kubectl and the admin's API client,
the namespaces it makes and deletes, the operator's identity (a ServiceAccount bound to a
copy of the shipped ClusterRole, a TokenRequest token) and its process, and the clean-up of
all it made. The steps of one size are in scale_steps.py."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import config as k8s_config

from benchmarks import REPO
from benchmarks.scale_model import SECRET, Obj, as_list, chunks
from devenv import paths, procs
from devenv import state as devstate

OPERATOR_SA = "authz-operator"
CLUSTER_ROLE = REPO / "manifests" / "base" / "rbac" / "cluster-role.yaml"
FIELD_MANAGER = "scale-bench"


class ScaleCluster:
    """One run: the admin's client and kubectl, the operator's identity, what to clean up."""

    def __init__(self, st: devstate.State, run_dir: Path, run_id: str, spec: Obj,
                 parallel: int = 1) -> None:
        self.st, self.run_dir, self.run_id = st, run_dir, run_id
        self.spec, self.parallel = spec, parallel
        self.all_namespaces = False
        self.metrics_port = 0   # the benchmark operator's, while it runs
        self.heap = False   # the operator traced, its heap report at the end of each size
        self.kubectl = [str(Path(st.kubectl_dir) / "kubectl"), f"--kubeconfig={st.kubeconfig}"]
        self.api = k8s_config.new_client_from_config(config_file=st.kubeconfig)
        self.prefix = f"scale-{run_id}"
        self.op_namespace = f"{self.prefix}-op"
        self.user = f"system:serviceaccount:{self.op_namespace}:{OPERATOR_SA}"
        # The operator's logs and kubeconfig: in this checkout's .local (gitignored), not
        # in the environment's run folder; the kubeconfig (a token) goes at clean-up.
        self.work = paths.LOCAL / "operator-scale" / self.prefix
        self.work.mkdir(parents=True, exist_ok=True)
        self.made_namespaces: set[str] = set()
        self.cluster_role = f"{self.prefix}-operator"

    # -- plumbing ------------------------------------------------------------------------

    def run(self, *args: str, stdin: str | None = None, timeout: float = 1800) -> str:
        out = subprocess.run([*self.kubectl, *args], input=stdin, capture_output=True,
                             text=True, timeout=timeout, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:3])}: {out.stderr.strip()[-2000:]}")
        return out.stdout

    def apply(self, objs: Sequence[Obj]) -> None:
        """`kubectl apply --server-side` of `objs`: one process, or `parallel` processes
        each given whole namespaces."""
        parts = chunks(objs, self.parallel)
        args = ("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-")
        if len(parts) == 1:
            self.run(*args, stdin=as_list(parts[0]))
            return
        with ThreadPoolExecutor(len(parts)) as pool:
            for done in [pool.submit(self.run, *args, stdin=as_list(p)) for p in parts]:
                done.result()

    def call(self, method: str, path: str, body: Any = None,
             content_type: str = "application/json") -> Obj:
        m, url, headers, data, _ = self.api.param_serialize(
            method=method, resource_path=path, body=body, auth_settings=["BearerToken"],
            header_params={"Accept": "application/json", "Content-Type": content_type})
        resp = self.api.call_api(m, url, header_params=headers, body=data, _request_timeout=60)
        raw = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {raw[:300]!r}")
        return json.loads(raw) if raw else {}

    def make_namespaces(self, names: Sequence[str]) -> None:
        """Namespaces with the Secret every resource references."""
        for name in sorted(set(names)):
            self.made_namespaces.add(name)
            self.call("POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": {
                "app.kubernetes.io/part-of": "operator-scale-bench"}}})
            self.call("POST", f"/api/v1/namespaces/{name}/secrets", {
                "metadata": {"name": SECRET},
                "stringData": {"database-url": "postgresql://scale@nowhere/scale",
                               "jwt-secret": "scale"}})

    def secret_versions(self, namespace: str) -> dict[str, str]:
        secret = self.call("GET", f"/api/v1/namespaces/{namespace}/secrets/{SECRET}")
        return {SECRET: str(secret["metadata"]["resourceVersion"])}

    def delete_namespaces(self, names: Sequence[str], wait: float = 600) -> None:
        """Delete and wait until they are gone (the next side starts on the same cluster)."""
        names = sorted(set(names))
        for name in names:
            with contextlib.suppress(RuntimeError):
                self.call("DELETE", f"/api/v1/namespaces/{name}")
        deadline = time.monotonic() + wait
        left = set(names)
        while left and time.monotonic() < deadline:
            present = {i["metadata"]["name"] for i in self.call(
                "GET", "/api/v1/namespaces?labelSelector=app.kubernetes.io/part-of"
                "%3Doperator-scale-bench")["items"]}
            left &= present
            if left:
                time.sleep(1)
        self.made_namespaces -= set(names) - left
        if left:
            print(f"[scale] still terminating after {wait:.0f} s: {sorted(left)}",
                  file=sys.stderr)

    # -- the operator's identity and process ----------------------------------------------

    def make_identity(self) -> Path:
        """A ServiceAccount bound to a copy of the shipped ClusterRole (same rules, our own
        name: the installed one is not touched) and a kubeconfig with its token: the audit
        log then names every request of this operator process by user."""
        self.made_namespaces.add(self.op_namespace)
        self.call("POST", "/api/v1/namespaces", {"metadata": {"name": self.op_namespace,
                                                               "labels": {
            "app.kubernetes.io/part-of": "operator-scale-bench"}}})
        self.call("POST", f"/api/v1/namespaces/{self.op_namespace}/serviceaccounts",
                  {"metadata": {"name": OPERATOR_SA}})
        role = yaml.safe_load(CLUSTER_ROLE.read_text())
        role["metadata"] = {"name": self.cluster_role}
        self.call("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", role)
        self.call("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "metadata": {"name": self.cluster_role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": self.cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SA,
                          "namespace": self.op_namespace}]})
        token = self.call("POST", f"/api/v1/namespaces/{self.op_namespace}/serviceaccounts/"
                          f"{OPERATOR_SA}/token", {"apiVersion": "authentication.k8s.io/v1",
                                                   "kind": "TokenRequest",
                                                   "spec": {"expirationSeconds": 86400}})
        admin = yaml.safe_load(Path(self.st.kubeconfig).read_text())
        path = self.work / "operator-kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"][:1],
            "users": [{"name": OPERATOR_SA, "user": {"token": token["status"]["token"]}}],
            "contexts": [{"name": OPERATOR_SA, "context": {
                "cluster": admin["clusters"][0]["name"], "user": OPERATOR_SA}}],
            "current-context": OPERATOR_SA}))
        path.chmod(0o600)
        return path

    def delete_identity(self) -> None:
        for kind in ("clusterrolebindings", "clusterroles"):
            with contextlib.suppress(RuntimeError):
                self.call("DELETE", f"/apis/rbac.authorization.k8s.io/v1/{kind}/"
                          f"{self.cluster_role}")

    @contextlib.contextmanager
    def operator(self, kubeconfig: Path, pattern: str, log: Path,
                 heap: Path | None = None) -> Iterator[int]:
        """`authz-operator --standalone` serving the namespaces of `pattern` (kopf then
        watches each of them), or every namespace with one cluster-wide watch per kind
        (`all_namespaces`); its pid. With `heap`: tracing its allocations from the start,
        its heap report written there on SIGUSR2 (authz_operator.heapreport). Its metrics
        are served on loopback for `operator_metrics`."""
        where = "--all-namespaces" if self.all_namespaces else f"--namespace={pattern}"
        port, self.metrics_port = procs.free_port(), procs.free_port()
        env = {k: v for k, v in os.environ.items()
               if k not in ("WATCH_NAMESPACES", "AUTHZ_KUBECONFIG", "PYTHONTRACEMALLOC",
                            "AUTHZ_HEAP_REPORT")}
        env.update(KUBECONFIG=str(kubeconfig), AUTHZ_METRICS_PORT=str(self.metrics_port))
        if heap is not None:
            env.update(PYTHONTRACEMALLOC="1", AUTHZ_HEAP_REPORT=str(heap))
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "authz-operator"), "--standalone",
                 where, f"--liveness=http://127.0.0.1:{port}/healthz"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            procs.wait_until("the operator's liveness endpoint",
                             lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 60,
                             proc.pid, log)
            yield proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def operator_metrics(self) -> str:
        """The running benchmark operator's /metrics text."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as resp:
            return str(resp.read().decode())

    def cleanup(self) -> None:
        if self.made_namespaces:
            self.delete_namespaces(sorted(self.made_namespaces))
        self.delete_identity()
        (self.work / "operator-kubeconfig").unlink(missing_ok=True)
        self.api.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback http
            return bool(resp.status == 200)
    except OSError:
        return False
