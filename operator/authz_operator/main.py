"""Console entry point `authz-operator`: runs kopf with this package's handlers.

Extra defaults on top of `kopf run`:
- namespaces: `WATCH_NAMESPACES=a,b` watches those, `WATCH_NAMESPACES=!t-*` (globs and
  exclusions, kopf's pattern syntax) every namespace the pattern matches, now or later;
  otherwise all namespaces (`-A`), unless the arguments already name namespaces;
- peering: two replicas must never both act. kopf pauses operators that see a peer with a
  higher priority, and ALL operators when peers share a priority, so each replica gets a
  distinct random priority unless `--priority` or `--standalone` is given;
- a heap report on SIGUSR2 when `AUTHZ_HEAP_REPORT` names a file (heapreport.py);
- glibc's malloc kept small: two arenas, free pages handed back every 10 s (allocator.py);
- Python's garbage collector's young generation larger (`GC_THRESHOLD`);
- no unused client library: kopf imports pykube-ng and the official `kubernetes` client
  whenever they are installed (to recognise their objects, and to log in through them), and
  their modules (with requests and pydantic) cost the operator about 20 MiB of its memory for
  nothing: it hands kopf plain dicts, kopf logs in with its own kubeconfig and
  service-account login, and `kube` has its own client (issue 11).
"""

from __future__ import annotations

import gc
import os
import secrets
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

from authz_operator import allocator, heapreport

# Allocations between two young collections (CPython's default: 700). At 1,000 resources
# the collector took 20 of the operator's 84 CPU seconds (timed with gc.callbacks, an
# experiment): 8,165 collections, 60 of them full ones of about 220 ms, each walking kopf's
# per-object state. Each watch event and reconcile allocates thousands of short-lived
# objects; with a larger young generation most of them are freed by their reference counts
# before a collection looks at them, fewer survive into the old generations, and full
# collections come far less often: 7.3 s in 564 collections, 4 of them full, with no higher
# peak RSS (docs/benchmarks.md, "fourth pass"). Cyclic garbage waits for at most this many
# allocations (about a megabyte).
GC_THRESHOLD = 10_000
PATTERN_CHARS = frozenset("*?!")
UNUSED_CLIENTS = ("kubernetes", "pykube")


def keep_out(modules: tuple[str, ...], loaded: MutableMapping[str, Any]) -> None:
    """Make `import <module>` fail (None in sys.modules: Python's documented way) for each
    module not imported yet, so kopf's optional imports skip them."""
    for name in modules:
        loaded.setdefault(name, None)


def watched_namespaces(environ: Mapping[str, str]) -> list[str]:
    """WATCH_NAMESPACES as kopf `--namespace` values: exact names one by one; a list with a
    glob or an exclusion (`!t-*`, `team-*,!team-sandbox`) as one kopf pattern, in which the
    rightmost matching glob wins."""
    names = [n.strip() for n in environ.get("WATCH_NAMESPACES", "").split(",") if n.strip()]
    if any(PATTERN_CHARS & set(n) for n in names):
        return [",".join(names)]
    return names


CLUSTER_PEERING_ENV = "AUTHZ_CLUSTER_PEERING"


def spans_the_cluster(kopf_argv: list[str]) -> bool:
    """Whether `kopf run` arguments serve a namespace pattern: it serves namespaces nobody
    listed (and ones created later), so the replicas must coordinate through the
    cluster-wide peering object, as with --all-namespaces, not through a KopfPeering in each
    namespace (which would not exist there)."""
    values = [kopf_argv[i + 1] for i, a in enumerate(kopf_argv[:-1])
              if a in ("-n", "--namespace")]
    values += [a.split("=", 1)[1] for a in kopf_argv if a.startswith("--namespace=")]
    return any(PATTERN_CHARS & set(v) for v in values)


def kopf_args(argv: list[str], environ: dict[str, str] | None = None) -> list[str]:
    env = dict(os.environ if environ is None else environ)
    args = ["run", "-m", "authz_operator.handlers", *argv]
    flags = {a.split("=", 1)[0] for a in argv}
    if not flags & {"-n", "--namespace", "-A", "--all-namespaces"}:
        watch = watched_namespaces(env)
        if watch:
            for ns in watch:
                args += ["--namespace", ns]
        else:
            args.append("--all-namespaces")
    if not flags & {"--priority", "--standalone"}:
        args.append(f"--priority={1 + secrets.randbelow(1_000_000)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the operator; arguments are passed to `kopf run` after the module."""
    keep_out(UNUSED_CLIENTS, sys.modules)   # before kopf is imported
    import kopf.cli

    args = kopf_args(list(sys.argv[1:] if argv is None else argv))
    if spans_the_cluster(args):
        os.environ[CLUSTER_PEERING_ENV] = "1"   # read by handlers.configure
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    heapreport.install(os.environ)
    allocator.limit_arenas(os.environ)
    allocator.start_trimming(os.environ)
    return int(kopf.cli.main(args, standalone_mode=False) or 0)
