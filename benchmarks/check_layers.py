"""`./hack/bench service-layers`: what each layer of a cached check costs (issue 10).

The bare aiohttp app and the service cut down layer by layer (`layered_service`: the app,
+ the middleware, + authentication and parameters, + the Redis lookup, the real check),
each pinned to CPU 0 alone, vegeta and the dependencies on CPU 1, as in `./hack/bench
service`. Every round runs
each side in turn (so a busy moment of the machine hits them all alike) twice: closed loop
(requests/s at 32 connections) and open loop at --rate (the server's CPU time per request,
from /proc: less sensitive to other work on the machine than throughput). Medians over the
rounds are printed with the difference each layer adds.
"""

from __future__ import annotations

import argparse
import datetime
import os
import secrets
import statistics
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from benchmarks import REPO, binaries
from benchmarks.check_bench import (
    World,
    bench_database,
    check_url,
    load_side,
    migrate,
    seed,
    service_env,
)
from benchmarks.check_load import (
    LOAD_CPU,
    Vegeta,
    cpu_seconds,
    off_server_cpu,
    server,
    stats,
    target,
)
from benchmarks.layered_service import LAYERS
from benchmarks.service_bench import machine, token
from devenv import procs
from devenv import state as devstate

BARE = "bare aiohttp app"
TOPIC = "bench-layers"  # the relay publishes nothing: no layer creates
LABELS = {BARE: "bare aiohttp app, constant answer",
          "app": "service app and routes, constant answer, no middleware",
          "middleware": "+ the middleware (trace id, log context, deadline, errors, metrics)",
          "request": "+ authentication and the query's parameters",
          "lookup": "+ the generation read from Redis (batched per loop turn)",
          "check": "the real check (answer from memory or Redis, metrics)"}


def measure(args: argparse.Namespace, st: devstate.State, url: str, work: Path
            ) -> dict[str, tuple[list[float], list[float]]]:
    """side -> (closed-loop requests/s per round, CPU microseconds per request per round)."""
    secret = secrets.token_urlsafe(32)
    migrate(service_env(st, url, 0, secret, TOPIC))
    world = World(seed(url, args.grants), secret)
    tokens = {u: token(secret, u, admin=False) for u, _, _ in world.grants.values()}
    checked = world.keys()  # each grant's key and one not granted
    vegeta = Vegeta(binaries.vegeta_bin(), work)
    python = str(REPO / ".venv" / "bin" / "python")
    log = work / "servers.log"
    results: dict[str, tuple[list[float], list[float]]] = {}
    with ExitStack() as stack:
        pids: dict[str, int] = {}
        targets = {}
        for side in (BARE, *LAYERS):
            port = procs.free_port()
            if side == BARE:
                argv = [python, "-m", "benchmarks.bare_app", str(port)]
                env = dict(os.environ, PYTHONPATH=str(REPO))
            else:
                argv = [python, "-m", "benchmarks.layered_service", side, "serve"]
                env = dict(service_env(st, url, port, secret, TOPIC),
                           PYTHONPATH=str(REPO))
            pids[side] = stack.enter_context(server(argv, port, env, log))
            targets[side] = [target("GET", check_url(f"http://127.0.0.1:{port}", k),
                                    tokens[k[0]]) for k in checked]
            vegeta.attack(targets[side], 0, 2, args.connections)  # warm: tokens, answers
            results[side] = ([], [])
        for round_ in range(args.rounds):
            for side in results:
                closed = stats(vegeta.attack(targets[side], 0, args.seconds, args.connections))
                before = cpu_seconds(pids[side])
                opened = vegeta.attack(targets[side], args.rate, args.seconds)
                per_request = (cpu_seconds(pids[side]) - before) / max(len(opened), 1) * 1e6
                results[side][0].append(closed.rps)
                results[side][1].append(per_request)
                print(f"[layers] round {round_ + 1}: {side}: {closed.rps:,.0f}/s closed loop, "
                      f"{per_request:.1f} us CPU a request at {args.rate}/s"
                      f"{'' if closed.errors == 0 else f' ({closed.errors} errors)'}",
                      file=sys.stderr, flush=True)
    return results


def report(args: argparse.Namespace, results: dict[str, tuple[list[float], list[float]]]
           ) -> list[str]:
    lines = [f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
             f"Machine: {machine()}",
             f"Load average at the end: {os.getloadavg()[0]:.1f}; each side pinned to CPU 0 "
             f"(one worker) alone, vegeta and PostgreSQL, Redis, Kafka on CPU {LOAD_CPU}; "
             f"medians of {args.rounds} rounds",
             "",
             f"| side | closed loop, {args.connections} connections, requests/s | "
             f"CPU us a request at {args.rate}/s | added by the layer |",
             "| --- | --- | --- | --- |"]
    previous: float | None = None
    for side, (rps, cpu) in results.items():
        rps_median, cpu_median = statistics.median(rps), statistics.median(cpu)
        added = "" if previous is None else f"{cpu_median - previous:+.1f} us"
        lines.append(f"| {LABELS[side]} | {rps_median:,.0f} | {cpu_median:.1f} | {added} |")
        previous = cpu_median
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/bench service-layers", description=__doc__)
    parser.add_argument("--grants", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measured run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32, help="closed-loop runs")
    parser.add_argument("--rate", type=int, default=2000, help="open-loop runs, requests/s")
    args = parser.parse_args(argv)
    st = load_side()
    if st is None:
        return 2
    work = Path(tempfile.mkdtemp(prefix="authz-bench-layers-"))
    with off_server_cpu(st.pids), bench_database(st) as url:
        results = measure(args, st, url, work)
    print("\n".join(report(args, results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
