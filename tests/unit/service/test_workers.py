"""How many worker processes `serve` starts: WEB_CONCURRENCY, else the cgroup CPU quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from authz_service import workers
from authz_service.config import ConfigError, load_config

from .test_config import BASE

USABLE = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "200000 100000\n"}, 2),
    ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: two workers, each often idle
    ({"cpu.max": "50000 100000\n"}, 1),
    ({"cpu.max": "max 100000\n"}, USABLE),
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, USABLE),
    ({}, USABLE),
])
def test_cpu_limit_follows_the_cgroup_quota(tmp_path: Path, files: dict[str, str],
                                             expected: int) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert workers.cpu_limit(tmp_path) == min(expected, USABLE)


def test_web_concurrency_sets_the_worker_count() -> None:
    assert load_config(BASE).workers is None
    assert load_config({**BASE, "WEB_CONCURRENCY": "3"}).workers == 3
    with pytest.raises(ConfigError, match="WEB_CONCURRENCY"):
        load_config({**BASE, "WEB_CONCURRENCY": "0"})
