"""The operator scale benchmark's pure parts: the layout of N resources over namespaces,
what each side applies, when an object counts as ready, and the summaries printed. Plain
data in, plain data out (tests/unit/bench/test_scale_model.py)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from authz_operator import metrics, resources
from authz_operator.spec import API_VERSION, KIND, parse_spec
from authz_operator.workload import JobState, job_state, rollout_state
from benchmarks import audit
from devenv import cluster

Obj = dict[str, Any]
Key = tuple[str, str]          # (namespace, name)
IMAGE = "registry.example/authorization-service:1.4.0"
SECRET = "scale-secrets"  # noqa: S105 - a Secret's name



# ---------------------------------------------------------------------------------------------
# pure: layout, what is applied, readiness, summaries


def namespace_count(n: int) -> int:
    """N resources spread over N/10 namespaces (at least one)."""
    return max(1, n // 10)


def layout(prefix: str, n: int) -> list[Key]:
    """(namespace, name) of each of the N resources: svc-<i> round-robin over
    `<prefix>-<k>` namespaces."""
    count = namespace_count(n)
    return [(f"{prefix}-{i % count}", f"svc-{i}") for i in range(n)]


def idle_default(n: int) -> int:
    """Seconds of the idle window: the issue's 10 minutes at 1,000 resources, less below."""
    return 600 if n >= 1000 else 120 if n >= 100 else 30


def resource_spec(replicas: int, migrations: bool = True) -> Obj:
    """The spec every benchmark resource has: the image, the seed's required references
    (pods run nothing on kwok: no database is needed), `replicas` pods without autoscaling
    (so a PodDisruptionBudget exists when replicas > 1), no Ingress, a migration Job unless
    `migrations` is off; its pods placed on kwok's fake nodes like any team would place
    them (a resource without pods has no placement: it runs on a CRD without those
    fields too)."""
    spec: Obj = {
        "image": IMAGE, "replicas": replicas, "imagePullSecrets": [],
        "autoscaling": {"enabled": False}, "ingress": {"enabled": False},
        "database": {"urlSecretRef": {"name": SECRET, "key": "database-url"}},
        "jwt": {"secretRef": {"name": SECRET, "key": "jwt-secret"}},
        "redis": {"host": "redis-master.redis.svc.cluster.local"},
        "kafka": {"brokers": ["kafka-0.kafka.svc.cluster.local:9092"]},
    }
    if not migrations:
        spec["migrations"] = {"enabled": False}
    if makes_pods(spec):
        spec.update(json.loads(json.dumps(cluster.ON_FAKE_NODES)))
    return spec


def makes_pods(spec: Obj) -> bool:
    parsed = parse_spec(spec)
    return parsed.replicas > 0 or parsed.migrations.enabled


def resource(key: Key, spec: Obj) -> Obj:
    namespace, name = key
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def rendered_children(key: Key, spec: Obj, secret_versions: dict[str, str]) -> list[Obj]:
    """What the operator would make for one resource, from its own builders: the children
    (those that exist for this spec) and the first migration Job (when migrations are on),
    without owner references (no resource owns them: the garbage collector would delete
    them)."""
    parsed = parse_spec(spec)
    owner = resources.Owner(name=key[1], namespace=key[0], uid="")
    target = resources.target_from_spec(parsed, secret_versions)
    objs = [o for o in resources.desired_children(parsed, owner, target).values()
            if o is not None]
    if parsed.migrations.enabled:
        objs.append(resources.desired_migration_job(parsed, owner, target, revision=1))
    for obj in objs:
        del obj["metadata"]["ownerReferences"]
    return objs


def as_list(objs: Sequence[Obj]) -> str:
    """One JSON document for `kubectl apply -f -` (a List: far quicker to write and read
    than thousands of YAML documents)."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)})


def chunks(objs: Sequence[Obj], parts: int) -> list[list[Obj]]:
    """`objs` for `parts` kubectl processes: whole namespaces to each, in order, sizes as
    even as whole namespaces allow (one process: everything, in order)."""
    if parts <= 1:
        return [list(objs)]
    by_namespace: dict[str, list[Obj]] = {}
    for obj in objs:
        by_namespace.setdefault(obj["metadata"]["namespace"], []).append(obj)
    out: list[list[Obj]] = [[] for _ in range(min(parts, len(by_namespace)))]
    for i, group in enumerate(by_namespace.values()):
        out[i % len(out)].extend(group)
    return out


def resource_ready(obj: Obj) -> bool:
    status = obj.get("status") or {}
    return status.get("phase") == "Ready" and int(status.get("observedGeneration", 0)) >= int(
        obj["metadata"].get("generation", 1))


def deployment_ready(obj: Obj) -> bool:
    return rollout_state(obj).complete


def job_ready(obj: Obj) -> bool:
    return job_state(obj) is JobState.SUCCEEDED


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); with a handful of tries p99 is the largest."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


@dataclass
class Traffic:
    """The operator's requests in one window, from the audit log."""

    requests: list[audit.Request] = field(default_factory=list)

    @property
    def writes(self) -> list[audit.Request]:
        return audit.writes(self.requests)

    def per_resource(self, n: int) -> list[tuple[str, float]]:
        """(verb, requests per resource), most first."""
        return [(verb, count / n) for verb, count in audit.by_verb(self.requests).most_common()]

    def top(self, limit: int = 12) -> list[tuple[str, str, int]]:
        return [(verb, res, count) for (verb, res), count
                in audit.by_verb_and_resource(self.requests).most_common(limit)]


@dataclass
class SizeResult:
    n: int
    namespaces: int
    b_apply: float = 0.0         # kubectl apply of the children returned
    b_ready: float = 0.0         # ... all Deployments available and Jobs complete
    a_apply: float = 0.0         # kubectl apply of the resources returned
    a_ready: float = 0.0         # ... all Ready
    a_median: float = 0.0        # median time to Ready of one resource
    rss_start: float = 0.0
    rss_peak: float = 0.0
    rss_end: float = 0.0
    converge: Traffic | None = None
    idle: Traffic | None = None
    idle_seconds: float = 0.0
    spec_change: list[float] = field(default_factory=list)
    deleted_child: list[float] = field(default_factory=list)
    b_cpu: dict[str, float] = field(default_factory=dict)   # CPU seconds, B's apply to ready
    a_cpu: dict[str, float] = field(default_factory=dict)   # ... A's apply to all Ready
    heap_file: str = ""          # --heap: the operator's heap report at the end of the size
    heap: list[str] = field(default_factory=list)   # ... its first lines
    wakes: dict[str, Wakes] = field(default_factory=dict)   # by handler, at all Ready (A)
    round: int = 1               # --rounds: which pair of sides of this size
    a_first: bool = False        # ... side A ran before side B in it

    @property
    def ratio(self) -> float:
        return self.a_ready / self.b_ready if self.b_ready else float("nan")


@dataclass(frozen=True)
class Wakes:
    """What one kopf handler woke during side A's convergence: reconciles it started, its
    events folded into a reconcile already waiting (wakeups.py), and its events that woke
    nothing, the child being as the operator knew it (news.py)."""
    reconciles: float = 0.0
    coalesced: float = 0.0
    not_news: float = 0.0


COUNTERS = {f"{counter.name}_total": field_name for counter, field_name in (
    (metrics.RECONCILES, "reconciles"), (metrics.COALESCED, "coalesced"),
    (metrics.NOT_NEWS, "not_news"))}


def wakes_by_handler(exposition: str) -> dict[str, Wakes]:
    """Sum the operator's counters of reconciles and of the events that did not start one
    (its /metrics text) by the handler that received them."""
    sums: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            field_name = COUNTERS.get(sample.name)
            if field_name is not None:
                counts = sums.setdefault(sample.labels["handler"], {})
                counts[field_name] = counts.get(field_name, 0.0) + sample.value
    return {h: Wakes(**counts) for h, counts in sorted(sums.items())}


def wakes_line(r: SizeResult) -> str:
    if not r.wakes:
        return f"N={r.n}: the operator's reconciles were not counted (no metrics scraped)"
    total = sum(w.reconciles for w in r.wakes.values())
    return (f"N={r.n}: reconciles per resource until all Ready, {total / r.n:.2f} in all, by "
            "the handler that woke them (its events folded into a waiting one; its events "
            "that were not news): " + ", ".join(
                f"{h} {w.reconciles / r.n:.2f} ({w.coalesced / r.n:.2f}; "
                f"{w.not_news / r.n:.2f})" for h, w in r.wakes.items()))


def _pcts(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{percentile(values, 50):.2f} / {percentile(values, 99):.2f} s"


def summary_table(results: Sequence[SizeResult]) -> list[str]:
    rows = [
        "| resources | namespaces | kubectl apply, children (B) | B ready | kubectl apply, "
        "resources (A) | A all Ready | A/B | per resource (A) | operator RSS start / peak "
        "/ end | operator writes in idle window | spec change acted on p50 / p99 | deleted "
        "child back p50 / p99 |",
        "| " + " | ".join(["---"] * 12) + " |",
    ]
    for r in results:
        idle = "no audit log" if r.idle is None else \
            f"{len(r.idle.writes)} in {r.idle_seconds:.0f} s"
        rows.append(
            f"| {r.n} | {r.namespaces} | {r.b_apply:.1f} s | {r.b_ready:.1f} s | "
            f"{r.a_apply:.1f} s | {r.a_ready:.1f} s | {r.ratio:.2f} | "
            f"{r.a_ready / r.n:.3f} s | {r.rss_start:.0f} / {r.rss_peak:.0f} / "
            f"{r.rss_end:.0f} MiB | {idle} | {_pcts(r.spec_change)} | "
            f"{_pcts(r.deleted_child)} |")
    return rows


def rounds_lines(results: Sequence[SizeResult]) -> list[str]:
    """For each size measured in more than one round: each round's A/B (which side went
    first) and their median, the figure to read when side B alone varies between runs."""
    lines = []
    for n in dict.fromkeys(r.n for r in results):
        rounds = [r for r in results if r.n == n and r.b_ready and r.a_ready]
        if len(rounds) < 2:
            continue
        each = ", ".join(f"{r.ratio:.2f} ({'A' if r.a_first else 'B'} first)" for r in rounds)
        lines.append(f"N={n}: A/B by round {each}; median "
                     f"{statistics.median(r.ratio for r in rounds):.2f}")
    return lines


def traffic_tables(r: SizeResult) -> list[str]:
    if r.converge is None:
        return [wakes_line(r), f"N={r.n}: no audit log, requests not counted"]
    lines = [wakes_line(r), f"N={r.n}: the operator's requests during convergence "
             f"({len(r.converge.requests)} in all, {len(r.converge.requests) / r.n:.1f} "
             "per resource), per resource by verb: " + ", ".join(
                 f"{verb} {per:.2f}" for verb, per in r.converge.per_resource(r.n)),
             "", "| verb | resource | requests |", "| --- | --- | --- |"]
    lines += [f"| {verb} | {res} | {count} |" for verb, res, count in r.converge.top()]
    if r.idle is not None and r.idle.writes:
        lines += ["", f"N={r.n}: writes in the idle window:"]
        lines += [f"  {w.verb} {w.resource} {w.namespace}/{w.name} ({w.code})"
                  for w in r.idle.writes[:20]]
    return lines


MACHINE = "the machine, every CPU"   # cpu_seconds' key for the busy time of all CPUs
OPERATOR = "authz-operator"           # ... for the benchmark's operator process (side A)


def cpu_used(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds spent between two `cpu_seconds` readings, for the names in both."""
    return {name: after[name] - before[name] for name in before if name in after}


def cpu_table(r: SizeResult, cores: int) -> list[str]:
    """Where the CPU went on each side: each measured process's seconds from its side's
    apply to all ready, and the machine's busy share of what its cores could give."""
    if not r.a_cpu and not r.b_cpu:
        return []
    names = [n for n in dict.fromkeys([*r.b_cpu, *r.a_cpu]) if n != MACHINE]
    rows = [f"N={r.n}: CPU seconds from each side's apply to all ready (B {r.b_ready:.0f} s, "
            f"A {r.a_ready:.0f} s; {cores} cores)", "",
            "| process | B | A | A - B |", "| --- | --- | --- | --- |"]

    def cell(side: Mapping[str, float], name: str) -> str:
        return f"{side[name]:.1f}" if name in side else "-"

    for name in [*names, MACHINE]:
        extra = f"{r.a_cpu.get(name, 0.0) - r.b_cpu.get(name, 0.0):+.1f}"
        rows.append(f"| {name} | {cell(r.b_cpu, name)} | {cell(r.a_cpu, name)} | {extra} |")
    for side, seconds, used in (("B", r.b_ready, r.b_cpu), ("A", r.a_ready, r.a_cpu)):
        if seconds and MACHINE in used:
            rows.append(f"{side}: the machine busy {used[MACHINE] / (seconds * cores):.0%} "
                        "of its cores' time")
    return rows


def heap_lines(r: SizeResult) -> list[str]:
    """With --heap: the head of the operator's heap report, under the size's results."""
    if not r.heap_file:
        return []
    if not r.heap:
        return [f"N={r.n}: no heap report in {r.heap_file} (the operator's log says why)"]
    return [f"N={r.n}: the operator's heap at the end of the size ({r.heap_file}):", "",
            *(f"    {line}" if line else "" for line in r.heap)]


def run_labels(environ: Mapping[str, str], heap: bool) -> list[str]:
    """What in this run's setting changes the operator's memory or pace: MALLOC_ARENA_MAX
    and AUTHZ_MALLOC_TRIM_SECONDS (the operator inherits them), and --heap's tracing."""
    out = [f"Allocator: {name}={environ[name]} (the operator inherits it)"
           for name in ("MALLOC_ARENA_MAX", "AUTHZ_MALLOC_TRIM_SECONDS") if name in environ]
    if heap:
        out.append("Heap: the operator traced its allocations (PYTHONTRACEMALLOC=1, --heap): "
                   "slower, and with tracemalloc's own memory in its RSS; for the memory "
                   "split, not for the times or the ratio")
    return out
