"""Benchmark of the operator on the local cluster, with the service's real code.

Starts `authz-operator` as its own process (standalone, one fresh namespace), applies N
AuthorizationService resources at once (each with its own database, one replica, our image,
so the migration Job and the pods really run through the harness's pod runner), and
measures: apply -> Ready for each; an image change that adds a migration -> Ready again; an
image change whose pods never become ready -> rolled back (progress deadline 15 s); and the
operator's memory. Prints the numbers and the machine. Needs `./hack/up` running.

Usage: `.venv/bin/python -m benchmarks.operator_bench [--resources N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import yaml

from benchmarks import REPO
from benchmarks.service_bench import machine, rss_mib
from devenv import procs
from devenv import state as devstate

IMAGE = "registry.example/authorization-service:{tag}"


class Cluster:
    def __init__(self, st: devstate.State) -> None:
        self.kubectl = [str(Path(st.kubectl_dir) / "kubectl"), f"--kubeconfig={st.kubeconfig}"]

    def run(self, *args: str, stdin: str | None = None) -> str:
        out = subprocess.run([*self.kubectl, *args], input=stdin, capture_output=True,
                             text=True, check=True)
        return out.stdout

    def statuses(self, namespace: str) -> dict[str, dict[str, Any]]:
        items = json.loads(self.run("get", "authsvc", "-n", namespace, "-o", "json"))["items"]
        return {i["metadata"]["name"]: i.get("status") or {} for i in items}


def resource(namespace: str, name: str, tag: str, st: devstate.State) -> dict[str, Any]:
    redis = urlsplit(st.redis_url)
    return {
        "apiVersion": "rwadurian.io/v1alpha1", "kind": "AuthorizationService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": IMAGE.format(tag=tag), "replicas": 1, "imagePullSecrets": [],
            "autoscaling": {"enabled": False}, "ingress": {"enabled": False},
            "database": {"urlSecretRef": {"name": f"{name}-secrets", "key": "database-url"}},
            "jwt": {"secretRef": {"name": f"{name}-secrets", "key": "jwt-secret"}},
            "redis": {"host": redis.hostname, "port": redis.port},
            "kafka": {"brokers": [st.kafka_brokers]},
            "rollout": {"progressDeadlineSeconds": 15, "autoRollback": True},
        },
    }


def wait_all(cluster: Cluster, namespace: str, names: list[str], started: float,
             done: Callable[[dict[str, Any]], bool], timeout: float = 300) -> list[float]:
    """Seconds from `started` until each resource's status satisfied `done` (polled every
    0.2 s; this is a benchmark, so the resolution is part of the number)."""
    finished: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(finished) < len(names):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout}s: {sorted(set(names) - set(finished))}")
        for name, status in cluster.statuses(namespace).items():
            if name not in finished and done(status):
                finished[name] = time.monotonic() - started
        time.sleep(0.2)
    return [finished[n] for n in names]


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):.1f} s, min {min(values):.1f} s, "
            f"max {max(values):.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=5)
    args = parser.parse_args()
    st = devstate.load()
    if not procs.alive(st.pids.get("kube-apiserver")):
        print("cluster not running: run ./hack/up first", file=sys.stderr)
        return 2
    cluster = Cluster(st)
    namespace = f"bench-{secrets.token_hex(3)}"
    names = [f"svc{i}" for i in range(args.resources)]
    databases = [f"bench_{namespace[6:]}_{n}" for n in names]
    cluster.run("create", "namespace", namespace)
    env = dict(os.environ, KUBECONFIG=st.kubeconfig, PYTHONPATH=str(REPO / "hack"))
    log = open(REPO / ".local" / "run" / f"operator-{namespace}.log", "wb")  # noqa: SIM115
    operator = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "authz-operator"), f"--namespace={namespace}",
         "--standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    results: list[str] = []
    try:
        with psycopg.connect(st.database_url, autocommit=True) as conn:
            for db in databases:
                conn.execute(f'CREATE DATABASE "{db}"')
        docs: list[dict[str, Any]] = []
        for name, db in zip(names, databases, strict=True):
            url = urlsplit(st.database_url)._replace(path=f"/{db}").geturl()
            docs.append({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": f"{name}-secrets", "namespace": namespace},
                         "stringData": {"database-url": url, "jwt-secret": "bench"}})
        cluster.run("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))

        def serving(tag: str) -> Callable[[dict[str, Any]], bool]:
            return lambda s: s.get("phase") == "Ready" and s.get("image") == IMAGE.format(tag=tag)

        def rolled_back_to(tag: str) -> Callable[[dict[str, Any]], bool]:
            def done(s: dict[str, Any]) -> bool:
                degraded = [c for c in s.get("conditions") or [] if c["type"] == "Degraded"]
                return bool(degraded) and degraded[0].get("reason") == "RolledBack" and \
                    s.get("image") == IMAGE.format(tag=tag)
            return done

        journeys = [
            ("create -> Ready (migration Job 0001-0003, then 1 real pod)", "1.4.0",
             serving("1.4.0")),
            ("never-ready image (progressDeadlineSeconds 15) -> rolled back, schema 0004 -> "
             "0003 by a down Job", "1.5.0-unready", rolled_back_to("1.4.0")),
            ("image change with a new migration (0004) -> Ready", "1.5.0", serving("1.5.0")),
        ]
        for label, tag, done in journeys:
            started = time.monotonic()
            cluster.run("apply", "-f", "-", stdin=yaml.safe_dump_all(
                [resource(namespace, n, tag, st) for n in names]))
            times = wait_all(cluster, namespace, names, started, done)
            results.append(f"| {label} | {summary(times)} |")
        rss, peak = rss_mib(operator.pid)
    finally:
        operator.terminate()
        operator.wait(20)
        log.close()
        cluster.run("delete", "namespace", namespace, "--wait=false")
        with psycopg.connect(st.database_url, autocommit=True) as conn:
            for db in databases:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    print(f"Machine: {machine()}")
    print(f"{args.resources} AuthorizationServices applied at once, one operator process, "
          "status polled every 0.2 s")
    print()
    print("| journey | time per resource |")
    print("| --- | --- |")
    for row in results:
        print(row)
    print()
    print(f"Operator memory after the run: {rss:.0f} MiB RSS, {peak:.0f} MiB peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
