"""The layer benchmark's table: medians per side and what each layer adds over the one
before it."""

from __future__ import annotations

import argparse

from benchmarks.check_layers import BARE, LABELS, report


def test_report_gives_medians_and_the_cost_each_layer_adds() -> None:
    args = argparse.Namespace(rounds=3, connections=32, rate=2000)
    results = {BARE: ([15_000.0, 16_000.0, 14_000.0], [60.0, 62.0, 70.0]),
               "app": ([14_000.0, 14_500.0, 13_000.0], [66.0, 65.0, 64.0]),
               "middleware": ([11_000.0, 12_000.0, 10_000.0], [80.5, 81.0, 79.0])}
    rows = [line for line in report(args, results)
            if line.startswith(tuple(f"| {LABELS[side]} |" for side in results))]
    assert rows == [f"| {LABELS[BARE]} | 15,000 | 62.0 |  |",
                    f"| {LABELS['app']} | 14,000 | 65.0 | +3.0 us |",
                    f"| {LABELS['middleware']} | 11,000 | 80.5 | +15.5 us |"]
