"""The API-cost benchmark's CRD copies: the shipped schema under another group, without
its CEL rules, or unvalidated (benchmarks/api_cost.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from benchmarks.api_cost import crd_variant

CRD = Path(__file__).parents[3] / "crds" / "authorizationservices.rwadurian.io.yaml"


def installed() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD.read_text())
    crd["status"] = {"conditions": []}   # what the API server adds
    return crd


def test_a_copy_keeps_the_schema_under_its_own_group() -> None:
    crd = crd_variant(installed(), "shipped.x.bench", "shipped")
    assert crd["metadata"] == {"name": "authorizationservices.shipped.x.bench"}
    assert crd["spec"]["group"] == "shipped.x.bench"
    assert "status" not in crd
    assert crd["spec"]["versions"] == installed()["spec"]["versions"]


def test_without_cel_no_rule_is_left_and_the_rest_stays() -> None:
    shipped = json.dumps(installed()["spec"]["versions"])
    assert "x-kubernetes-validations" in shipped
    crd = crd_variant(installed(), "g", "no-cel")
    text = json.dumps(crd["spec"]["versions"])
    assert "x-kubernetes-validations" not in text
    assert text.count('"type"') == shipped.count('"type"')   # every field is still typed


def test_unvalidated_spec_and_status_take_anything() -> None:
    crd = crd_variant(installed(), "g", "unvalidated")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in ("spec", "status"):
        assert schema["properties"][part] == {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert "x-kubernetes-validations" not in schema
