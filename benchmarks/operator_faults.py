"""Operator faults, the long version (issue 12): the journey of
tests/integration/operator/test_operator_faults.py (create with its migration, an upgrade's
rollout, a manual rollback across a schema change, an automatic rollback of a crashing
rollout, then one across a schema change), run `--iterations` times, each in a fresh `t-*`
namespace with its own database and its own operator process, which is SIGKILLed by pid on
entering each phase and started again.
Prints one row per phase: kills, converged, the most Jobs ever seen for one revision, runs
with orphans, runs with the status right, seconds from the kill to convergence (p50, max).
Numbers are printed, never asserted.

`--restart-apiserver N` adds N runs in which, instead of killing the operator, the shared
kube-apiserver is stopped (SIGTERM, by the pid in .local/run/state.json) and started again
as hack/devenv/cluster.py starts it, while the resource is Migrating and while it is
RollingOut. It disturbs everyone using the environment: run it only when nobody else is.

Usage (inside the environment's network namespace, like the tests):
    nsenter --net=/run/netns/authz-dev -- .venv/bin/python -m benchmarks.operator_faults \\
        [--iterations 10] [--parallel 2] [--restart-apiserver N]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from kubernetes import client as k8s

from authz_operator.kube import Kube
from devenv import cluster, paths, procs
from devenv import state as devstate
from tests.conftest import DevEnv
from tests.integration.operator.helpers import (
    JobRecorder,
    OperatorProcess,
    secret,
)
from tests.integration.operator.test_operator_faults import (
    JOURNEY,
    SCHEMA_AUTO_ROLLBACK,
    Moment,
    Outcome,
    Step,
    World,
    entering_phase,
    job_created,
    kill_and_restart,
    kill_during,
)
from tests.support.kube import api_client


def devenv(st: devstate.State) -> DevEnv:
    return DevEnv(database_url=st.database_url, redis_url=st.redis_url,
                  kafka_brokers=st.kafka_brokers, kubeconfig=st.kubeconfig,
                  kubectl=str(Path(st.kubectl_dir) / "kubectl"))


@contextmanager
def fresh_world(env: DevEnv, kube: Kube, api: Any) -> Iterator[World]:
    """A `t-*` namespace (the in-cluster operator leaves those alone), a database, the
    Secret, an operator process; all removed afterwards."""
    namespace = f"t-{secrets.token_hex(4)}"
    db = f"faults_{namespace[2:]}"
    core = k8s.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace, "labels": {"authz-test": "true"}}})
    deadline = time.monotonic() + 30
    while not [s for s in core.list_namespaced_service_account(namespace).items
               if s.metadata.name == "default"]:   # pods are refused until it exists
        if time.monotonic() > deadline:
            raise TimeoutError(f"no ServiceAccount default in {namespace}")
        time.sleep(0.2)
    with psycopg.connect(env.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = urlsplit(env.database_url)._replace(path=f"/{db}").geturl()
    kube.apply(secret(namespace, data={"database-url": url, "jwt-secret": "bench-secret"}))
    op = OperatorProcess(namespace, env.kubeconfig,
                         paths.RUN / "private" / f"operator-{namespace}.log")
    op.start()
    try:
        yield World(kube, api, env, namespace, url, op)
    finally:
        op.stop()
        core.delete_namespace(namespace)
        with psycopg.connect(env.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def restart_apiserver(world: World) -> None:
    """Stop the shared kube-apiserver by its pid and start it again, as `hack/up` does."""
    st = devstate.load()
    procs.stop(st.pids.get("kube-apiserver"), timeout=30)
    cluster.start(st)


def one_journey(env: DevEnv, fault: Callable[[World], None] = kill_and_restart,
                steps: tuple[Step, ...] = JOURNEY,
                moments: tuple[Moment, ...] = (entering_phase,)) -> list[Outcome]:
    api = api_client(env.kubeconfig)
    kube = Kube.connect(env.kubeconfig)
    kube.field_manager = "benchmark"
    outcomes: list[Outcome] = []
    try:
        with fresh_world(env, kube, api) as world:
            jobs = JobRecorder(api, world.namespace)
            try:
                for step in steps:
                    try:
                        outcomes.append(kill_during(world, step, jobs, fault=fault,
                                                    moments=moments))
                    except AssertionError as exc:   # the moment never came: the run stops
                        outcomes.append(Outcome(step.label, "-", 0, False, 0.0, 0, (),
                                                (f"never reached: {exc}",)))
                        break
            finally:
                jobs.stop()
            bad = [o for o in outcomes if not o.converged or o.problems or o.orphans]
            if bad:
                print(f"{world.namespace}: {bad}\n{world.op.output()[-2000:]}",
                      file=sys.stderr)
    finally:
        kube.close()
        api.close()
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    rows = ["| phase | kills | converged | max Jobs per revision | runs with orphans | "
            "status right | converge p50 (s) | converge max (s) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label in dict.fromkeys((o.label, o.killed_in) for o in outcomes):
        mine = [o for o in outcomes if (o.label, o.killed_in) == label]
        times = [o.seconds for o in mine if o.converged]
        rows.append(
            f"| {label[0]} (at {label[1]}) | {sum(o.kills for o in mine)} | "
            f"{sum(o.converged for o in mine)}/{len(mine)} | "
            f"{max(o.max_jobs_per_revision for o in mine)} | "
            f"{sum(bool(o.orphans) for o in mine)} | "
            f"{sum(o.converged and o.status_right for o in mine)}/{len(mine)} | "
            f"{statistics.median(times) if times else float('nan'):.1f} | "
            f"{max(times) if times else float('nan'):.1f} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=1,
                        help="journeys at once, each in its own namespace")
    parser.add_argument("--restart-apiserver", type=int, default=0, metavar="N",
                        help="also N journeys restarting the SHARED API server (quiet "
                             "machine only)")
    args = parser.parse_args()
    st = devstate.load()
    if not procs.alive(st.pids.get("kube-apiserver")):
        print("cluster not running: run ./hack/up first", file=sys.stderr)
        return 2
    env = devenv(st)
    os.environ["KUBECONFIG"] = env.kubeconfig
    started = time.monotonic()
    # Every other journey kills twice per step: first the moment the step's Job is created
    # (before the operator wrote its status), then on entering the phase.
    both: tuple[Moment, ...] = (job_created, entering_phase)
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        runs = list(pool.map(lambda i: one_journey(
            env, steps=(*JOURNEY, SCHEMA_AUTO_ROLLBACK),
            moments=both if i % 2 else (entering_phase,)), range(args.iterations)))
    outcomes = [o for run in runs for o in run]
    print(f"# operator SIGKILLed at every phase: {args.iterations} journeys, "
          f"{time.monotonic() - started:.0f} s, {platform.node()}, {os.cpu_count()} CPUs\n")
    print(table(outcomes))
    if args.restart_apiserver:
        restarts: list[Outcome] = []
        for _ in range(args.restart_apiserver):   # one at a time: it is one shared server
            steps = tuple(replace(s, label=f"API server restart: {s.label}")
                          for s in JOURNEY[:2])
            restarts += one_journey(env, fault=restart_apiserver, steps=steps)
        print(f"\n# kube-apiserver restarted mid-reconcile: {args.restart_apiserver} "
              "journeys\n")
        print(table(restarts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
