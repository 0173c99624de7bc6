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
failure or Ctrl-C. `--plot PATH` draws time and RSS against N. `--heap` runs the operator
with tracemalloc and prints its heap report (authz_operator/heapreport.py) at each size's end.

Usage (inside the environment's network namespace; `./hack/bench operator-scale` does it):
    .venv/bin/python -m benchmarks.operator_scale [--sizes 1,10,100,1000] [--idle-seconds S]
        [--tries 5] [--replicas 2] [--rounds R] [--plot docs/benchmarks-operator-scale.png]
        [--run-dir DIR] [--heap]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import audit
from benchmarks.scale_env import (
    cmdline,
    crd_places_pods,
    flag_of,
    in_cluster_operator_serves,
    load_state,
    plot,
    versions,
)
from benchmarks.scale_model import (
    SECRET,
    SizeResult,
    cpu_table,
    heap_lines,
    idle_default,
    makes_pods,
    namespace_count,
    rendered_children,
    resource_spec,
    rounds_lines,
    run_labels,
    summary_table,
    traffic_tables,
)
from benchmarks.scale_steps import Bench
from benchmarks.service_bench import machine
from devenv import cluster, paths, procs


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
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each size R times, alternating which side goes first "
                             "(B A, A B, ...), and print each round's A/B and their median: "
                             "side B alone varies by a third between runs on this machine")
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
    parser.add_argument("--heap", action="store_true",
                        help="where the operator's memory goes: it runs with tracemalloc "
                             "(PYTHONTRACEMALLOC=1) and writes a heap report at the end of "
                             "each size (heap-<N>.txt beside its logs; the head is printed "
                             "under the size's results). Tracing slows the operator: --heap "
                             "runs are for the memory split, not for the times or the ratio")
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
    bench.heap = args.heap
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
        for n, round_ in ((n, i) for n in sizes for i in range(1, max(1, args.rounds) + 1)):
            idle = args.idle_seconds if args.idle_seconds is not None else idle_default(n)
            result = SizeResult(n=n, namespaces=namespace_count(n), round=round_,
                                a_first=kubeconfig is not None and round_ % 2 == 0)
            if not result.a_first:
                bench.side_b(n, result)
            if kubeconfig is not None:
                bench.side_a(n, kubeconfig, idle, args.tries, result)
            if result.a_first:
                bench.side_b(n, result)
            results.append(result)
            print("\n".join([*summary_table([result])[2:], *heap_lines(result),
                             *cpu_table(result, os.cpu_count() or 1)]), file=sys.stderr)
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
    for label in run_labels(os.environ, args.heap):
        print(label)
    for note in notes:
        print(f"NOTE: {note}")
    if failure:
        print(f"FAILED: {failure}")
    print()
    print("\n".join(summary_table(results)))
    for line in rounds_lines(results):
        print(line)
    for r in results:
        print()
        print("\n".join(traffic_tables(r)))
        print("\n".join(["", *cpu_table(r, os.cpu_count() or 1)]))
        if r.heap_file:
            print()
            print("\n".join(heap_lines(r)))
    print(f"\nThe operator's logs: {bench.work}")
    if args.plot:
        plot(results, args.plot)
        print(f"Plot: {args.plot}")
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())

