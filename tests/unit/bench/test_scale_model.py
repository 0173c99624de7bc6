"""The scale benchmark's pure parts: where resources go, what side B applies (the operator's
own builders), what counts as ready, and the summaries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from authz_operator import metrics, resources
from authz_operator.spec import parse_spec
from benchmarks import audit
from benchmarks import scale_model as scale
from devenv import cluster


def test_resources_spread_over_a_tenth_as_many_namespaces() -> None:
    assert scale.layout("p", 1) == [("p-0", "svc-0")]
    assert scale.layout("p", 3) == [("p-0", "svc-0"), ("p-0", "svc-1"), ("p-0", "svc-2")]
    keys = scale.layout("p", 1000)
    assert len(set(keys)) == 1000
    per_namespace: dict[str, int] = {}
    for namespace, _ in keys:
        per_namespace[namespace] = per_namespace.get(namespace, 0) + 1
    assert len(per_namespace) == 100
    assert set(per_namespace.values()) == {10}
    assert scale.namespace_count(25) == 2


def test_the_idle_window_is_ten_minutes_at_a_thousand() -> None:
    assert [scale.idle_default(n) for n in (1, 10, 100, 1000)] == [30, 30, 120, 600]


def test_every_resource_is_placed_on_kwoks_nodes_by_its_own_spec() -> None:
    spec = parse_spec(scale.resource_spec(2))
    assert spec.placement.pod_fields() == cluster.ON_FAKE_NODES
    assert spec.migrations.placement == spec.placement
    assert (spec.replicas, spec.autoscaling.enabled, spec.ingress.enabled) == (2, False, False)
    assert spec.image_pull_secrets == ()


def test_side_b_applies_what_the_operator_would_make_without_owners() -> None:
    key = ("scale-x-n10-b-0", "svc-3")
    versions = {scale.SECRET: "17"}
    objs = scale.rendered_children(key, scale.resource_spec(2), versions)
    assert [o["kind"] for o in objs] == ["ServiceAccount", "ConfigMap", "Service",
                                         "Deployment", "PodDisruptionBudget", "Job"]
    spec = parse_spec(scale.resource_spec(2))
    owner = resources.Owner(name="svc-3", namespace="scale-x-n10-b-0", uid="")
    target = resources.target_from_spec(spec, versions)
    built: list[Any] = [*resources.desired_children(spec, owner, target).values(),
                        resources.desired_migration_job(spec, owner, target, revision=1)]
    expected = [o for o in built if o is not None]
    for obj in expected:
        del obj["metadata"]["ownerReferences"]
    assert objs == expected
    job = objs[-1]
    assert job["metadata"]["name"] == "svc-3-migrate-1"
    assert job["metadata"]["labels"][resources.LABEL_MIGRATION] == "up"   # kwok's stage
    for obj in (objs[3], job):
        pod = obj["spec"]["template"]["spec"]
        assert (pod["nodeSelector"], pod["tolerations"]) == (
            cluster.ON_FAKE_NODES["nodeSelector"], cluster.ON_FAKE_NODES["tolerations"])


def test_one_replica_has_no_disruption_budget() -> None:
    objs = scale.rendered_children(("n", "s"), scale.resource_spec(1), {scale.SECRET: "1"})
    assert "PodDisruptionBudget" not in [o["kind"] for o in objs]


def test_applied_as_one_list() -> None:
    doc = json.loads(scale.as_list([scale.resource(("ns", "a"), {"image": "x:1"})]))
    assert doc["kind"] == "List"
    assert doc["items"] == [{"apiVersion": "rwadurian.io/v1alpha1",
                             "kind": "AuthorizationService",
                             "metadata": {"name": "a", "namespace": "ns"},
                             "spec": {"image": "x:1"}}]


def test_readiness_is_read_as_the_operator_reads_it() -> None:
    def cr(phase: str, observed: int) -> dict[str, Any]:
        return {"metadata": {"generation": 2},
                "status": {"phase": phase, "observedGeneration": observed}}

    assert scale.resource_ready(cr("Ready", 2))
    assert not scale.resource_ready(cr("Ready", 1))      # an older spec was Ready
    assert not scale.resource_ready(cr("Migrating", 2))
    dep = {"metadata": {"generation": 1}, "spec": {"replicas": 2},
           "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                      "readyReplicas": 2, "availableReplicas": 2}}
    assert scale.deployment_ready(dep)
    assert not scale.deployment_ready({**dep, "status": {**dep["status"],
                                                         "availableReplicas": 1}})
    done = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert scale.job_ready(done)
    assert not scale.job_ready({"status": {}})
    assert not scale.job_ready({"status": {"conditions": [{"type": "Failed",
                                                          "status": "True"}]}})


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([3.0], 50, 3.0), ([3.0], 99, 3.0),
    ([1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0), ([1.0, 2.0, 3.0, 4.0, 5.0], 99, 5.0),
    ([float(i) for i in range(1, 101)], 99, 99.0), ([float(i) for i in range(1, 101)], 50, 50.0),
])
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert scale.percentile(values, q) == expected


def request(verb: str, resource: str, i: int) -> audit.Request:
    return audit.Request(audit_id=str(i), user="u", verb=verb, resource=resource,
                         namespace="ns", name="n", code=200, received=0.0)


def test_the_summary_rows() -> None:
    converge = scale.Traffic([request("get", "deployments", i) for i in range(30)]
                             + [request("patch", "deployments", 100 + i) for i in range(10)])
    idle = scale.Traffic([request("list", "pods", 200)])
    result = scale.SizeResult(n=10, namespaces=1, b_apply=1.0, b_ready=4.0, a_apply=0.5,
                              a_ready=6.0, rss_start=60, rss_peak=80.4, rss_end=75,
                              converge=converge, idle=idle, idle_seconds=30.2,
                              spec_change=[0.5, 0.25, 1.0], deleted_child=[0.1])
    assert result.ratio == 1.5
    header, rule, row = scale.summary_table([result])
    assert header.count("|") == rule.count("|") == row.count("|")
    assert row == ("| 10 | 1 | 1.0 s | 4.0 s | 0.5 s | 6.0 s | 1.50 | 0.600 s | 60 / 80 / 75 "
                   "MiB | 0 in 30 s | 0.50 / 1.00 s | 0.10 / 0.10 s |")
    assert converge.per_resource(10) == [("get", 3.0), ("patch", 1.0)]
    tables = scale.traffic_tables(result)
    assert tables[0] == "N=10: the operator's reconciles were not counted (no metrics scraped)"
    assert tables[1].endswith("per resource by verb: get 3.00, patch 1.00")
    assert "| get | deployments | 30 |" in tables
    assert "no audit log" in scale.summary_table([scale.SizeResult(n=1, namespaces=1)])[2]


def test_without_migrations_or_pods_nothing_is_placed_or_migrated() -> None:
    spec = scale.resource_spec(0, migrations=False)
    assert not scale.makes_pods(spec)
    assert "nodeSelector" not in spec
    assert "tolerations" not in spec
    assert scale.makes_pods(scale.resource_spec(0))
    assert scale.makes_pods(scale.resource_spec(1, migrations=False))
    objs = scale.rendered_children(("n", "s"), spec, {scale.SECRET: "1"})
    assert [o["kind"] for o in objs] == ["ServiceAccount", "ConfigMap", "Service", "Deployment"]


def test_parallel_applies_get_whole_namespaces() -> None:
    objs = [scale.resource((f"ns-{i % 3}", f"svc-{i}"), {}) for i in range(7)]
    [one] = scale.chunks(objs, 1)
    assert one == objs
    parts = scale.chunks(objs, 2)
    assert [[o["metadata"]["name"] for o in p] for p in parts] == [
        ["svc-0", "svc-3", "svc-6", "svc-2", "svc-5"], ["svc-1", "svc-4"]]
    assert len(scale.chunks(objs, 10)) == 3      # never more processes than namespaces


def test_the_heap_report_head_under_a_size() -> None:
    assert scale.heap_lines(scale.SizeResult(n=10, namespaces=1)) == []
    result = scale.SizeResult(n=10, namespaces=1, heap_file="/r/heap-10.txt",
                              heap=["RSS 80.0 MiB", "", "By package (top 1 of 1):"])
    assert scale.heap_lines(result) == [
        "N=10: the operator's heap at the end of the size (/r/heap-10.txt):", "",
        "    RSS 80.0 MiB", "", "    By package (top 1 of 1):"]
    late = scale.SizeResult(n=10, namespaces=1, heap_file="/r/heap-10.txt")
    assert scale.heap_lines(late) == [
        "N=10: no heap report in /r/heap-10.txt (the operator's log says why)"]


def test_a_run_says_what_changes_the_operators_memory_or_pace() -> None:
    assert scale.run_labels({"PATH": "/bin"}, heap=False) == []
    assert scale.run_labels({"MALLOC_ARENA_MAX": "2"}, heap=False) == [
        "Allocator: MALLOC_ARENA_MAX=2 (the operator inherits it)"]
    assert scale.run_labels({"AUTHZ_MALLOC_TRIM_SECONDS": "0"}, heap=False) == [
        "Allocator: AUTHZ_MALLOC_TRIM_SECONDS=0 (the operator inherits it)"]
    [heap] = scale.run_labels({}, heap=True)
    assert heap.startswith("Heap: the operator traced its allocations (PYTHONTRACEMALLOC=1")
    assert "not for the times or the ratio" in heap


def test_cpu_used_is_the_difference_for_processes_read_both_times() -> None:
    before = {"etcd": 10.0, "kwok": 2.0, scale.MACHINE: 100.0}
    after = {"etcd": 14.5, scale.MACHINE: 160.0}   # kwok gone by the second reading
    assert scale.cpu_used(before, after) == {"etcd": 4.5, scale.MACHINE: 60.0}


def test_the_cpu_table_sets_each_process_side_by_side_with_the_machines_share() -> None:
    r = scale.SizeResult(n=10, namespaces=1, b_ready=20.0, a_ready=40.0,
                         b_cpu={"etcd": 4.0, scale.MACHINE: 30.0},
                         a_cpu={"etcd": 6.0, scale.OPERATOR: 12.5, scale.MACHINE: 72.0})
    table = scale.cpu_table(r, cores=2)
    assert "| etcd | 4.0 | 6.0 | +2.0 |" in table
    assert f"| {scale.OPERATOR} | - | 12.5 | +12.5 |" in table
    assert table.index(f"| {scale.MACHINE} | 30.0 | 72.0 | +42.0 |") > table.index(
        f"| {scale.OPERATOR} | - | 12.5 | +12.5 |")
    assert table[-2:] == ["B: the machine busy 75% of its cores' time",
                          "A: the machine busy 90% of its cores' time"]
    assert scale.cpu_table(scale.SizeResult(n=1, namespaces=1), cores=2) == []


def test_reconciles_are_summed_by_the_handler_that_woke_them_from_the_operators_metrics(
) -> None:
    def now() -> dict[str, scale.Wakes]:   # the operator's registry, other tests' series too
        return scale.wakes_by_handler(metrics.generate().decode())

    before = now()
    for name in ("bench-a", "bench-b"):
        metrics.reconciled("bench-ns", name, "reconcile", 0.1, 1, {}, {}, {}, [])
        metrics.reconciled("bench-ns", name, "child-deployments", 0.1, 0, {}, {}, {}, [])
        metrics.coalesced("bench-ns", name, "child-deployments")
    metrics.reconcile_failed("bench-ns", "bench-a", "child-deployments", 0.1)
    metrics.coalesced("bench-ns", "bench-a", "child-pods")
    metrics.not_news("child-pods")
    try:
        after = now()
    finally:
        for name in ("bench-a", "bench-b"):
            metrics.forget("bench-ns", name)
    none = scale.Wakes()
    added = {h: (w.reconciles - before.get(h, none).reconciles,
                 w.coalesced - before.get(h, none).coalesced,
                 w.not_news - before.get(h, none).not_news)
             for h, w in after.items()}
    assert {h: a for h, a in added.items() if a != (0, 0, 0)} == {
        "reconcile": (2, 0, 0), "child-deployments": (3, 2, 0),   # a failed one ran too
        "child-pods": (0, 1, 1)}
    result = scale.SizeResult(n=2, namespaces=1, wakes={
        "child-deployments": scale.Wakes(3, 2, 4), "reconcile": scale.Wakes(2, 0)})
    assert scale.wakes_line(result) == (
        "N=2: reconciles per resource until all Ready, 2.50 in all, by the handler that woke "
        "them (its events folded into a waiting one; its events that were not news): "
        "child-deployments 1.50 (1.00; 2.00), reconcile 1.00 (0.00; 0.00)")


def test_rounds_print_each_ratio_and_their_median() -> None:
    def run(n: int, round_: int, a_ready: float, b_ready: float) -> scale.SizeResult:
        return scale.SizeResult(n=n, namespaces=1, round=round_, a_first=round_ % 2 == 0,
                                a_ready=a_ready, b_ready=b_ready)

    results = [run(10, 1, 5.0, 4.0), run(1000, 1, 130.0, 100.0), run(1000, 2, 150.0, 100.0),
               run(1000, 3, 120.0, 100.0), run(1000, 4, 0.0, 100.0)]   # round 4 stopped
    assert scale.rounds_lines(results) == [
        "N=1000: A/B by round 1.30 (B first), 1.50 (A first), 1.20 (B first); median 1.30"]
