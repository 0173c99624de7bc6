"""Pure comparison of a desired child against the live object the API server returned.

The API server adds defaults and canonicalises some values; "in sync" therefore means every
field we set is present with an equal value (desired is a subset of live), quantities compared
by value ("1000m" == "1"). Removing a field from the desired object changes its desired-hash
annotation, so removals are never missed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from authz_operator.resources import desired_hash

_SUFFIXES: dict[str, Decimal] = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def parse_quantity(value: str) -> Decimal | None:
    """A Kubernetes quantity as a number, or None when it is not one."""
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and value.endswith(suffix):
            number = value[: -len(suffix)]
            break
    else:
        suffix, number = "", value
    try:
        return Decimal(number) * _SUFFIXES[suffix]
    except InvalidOperation:
        return None


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def is_subset(desired: Any, live: Any) -> bool:
    """True when every field of `desired` is in `live` with an equal value."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return _empty(desired) and _empty(live)
        return all(
            (_empty(v) and _empty(live.get(k))) or (k in live and is_subset(v, live[k]))
            for k, v in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list):
            return _empty(desired) and _empty(live)
        return len(desired) == len(live) and all(
            is_subset(d, lv) for d, lv in zip(desired, live, strict=True))
    if desired == live:
        return True
    if isinstance(desired, str) and isinstance(live, str | int):
        a, b = parse_quantity(desired), parse_quantity(str(live))
        return a is not None and a == b
    return False


class Change(enum.Enum):
    CREATE = "create"      # the child does not exist
    UPDATE = "update"      # what we want changed
    DRIFT = "drift"        # what we want is unchanged, but someone changed the live object


def change(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> Change | None:
    """What applying `desired` would do to `live`; None when nothing needs writing."""
    if live is None:
        return Change.CREATE
    if desired_hash(live) != desired_hash(desired):
        return Change.UPDATE
    if not is_subset(desired, live):
        return Change.DRIFT
    return None
