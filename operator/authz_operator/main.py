"""Console entry point `authz-operator`: runs kopf with this package's handlers."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the operator; arguments are passed to `kopf run` after the module."""
    import kopf.cli

    args = list(sys.argv[1:] if argv is None else argv)
    return int(kopf.cli.main(["run", "-m", "authz_operator.handlers", *args]) or 0)
