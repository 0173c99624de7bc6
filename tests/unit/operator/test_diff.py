from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from authz_operator.diff import Change, change, is_subset, parse_quantity
from authz_operator.resources import ANN_DESIRED_HASH


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", Decimal(1)), ("1000m", Decimal(1)), ("250m", Decimal("0.25")),
     ("1Gi", Decimal(2**30)), ("512Mi", Decimal(2**29)), ("1k", Decimal(1000)),
     ("http", None), ("", None), ("1e3", Decimal(1000)), ("2E-3", Decimal("0.002")),
     ("1.5Gi", Decimal(3 * 2**29)), ("-1", Decimal(-1)), ("+.5", Decimal("0.5")),
     ("5.", Decimal(5)), ("100n", Decimal("1E-7")), ("3u", Decimal("0.000003")),
     ("2Ei", Decimal(2 * 2**60)), ("4P", Decimal(4 * 10**15)),
     ("1ki", None), ("1K", None), ("1 Gi", None), ("Infinity", None), ("NaN", None),
     ("1e", None), ("Gi", None), ("1Mi ", None)],
)
def test_parse_quantity(text: str, value: Decimal | None) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    ("desired", "live", "subset"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, True),
        ({"a": 1}, {"a": 2}, False),
        ({"a": {"b": [1, 2]}}, {"a": {"b": [1, 2], "c": 3}}, True),
        ({"a": [1, 2]}, {"a": [1]}, False),
        ({"a": [{"x": 1}]}, {"a": [{"x": 1, "y": 2}]}, True),
        ({"cpu": "1000m"}, {"cpu": "1"}, True),
        ({"cpu": "1"}, {"cpu": "2"}, False),
        ({"a": {}}, {}, True),
        ({"a": []}, {"a": None}, True),
        ({"a": "x"}, {}, False),
        # the API server leaves out zero values of non-pointer fields
        ({"probe": {"initialDelaySeconds": 0}}, {"probe": {}}, True),
        ({"hostNetwork": False}, {}, True),
        ({"a": 1}, {}, False),
        ({"a": True}, {}, False),
        ({"a": 0}, {"a": 1}, False),
    ],
)
def test_is_subset(desired: Any, live: Any, subset: bool) -> None:
    assert is_subset(desired, live) is subset


def _obj(hash_: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x", "annotations": {ANN_DESIRED_HASH: hash_}}, "spec": spec}


def test_change() -> None:
    desired = _obj("h1", replicas=3)
    assert change(desired, None) is Change.CREATE
    assert change(desired, _obj("h0", replicas=3)) is Change.UPDATE
    assert change(desired, _obj("h1", replicas=5)) is Change.DRIFT
    live = _obj("h1", replicas=3)
    live["metadata"]["uid"] = "u"
    assert change(desired, live) is None
