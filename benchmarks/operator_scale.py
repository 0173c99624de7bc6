"""The operator at scale (issue 11): N AuthorizationServices on kwok's fake nodes, beside
`kubectl apply` of the same children, with the operator's requests from the audit log.

For each N of `--sizes` (1, 10, 100, 1000), resources spread over max(1, N/10) namespaces,
each with `--replicas` pods and a migration Job, placed on kwok's fake nodes by the
resource's own nodeSelector and tolerations (pods run nothing; kwok marks them Ready and
ends up-migration Jobs' pods with `migrate up`'s termination message):

B. the children the operator would make (its own pure builders, resources.py: ServiceAccount,
   ConfigMap, Service, Deployment, PodDisruptionBudget, the migration Job; no owner
   references), `kubectl apply --server-side` at once into fresh namespaces; time until every
   Deployment is available and every Job complete (as the operator reads them, workload.py).
   Then those namespaces are deleted and gone before side A starts.
A. `authz-operator` as its own process and its own identity (a ServiceAccount bound to a copy
   of the shipped ClusterRole; a TokenRequest token), standalone, serving the pattern of
   this size's namespaces; `kubectl apply --server-side` of the N resources; time until all
   are Ready. Then an idle window (`--idle-seconds`), then `--tries` spec changes and deleted
   children among the N, each timed until the operator acted (the ConfigMap shows the new
   log level; the Service is back).
The operator's RSS is sampled every second (peak and end). Its requests come from the API
server's audit log, by its user name and the time window: per resource by verb during
convergence (A's apply to all Ready), writes during the idle window. Prints the machine and
versions; removes everything it made (namespaces, the ClusterRole and its binding), also on
failure or Ctrl-C. `--plot PATH` draws time and RSS against N.

Usage (inside the environment's network namespace; `./hack/bench operator-scale` does it):
    .venv/bin/python -m benchmarks.operator_scale [--sizes 1,10,100,1000] [--idle-seconds S]
        [--tries 5] [--replicas 2] [--plot docs/benchmarks-operator-scale.png] [--run-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "hack"))

import yaml  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402

from authz_operator import resources  # noqa: E402
from authz_operator.spec import API_VERSION, PLURAL  # noqa: E402
from benchmarks import audit  # noqa: E402
from benchmarks.service_bench import machine  # noqa: E402
from devenv import cluster, paths, procs  # noqa: E402
from devenv import state as devstate  # noqa: E402

OPERATOR_SA = "authz-operator"
CLUSTER_ROLE = REPO / "manifests" / "base" / "rbac" / "cluster-role.yaml"
FIELD_MANAGER = "scale-bench"
LOG_LEVELS = ("info", "debug")   # a spec change: the ConfigMap's log-level, then a rollout


from benchmarks.scale_env import (  # noqa: E402
    cmdline,
    crd_places_pods,
    flag_of,
    in_cluster_operator_serves,
    load_state,
    plot,
    versions,
)
from benchmarks.scale_model import (  # noqa: E402
    SECRET,
    Key,
    Obj,
    SizeResult,
    Traffic,
    as_list,
    chunks,
    deployment_ready,
    idle_default,
    job_ready,
    layout,
    makes_pods,
    namespace_count,
    rendered_children,
    resource,
    resource_ready,
    resource_spec,
    summary_table,
    traffic_tables,
)
from benchmarks.scale_watch import RssSampler, Tracker  # noqa: E402


class Bench:
    """One run: the admin's client and kubectl, the operator's identity, what to clean up."""

    def __init__(self, st: devstate.State, run_dir: Path, run_id: str, spec: Obj,
                 parallel: int = 1) -> None:
        self.st, self.run_dir, self.run_id = st, run_dir, run_id
        self.spec, self.parallel = spec, parallel
        self.all_namespaces = False
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
    def operator(self, kubeconfig: Path, pattern: str, log: Path) -> Iterator[int]:
        """`authz-operator --standalone` serving the namespaces of `pattern` (kopf then
        watches each of them), or every namespace with one cluster-wide watch per kind
        (`all_namespaces`); its pid."""
        where = "--all-namespaces" if self.all_namespaces else f"--namespace={pattern}"
        port = procs.free_port()
        env = {k: v for k, v in os.environ.items()
               if k not in ("WATCH_NAMESPACES", "AUTHZ_METRICS_PORT", "AUTHZ_KUBECONFIG")}
        env["KUBECONFIG"] = str(kubeconfig)
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

    # -- one size --------------------------------------------------------------------------

    def side_b(self, n: int, result: SizeResult) -> None:
        keys = layout(f"{self.prefix}-n{n}-b", n)
        namespaces = sorted({k[0] for k in keys})
        self.make_namespaces(namespaces)
        versions = {ns: self.secret_versions(ns) for ns in namespaces}
        children = [o for key in keys
                    for o in rendered_children(key, self.spec, versions[key[0]])]
        n_jobs = sum(1 for o in children if o["kind"] == "Job")
        inside = set(namespaces).__contains__
        selector = f"app.kubernetes.io/managed-by={resources.MANAGED_BY}"
        with Tracker(self.st.kubeconfig, "/apis/apps/v1/deployments", inside,
                     deployment_ready, selector) as deps, \
                Tracker(self.st.kubeconfig, "/apis/batch/v1/jobs", inside, job_ready,
                        selector) as jobs:
            started = time.monotonic()
            self.apply(children)
            result.b_apply = time.monotonic() - started
            timeout = 600 + 2 * n
            deps.wait(lambda: len(deps.done_at) >= n, timeout, f"N={n}: B's Deployments")
            jobs.wait(lambda: len(jobs.done_at) >= n_jobs, timeout, f"N={n}: B's Jobs")
            result.b_ready = max([*deps.done_at.values(), *jobs.done_at.values()]) - started
        print(f"[scale] N={n} B: applied in {result.b_apply:.1f} s, ready in "
              f"{result.b_ready:.1f} s; deleting its namespaces", file=sys.stderr)
        self.delete_namespaces(namespaces)

    def side_a(self, n: int, kubeconfig: Path, idle_seconds: float, tries: int,
               result: SizeResult) -> None:
        prefix = f"{self.prefix}-n{n}-a"
        keys = layout(prefix, n)
        namespaces = sorted({k[0] for k in keys})
        self.make_namespaces(namespaces)
        inside = set(namespaces).__contains__
        path = f"/apis/{API_VERSION}/{PLURAL}"
        selector = f"app.kubernetes.io/managed-by={resources.MANAGED_BY}"
        log = self.work / f"operator-n{n}.log"
        try:
            with self.operator(kubeconfig, f"{prefix}-*", log) as pid, \
                    Tracker(self.st.kubeconfig, path, inside, resource_ready) as crs, \
                    Tracker(self.st.kubeconfig, "/api/v1/configmaps", inside,
                            selector=selector) as cms, \
                    Tracker(self.st.kubeconfig, "/api/v1/services", inside,
                            selector=selector) as svcs:
                rss = RssSampler(pid)
                result.rss_start = rss.samples[0]
                wall0, started = time.time(), time.monotonic()
                self.apply([resource(k, self.spec) for k in keys])
                result.a_apply = time.monotonic() - started
                crs.wait(lambda: len(crs.done_at) >= n, 600 + 2 * n, f"N={n}: A all Ready")
                times = [t - started for t in crs.done_at.values()]
                result.a_ready, result.a_median = max(times), statistics.median(times)
                wall1 = wall0 + result.a_ready
                print(f"[scale] N={n} A: applied in {result.a_apply:.1f} s, all Ready in "
                      f"{result.a_ready:.1f} s; idle for {idle_seconds:.0f} s",
                      file=sys.stderr)
                idle0 = time.time()
                time.sleep(idle_seconds)
                idle1 = time.time()
                result.idle_seconds = idle1 - idle0
                for i in range(tries):
                    key = keys[(i * 7919) % n]
                    result.spec_change.append(self.change_spec(key, crs, cms, i))
                    key = keys[(i * 104729 + 1) % n]
                    result.deleted_child.append(self.delete_child(key, svcs))
                result.rss_peak, result.rss_end = rss.stop()
        finally:
            self.delete_namespaces(namespaces)
        folder = self.run_dir / cluster.AUDIT_DIR
        if audit.log_files(folder):
            time.sleep(2)   # requests still in flight at the window's end
            converge, idle = audit.windows(audit.read_lines(folder), self.user,
                                           [(wall0, wall1), (idle0, idle1)])
            result.converge, result.idle = Traffic(converge), Traffic(idle)

    def change_spec(self, key: Key, crs: Tracker, cms: Tracker, i: int) -> float:
        """Seconds from a spec change (the log level) to the operator's ConfigMap showing
        it; then wait until the resource is Ready again."""
        namespace, name = key
        level = LOG_LEVELS[(i + 1) % 2]
        current = crs.objects[key]["spec"].get("logLevel", "info")
        if current == level:
            level = LOG_LEVELS[i % 2]
        cm = (namespace, resources.child_names(name).config_map)
        started = time.monotonic()
        patched = self.call(
            "PATCH", f"/apis/{API_VERSION}/namespaces/{namespace}/{PLURAL}/{name}",
            {"spec": {"logLevel": level}}, "application/merge-patch+json")
        generation = int(patched["metadata"]["generation"])
        cms.wait(lambda: (cms.objects.get(cm) or {}).get("data", {}).get("log-level") == level,
                 120, f"{namespace}/{name}: ConfigMap log-level {level}")
        acted = cms.seen_at[cm] - started
        crs.wait(lambda: int(crs.objects[key]["metadata"].get("generation", 0)) >= generation
                 and resource_ready(crs.objects[key]), 300, f"{namespace}/{name} Ready again")
        return acted

    def delete_child(self, key: Key, svcs: Tracker) -> float:
        """Seconds from deleting a resource's Service to the operator's new one."""
        namespace, name = key
        svc = (namespace, resources.child_names(name).service)
        svcs.wait(lambda: svc in svcs.objects, 60, f"{namespace}/{name}: Service")
        old = svcs.objects[svc]["metadata"]["uid"]
        started = time.monotonic()
        self.call("DELETE", f"/api/v1/namespaces/{namespace}/services/{svc[1]}")
        svcs.wait(lambda: svc in svcs.objects and svcs.objects[svc]["metadata"]["uid"] != old,
                  120, f"{namespace}/{name}: Service back")
        return svcs.seen_at[svc] - started

    def cleanup(self) -> None:
        if self.made_namespaces:
            self.delete_namespaces(sorted(self.made_namespaces))
        self.delete_identity()
        (self.work / "operator-kubeconfig").unlink(missing_ok=True)
        self.api.close()


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback http
            return bool(resp.status == 200)
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,1000",
                        help="comma-separated numbers of resources (default 1,10,100,1000)")
    parser.add_argument("--idle-seconds", type=float, default=None,
                        help="idle window (default 600 s at 1,000 resources, less below)")
    parser.add_argument("--tries", type=int, default=5,
                        help="spec changes and deleted children timed per size")
    parser.add_argument("--replicas", type=int, default=2,
                        help="pods per resource (2: a PodDisruptionBudget exists)")
    parser.add_argument("--plot", type=Path, help="write a PNG of time and RSS against N")
    parser.add_argument("--run-dir", type=Path, default=paths.RUN,
                        help="the environment's run folder (state.json, the audit log)")
    parser.add_argument("--sides", default="ab", choices=("ab", "b"),
                        help="b: only kubectl apply of the children (the baseline)")
    parser.add_argument("--apply-parallel", type=int, default=1,
                        help="kubectl processes per apply, each given whole namespaces "
                             "(both sides; default 1)")
    parser.add_argument("--all-namespaces", action="store_true",
                        help="the operator serves every namespace (one watch per kind, as a "
                             "platform team runs it; it then also serves the cluster's "
                             "other resources) instead of this size's namespace pattern "
                             "(one watch per kind and namespace)")
    parser.add_argument("--no-migrations", action="store_true",
                        help="resources without a migration Job (with --replicas 0: no pod "
                             "at all, the operator's own objects only)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    st = load_state(args.run_dir)
    if not procs.alive(st.pids.get("kube-apiserver")) or not procs.alive(st.pids.get("kwok")):
        print("the cluster (with kwok) is not running: ./hack/up first", file=sys.stderr)
        return 2

    def interrupted(signum: int, _: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    spec = resource_spec(args.replicas, migrations=not args.no_migrations)
    bench = Bench(st, args.run_dir, secrets.token_hex(3), spec, args.apply_parallel)
    bench.all_namespaces = args.all_namespaces
    folder = args.run_dir / cluster.AUDIT_DIR
    notes = []
    if not audit.log_files(folder):
        notes.append(f"no audit log in {folder}: requests are not counted (restart the "
                     "environment: ./hack/down && ./hack/up)")
    if flag_of(st.pids.get("kube-controller-manager"), "--kube-api-qps") == "default":
        notes.append("the controller-manager runs at its default 20 requests/s (restart the "
                     "environment for the limits of docs/benchmarks.md)")
    if "pod-migrate-up-complete" not in " ".join(cmdline(st.pids.get("kwok"))):
        notes.append("kwok ends migration pods without migrate's termination message (the "
                     "operator records schema unknown; restart the environment)")
    if "a" in args.sides and in_cluster_operator_serves(bench, f"{bench.prefix}-n1-a-0"):
        notes.append("the in-cluster operator serves scale-* namespaces too (restart the "
                     "environment: hack/cluster/operator leaves them alone): two operators "
                     "act on side A")
    if "a" in args.sides and makes_pods(spec) and not crd_places_pods(bench):
        print("the installed CRD has no spec.tolerations: restart the environment "
              "(./hack/down && ./hack/up applies crds/), or run --sides b", file=sys.stderr)
        return 2
    for note in notes:
        print(f"[scale] NOTE: {note}", file=sys.stderr)
    results: list[SizeResult] = []
    failure, n = "", 0
    version_line = versions(bench)
    try:
        kubeconfig = bench.make_identity() if "a" in args.sides else None
        for n in sizes:
            idle = args.idle_seconds if args.idle_seconds is not None else idle_default(n)
            result = SizeResult(n=n, namespaces=namespace_count(n))
            bench.side_b(n, result)
            if kubeconfig is not None:
                bench.side_a(n, kubeconfig, idle, args.tries, result)
            results.append(result)
            print("\n".join(summary_table([result])[2:]), file=sys.stderr)
    except (Exception, KeyboardInterrupt) as exc:
        # What was measured before is still printed below; this size is not.
        failure = f"stopped at N={n}: {type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        bench.cleanup()
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"Machine: {machine()}")
    print(f"Versions: {version_line}")
    print(f"Control plane: controller-manager --kube-api-qps "
          f"{flag_of(st.pids.get('kube-controller-manager'), '--kube-api-qps')}, scheduler "
          f"{flag_of(st.pids.get('kube-scheduler'), '--kube-api-qps')}; audit log "
          f"{'on' if audit.log_files(folder) else 'off'}; load average at the end "
          f"{os.getloadavg()[0]:.1f}")
    kinds = [o["kind"] for o in rendered_children(("ns", "svc"), spec, {SECRET: "1"})]
    print(f"Each resource: {args.replicas} pods on kwok's fake nodes; children "
          f"{', '.join(kinds)}; kubectl processes per apply: {args.apply_parallel}; one "
          f"operator process as {bench.user}, serving "
          f"{'all namespaces' if args.all_namespaces else 'its size namespaces (a pattern)'}")
    for note in notes:
        print(f"NOTE: {note}")
    if failure:
        print(f"FAILED: {failure}")
    print()
    print("\n".join(summary_table(results)))
    for r in results:
        print()
        print("\n".join(traffic_tables(r)))
    print(f"\nThe operator's logs: {bench.work}")
    if args.plot:
        plot(results, args.plot)
        print(f"Plot: {args.plot}")
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())

