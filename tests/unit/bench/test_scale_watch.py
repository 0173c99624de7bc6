"""The scale benchmark's reading of CPU time from /proc."""

from __future__ import annotations

import os

from benchmarks import scale_model, scale_watch


def test_cpu_seconds_reads_a_live_process_and_the_machine_and_skips_the_gone() -> None:
    spent = sum(i * i for i in range(300_000))   # some CPU time of our own to find
    assert spent
    out = scale_watch.cpu_seconds({"me": os.getpid(), "gone": 2**22 + 1, "unknown": None})
    assert set(out) == {"me", scale_model.MACHINE}
    assert out["me"] > 0
    assert out[scale_model.MACHINE] >= out["me"]
