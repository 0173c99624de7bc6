"""Benchmarks that print numbers (and the machine they ran on); results in docs/benchmarks.md.
Run from the repo root with the environment up: `.venv/bin/python -m benchmarks.NAME`."""
