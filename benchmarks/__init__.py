"""Benchmarks that print numbers (and the machine they ran on); results in docs/benchmarks.md.
Run from the repo root with the environment up: `.venv/bin/python -m benchmarks.NAME`."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The benchmarks drive the local environment through `devenv` (hack/devenv), as ./hack/up
# does; put it on the path once here, before any benchmark module imports it.
if str(REPO / "hack") not in sys.path:
    sys.path.insert(0, str(REPO / "hack"))
