"""Python's cyclic garbage collector: the whole heap walked less often (issue 11).

CPython collects its young generation every 700 net allocations, the middle one every 10 of
those, and considers a full collection, which walks every tracked object, every 10 of the
middle one's. At 1,000 resources the operator holds hundreds of thousands of tracked
objects (kopf's per-object state and indexes, the reconcilers' locks), and a burst of watch
events makes enough of them old that nearly every chance of a full collection is taken:
measured with `gc.callbacks` over one convergence of 1,000 resources, 71 full collections
of about 250 ms, 18 of the operator's 93 CPU seconds. `FULL_EVERY` middle collections
between chances instead of 10 makes that about a tenth.

Nothing is freed later for it but garbage in reference cycles old enough to have survived
two collections: every other object is freed as its last reference goes (reference
counting), and cycles among young objects are collected as often as before.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping

FULL_EVERY = 100   # CPython's default: 10
ENV = "AUTHZ_GC_FULL_EVERY"


def full_every(environ: Mapping[str, str]) -> int:
    """`AUTHZ_GC_FULL_EVERY`, else `FULL_EVERY`: middle-generation collections between
    chances of a full one (10 is CPython's own setting)."""
    raw = environ.get(ENV, "").strip()
    try:
        every = int(raw) if raw else FULL_EVERY
    except ValueError:
        every = 0
    if every < 1:
        raise SystemExit(f"{ENV}={raw!r}: expected a whole number of at least 1 "
                         f"(CPython's own setting is 10)")
    return every


def collect_less_often(environ: Mapping[str, str]) -> int:
    """Set the full collection's threshold before kopf starts; returns it."""
    young, middle, _ = gc.get_threshold()
    every = full_every(environ)
    gc.set_threshold(young, middle, every)
    return every
