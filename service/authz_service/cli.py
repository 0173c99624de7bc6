"""Console entry point `authz-service`: `serve` (default) and `migrate`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    print(f"authz-service: not implemented yet ({' '.join(args) or 'serve'})", file=sys.stderr)
    return 2
