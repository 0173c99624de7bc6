"""Console entry point `authz-operator`: runs kopf with this package's handlers.

Extra defaults on top of `kopf run`:
- namespaces: `WATCH_NAMESPACES=a,b` watches those; otherwise all namespaces (`-A`), unless
  the arguments already name namespaces;
- peering: two replicas must never both act. kopf pauses operators that see a peer with a
  higher priority, and ALL operators when peers share a priority, so each replica gets a
  distinct random priority unless `--priority` or `--standalone` is given.
"""

from __future__ import annotations

import os
import secrets
import sys


def kopf_args(argv: list[str], environ: dict[str, str] | None = None) -> list[str]:
    env = dict(os.environ if environ is None else environ)
    args = ["run", "-m", "authz_operator.handlers", *argv]
    flags = {a.split("=", 1)[0] for a in argv}
    if not flags & {"-n", "--namespace", "-A", "--all-namespaces"}:
        watch = [n.strip() for n in env.get("WATCH_NAMESPACES", "").split(",") if n.strip()]
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
    import kopf.cli

    args = kopf_args(list(sys.argv[1:] if argv is None else argv))
    return int(kopf.cli.main(args, standalone_mode=False) or 0)
