"""`python -m devenv up|down|status|servers|cluster|build`: the local environment's verbs.
`hack/up`, `hack/down` and `hack/test` call these after preparing the virtualenv."""

from __future__ import annotations

import argparse
import sys
import time

from devenv import build, paths, procs, servers, state


def _say(msg: str) -> None:
    print(f"[devenv] {msg}", file=sys.stderr, flush=True)


def cmd_servers(st: state.State) -> None:
    started = time.monotonic()
    servers.start_postgres(st)
    _say(f"PostgreSQL 15 on 127.0.0.1:{st.ports['postgres']}")
    servers.start_redis(st)
    _say(f"Redis on 127.0.0.1:{st.ports['redis']}")
    servers.start_kafka(st)
    _say(f"Kafka {build.kafka_version()} (KRaft) on {st.kafka_brokers}")
    st.write_env_sh()
    _say(f"servers ready in {time.monotonic() - started:.1f}s")


def cmd_cluster(st: state.State) -> None:
    from devenv import cluster

    started = time.monotonic()
    cluster.start(st)
    st.write_env_sh()
    _say(f"Kubernetes {build.k8s_version()} API server on 127.0.0.1:"
         f"{st.ports['kube-apiserver']} ready in {time.monotonic() - started:.1f}s")


def cmd_down(st: state.State) -> None:
    from devenv import cluster

    for name in ("operator", "podrunner", "stubs"):
        procs.stop(st.pids.pop(name, None))
    cluster.stop(st)
    servers.stop_kafka(st)
    servers.stop_redis(st)
    servers.stop_postgres(st)
    st.save()
    _say("stopped everything hack/up started")


def cmd_status(st: state.State) -> None:
    for name, pid in sorted(st.pids.items()):
        print(f"{name:26} pid {pid:<8} {'running' if procs.alive(pid) else 'STOPPED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devenv")
    parser.add_argument("verb", choices=["up", "down", "status", "servers", "cluster", "build"])
    args = parser.parse_args(argv)
    st = state.load()
    paths.RUN.mkdir(parents=True, exist_ok=True)
    if args.verb == "build":
        build.all_binaries()
    elif args.verb == "servers":
        cmd_servers(st)
    elif args.verb == "cluster":
        cmd_cluster(st)
    elif args.verb == "down":
        cmd_down(st)
    elif args.verb == "status":
        cmd_status(st)
    elif args.verb == "up":
        from devenv import up

        up.up(st)
    return 0


if __name__ == "__main__":
    sys.exit(main())
