"""The operator scale benchmark's steps for one size: side B (`kubectl apply` of the
children the operator would make, until all are ready), side A (the operator: apply of the
resources until all are Ready, the idle window, spec changes and deleted children), each
timed from watches, with the operator's RSS and its requests from the audit log."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from authz_operator import resources
from authz_operator.labels import MANAGED_SELECTOR
from authz_operator.spec import API_VERSION, PLURAL
from benchmarks import audit
from benchmarks.scale_cluster import ScaleCluster
from benchmarks.scale_model import (
    MACHINE,
    OPERATOR,
    Key,
    SizeResult,
    Traffic,
    cpu_used,
    deployment_ready,
    job_ready,
    layout,
    rendered_children,
    resource,
    resource_ready,
    wakes_by_handler,
)
from benchmarks.scale_watch import (
    RssSampler,
    Tracker,
    ask_heap_report,
    cpu_seconds,
    heap_head,
)
from devenv import cluster

LOG_LEVELS = ("info", "debug")   # a spec change: the ConfigMap's log-level, then a rollout
# The processes both sides wait on, whose CPU time is counted (state.json's names)
CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok")
# A side starts on a quiet machine: the previous side's namespaces are gone when
# delete_namespaces returns, but the garbage collector and the controllers still work on
# them for a while, and whichever side came next paid for it (issue 11's rounds).
QUIET_CORES = 0.25     # busy cores (of all processes) under which the machine is quiet
QUIET_WINDOW = 3.0     # seconds each reading spans
QUIET_MAX = 180.0      # a side waits no longer than this


def _round(result: SizeResult) -> str:
    """A later round's own names (namespaces, logs): nothing of an earlier one is reused."""
    return "" if result.round == 1 else f"-r{result.round}"


class Bench(ScaleCluster):
    """The cluster of one run, and what is measured on it for each size."""

    def cpu_now(self, operator: int | None = None) -> dict[str, float]:
        pids = {name: self.st.pids.get(name) for name in CONTROL_PLANE}
        if operator is not None:
            pids[OPERATOR] = operator
        return cpu_seconds(pids)

    def quiet(self, side: str, n: int) -> None:
        """Wait until the machine is quiet (QUIET_CORES), and say how long that took."""
        started = time.monotonic()
        busy = float("nan")
        while time.monotonic() - started < QUIET_MAX:
            before = cpu_seconds({})[MACHINE]
            time.sleep(QUIET_WINDOW)
            busy = (cpu_seconds({})[MACHINE] - before) / QUIET_WINDOW
            if busy < QUIET_CORES:
                break
        print(f"[scale] N={n} {side}: the machine quiet after {time.monotonic() - started:.0f} s "
              f"({busy:.2f} cores busy)", file=sys.stderr)

    def side_b(self, n: int, result: SizeResult) -> None:
        self.quiet("B", n)
        keys = layout(f"{self.prefix}-n{n}{_round(result)}-b", n)
        namespaces = sorted({k[0] for k in keys})
        self.make_namespaces(namespaces)
        versions = {ns: self.secret_versions(ns) for ns in namespaces}
        children = [o for key in keys
                    for o in rendered_children(key, self.spec, versions[key[0]])]
        n_jobs = sum(1 for o in children if o["kind"] == "Job")
        inside = set(namespaces).__contains__
        selector = MANAGED_SELECTOR
        with Tracker(self.st.kubeconfig, "/apis/apps/v1/deployments", inside,
                     deployment_ready, selector) as deps, \
                Tracker(self.st.kubeconfig, "/apis/batch/v1/jobs", inside, job_ready,
                        selector) as jobs:
            cpu0, started = self.cpu_now(), time.monotonic()
            self.apply(children)
            result.b_apply = time.monotonic() - started
            timeout = 600 + 2 * n
            deps.wait(lambda: len(deps.done_at) >= n, timeout, f"N={n}: B's Deployments")
            jobs.wait(lambda: len(jobs.done_at) >= n_jobs, timeout, f"N={n}: B's Jobs")
            result.b_ready = max([*deps.done_at.values(), *jobs.done_at.values()]) - started
            result.b_cpu = cpu_used(cpu0, self.cpu_now())
        print(f"[scale] N={n} B: applied in {result.b_apply:.1f} s, ready in "
              f"{result.b_ready:.1f} s; deleting its namespaces", file=sys.stderr)
        self.delete_namespaces(namespaces)

    def side_a(self, n: int, kubeconfig: Path, idle_seconds: float, tries: int,
               result: SizeResult) -> None:
        self.quiet("A", n)
        prefix = f"{self.prefix}-n{n}{_round(result)}-a"
        keys = layout(prefix, n)
        namespaces = sorted({k[0] for k in keys})
        self.make_namespaces(namespaces)
        inside = set(namespaces).__contains__
        path = f"/apis/{API_VERSION}/{PLURAL}"
        selector = MANAGED_SELECTOR
        log = self.work / f"operator-n{n}{_round(result)}.log"
        heap = self.work / f"heap-{n}{_round(result)}.txt" if self.heap else None
        try:
            with self.operator(kubeconfig, f"{prefix}-*", log, heap) as pid, \
                    Tracker(self.st.kubeconfig, path, inside, resource_ready) as crs, \
                    Tracker(self.st.kubeconfig, "/api/v1/configmaps", inside,
                            selector=selector) as cms, \
                    Tracker(self.st.kubeconfig, "/api/v1/services", inside,
                            selector=selector) as svcs:
                rss = RssSampler(pid)
                result.rss_start = rss.samples[0]
                cpu0, wall0, started = self.cpu_now(pid), time.time(), time.monotonic()
                self.apply([resource(k, self.spec) for k in keys])
                result.a_apply = time.monotonic() - started
                crs.wait(lambda: len(crs.done_at) >= n, 600 + 2 * n, f"N={n}: A all Ready")
                result.a_cpu = cpu_used(cpu0, self.cpu_now(pid))
                result.wakes = wakes_by_handler(self.operator_metrics())
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
                if heap is not None:   # after the RSS is read: the snapshot takes memory
                    ask_heap_report(pid, heap)
        finally:
            self.delete_namespaces(namespaces)
        if heap is not None:   # (one that took longer was written before the operator stopped)
            result.heap_file, result.heap = str(heap), heap_head(heap)
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
