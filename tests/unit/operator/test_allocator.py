"""glibc's malloc settings (Debian's glibc here, as in the image) and the trimmer's timing."""

from __future__ import annotations

import threading

import pytest

from authz_operator import allocator


def test_malloc_arenas_are_limited_unless_the_environment_chose() -> None:
    assert allocator.limit_arenas({}) is True
    assert allocator.limit_arenas({"MALLOC_ARENA_MAX": "4"}) is False


def test_trim_interval_from_the_environment() -> None:
    assert allocator.trim_every({}) == allocator.TRIM_EVERY
    assert allocator.trim_every({allocator.TRIM_ENV: "2.5"}) == 2.5
    assert allocator.trim_every({allocator.TRIM_ENV: "0"}) == 0
    with pytest.raises(SystemExit, match="AUTHZ_MALLOC_TRIM_SECONDS='soon': expected"):
        allocator.trim_every({allocator.TRIM_ENV: "soon"})


def test_trimming_off_starts_nothing() -> None:
    assert allocator.start_trimming({allocator.TRIM_ENV: "0"}) is None


def test_the_trimmer_calls_trim_until_stopped() -> None:
    calls = threading.Semaphore(0)
    trimmer = allocator.Trimmer(calls.release, every=0.01)
    trimmer.start()
    assert calls.acquire(timeout=5)
    assert calls.acquire(timeout=5)       # again, not once
    trimmer.stop()
    assert not trimmer._thread.is_alive()


def test_glibc_malloc_trim_runs_here() -> None:
    trimmer = allocator.start_trimming({allocator.TRIM_ENV: "0.01"})
    assert trimmer is not None               # glibc: the trimmer runs
    trimmer.stop()
