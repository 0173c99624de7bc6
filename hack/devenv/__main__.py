"""`python -m devenv up|down|status|build|servers`: the local environment's verbs.
`hack/up`, `hack/down` and `hack/test` call these after preparing the virtualenv."""

from __future__ import annotations

import argparse
import sys

from devenv import build, paths, procs, servers, state


def _say(msg: str) -> None:
    print(f"[devenv] {msg}", file=sys.stderr, flush=True)


def cmd_down(st: state.State) -> None:
    from devenv import addons, cluster, netns, node

    for name in ("operator", "podrunner", "stubs"):   # operator, podrunner: earlier versions
        procs.stop(st.pids.pop(name, None))
    node.stop(st)
    addons.stop(st)
    cluster.stop(st)
    servers.stop_kafka(st)
    servers.stop_redis(st)
    servers.stop_postgres(st)
    st.save()
    netns.delete()
    _say("stopped everything hack/up started; removed the network namespace")


def cmd_status(st: state.State) -> None:
    for name, pid in sorted(st.pids.items()):
        print(f"{name:26} pid {pid:<8} {'running' if procs.alive(pid) else 'STOPPED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devenv")
    parser.add_argument("verb", choices=["up", "down", "status", "build", "servers"])
    args = parser.parse_args(argv)
    st = state.load()
    paths.RUN.mkdir(parents=True, exist_ok=True)
    if args.verb == "build":
        from devenv import imagebuild

        build.all_binaries()
        imagebuild.build_all()
    elif args.verb == "servers":
        # PostgreSQL, Redis and Kafka only (the benchmarks), in the environment's namespace.
        from devenv import netns, up

        if not netns.inside():
            build.kafka_libs()
            netns.ensure()
            netns.reexec_inside(["servers"])
        up.start_servers(st)
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
