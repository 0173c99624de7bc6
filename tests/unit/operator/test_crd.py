"""The CRD (crds/) is the schema's one source of truth: check it against the parser."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz_operator.spec import parse_spec

from .samples import MINIMAL

CRD_PATH = Path(__file__).resolve().parents[3] / "crds" / "authorizationservices.rwadurian.io.yaml"


@pytest.fixture(scope="module")
def version() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    [v] = crd["spec"]["versions"]
    return v  # type: ignore[no-any-return]


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it (enough for our schema)."""
    if schema.get("type") != "object" or not isinstance(value, dict):
        return value
    out = copy.deepcopy(value)
    for key, sub in (schema.get("properties") or {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = apply_defaults(sub, out[key])
    return out


def test_schema_defaults_equal_the_parser_defaults(version: dict[str, Any]) -> None:
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    defaulted = apply_defaults(spec_schema, MINIMAL)
    assert defaulted["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert defaulted["services"]["identityUrl"] == "http://identity-service:3001"
    assert defaulted["probes"]["liveness"] == {"initialDelaySeconds": 30, "periodSeconds": 10,
                                               "timeoutSeconds": 1, "failureThreshold": 3}
    assert parse_spec(defaulted) == parse_spec(MINIMAL)


def _walk(schema: dict[str, Any], path: str) -> list[str]:
    missing = [] if "description" in schema or path in ("", ".metadata") else [path]
    for key, sub in (schema.get("properties") or {}).items():
        missing += _walk(sub, f"{path}.{key}")
    if "items" in schema:
        missing += _walk(schema["items"], f"{path}[]")
    return missing


def test_every_field_has_a_description(version: dict[str, Any]) -> None:
    assert _walk(version["schema"]["openAPIV3Schema"], "") == []


def test_printer_columns(version: dict[str, Any]) -> None:
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Ready", "Phase", "Image", "Schema", "Revision", "Age"]


def test_required_fields(version: dict[str, Any]) -> None:
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["image", "database", "redis", "kafka", "jwt"]
    assert spec["properties"]["kafka"]["properties"]["brokers"]["minItems"] == 1


def test_sample_is_the_seed_and_parses() -> None:
    sample = yaml.safe_load((CRD_PATH.parents[1] / "manifests" / "samples"
                             / "authorizationservice.yaml").read_text())
    spec = parse_spec(sample["spec"])
    assert spec.port == 3002
    assert spec.redis.password_secret_ref is not None
    assert spec.kafka.brokers == ("kafka-0.kafka.svc.cluster.local:9092",
                                  "kafka-1.kafka.svc.cluster.local:9092")


def test_the_previous_jwt_secret_is_validated_like_every_secret_ref(
        version: dict[str, Any]) -> None:
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    jwt = spec["jwt"]["properties"]
    previous, current = jwt["previousSecretRef"], jwt["secretRef"]
    assert "previousSecretRef" not in spec["jwt"]["required"]
    assert {k: v for k, v in previous.items() if k != "description"} == {
        k: v for k, v in current.items() if k != "description"}
    assert previous["properties"] == spec["database"]["properties"]["urlSecretRef"]["properties"]
    assert "JWT_SECRET_PREVIOUS" in previous["description"]
