"""Bad resources are refused at apply time, with a message naming the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from .helpers import cr

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"image": None}, "spec.image: Required value", id="image-missing"),
        pytest.param({"image": "registry.example/authorization-service"},
                     "spec.image needs a tag or a digest", id="image-untagged"),
        pytest.param({"image": "Bad Image:1"}, "spec.image", id="image-pattern"),
        pytest.param({"database": {"urlSecretRef": {"name": "s"}}},
                     "spec.database.urlSecretRef.key: Required value", id="secret-ref-no-key"),
        pytest.param({"kafka": {"brokers": []}}, "spec.kafka.brokers", id="no-brokers"),
        pytest.param({"kafka": {"brokers": ["kafka"]}}, "spec.kafka.brokers[0]",
                     id="broker-no-port"),
        pytest.param({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
                     "spec.autoscaling.minReplicas must not be greater", id="hpa-min-max"),
        pytest.param({"ingress": {"enabled": True, "host": ""}},
                     "spec.ingress.host is required", id="ingress-no-host"),
        pytest.param({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}},
                     "spec.resources.requests.cpu must not exceed", id="requests-over-limits"),
        pytest.param({"resources": {"requests": {"memory": "lots"}}},
                     "spec.resources.requests.memory", id="quantity-pattern"),
        pytest.param({"logLevel": "verbose"}, "spec.logLevel: Unsupported value",
                     id="log-level-enum"),
        pytest.param({"jwt": {"secretRef": {"name": "s", "key": "k"}, "expiresIn": "soon"}},
                     "spec.jwt.expiresIn", id="duration-pattern"),
        pytest.param({"services": {"identityUrl": "identity:3001"}},
                     "spec.services.identityUrl", id="url-pattern"),
        pytest.param({"port": 70000}, "spec.port", id="port-range"),
        pytest.param({"replicas": "three"}, "spec.replicas", id="replicas-type"),
        pytest.param({"name": "x" * 41}, "metadata.name must be at most 40 characters",
                     id="name-too-long"),
    ],
)
def test_bad_resource_is_refused(crd: None, namespace: str,
                                 kubectl: Callable[..., Any], change: dict[str, Any],
                                 expected: str) -> None:
    body = cr(namespace)
    for key, value in change.items():
        if key == "name":
            body["metadata"]["name"] = value
        elif value is None:
            del body["spec"][key]
        else:
            body["spec"][key] = value
    result = kubectl("apply", "-f", "-", input=yaml.safe_dump(body), check=False)
    assert result.returncode != 0, result.stdout
    assert expected in result.stderr


def test_good_resource_is_accepted_with_defaults(crd: None, namespace: str,
                                                 kubectl: Callable[..., Any]) -> None:
    kubectl("apply", "-f", "-", input=yaml.safe_dump(cr(namespace)))
    out = yaml.safe_load(kubectl("get", "authsvc", "authz", "-n", namespace, "-o",
                                 "yaml").stdout)
    assert out["spec"]["port"] == 3002
    assert out["spec"]["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert out["spec"]["rollout"]["autoRollback"] is True
