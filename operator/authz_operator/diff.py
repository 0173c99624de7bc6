"""Pure comparison of a desired child against the live object the API server returned.

The API server adds defaults and canonicalises some values; "in sync" therefore means every
field we set is present with an equal value (desired is a subset of live), quantities compared
by value ("1000m" == "1"). Removing a field from the desired object changes its desired-hash
annotation, so removals are never missed.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from authz_operator.resources import desired_hash

# A Kubernetes quantity (apimachinery's resource.Quantity): a signed decimal number, then
# a binary suffix (Ki..Ei), a decimal one (n, u, m, k, M..E) or a decimal exponent (e3).
_QUANTITY = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
                       r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value: str) -> Decimal | None:
    """A Kubernetes quantity as an exact number, or None when `value` is not one. Our own
    parser: the official client's would bring its whole package into the operator's
    memory for one function (issue 11)."""
    match = _QUANTITY.fullmatch(value)
    if match is None:
        return None
    number, suffix = Decimal(match[1]), match[2] or ""
    if suffix in _BINARY:
        return number * Decimal(1024 ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    return number.scaleb(int(suffix[1:])) if suffix else number


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def _zero(value: Any) -> bool:
    """0 or false: the API server leaves such a field out when it is not a pointer
    (`initialDelaySeconds: 0` comes back as no initialDelaySeconds at all)."""
    return value is False or (isinstance(value, int) and value == 0)


def is_subset(desired: Any, live: Any) -> bool:
    """True when every field of `desired` is in `live` with an equal value."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return _empty(desired) and _empty(live)
        return all(
            (_empty(v) and _empty(live.get(k))) or (k not in live and _zero(v))
            or (k in live and is_subset(v, live[k]))
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
