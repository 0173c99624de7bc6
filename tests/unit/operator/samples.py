"""Spec bodies shared by the unit tests (the seed's values, as a user would write them)."""

from __future__ import annotations

import copy
from typing import Any

from authz_operator.resources import Owner

OWNER = Owner(name="authorization-service", namespace="rwadurian", uid="uid-1")

MINIMAL: dict[str, Any] = {
    "image": "registry.example/authorization-service:1.4.0",
    "database": {"urlSecretRef": {"name": "authorization-secrets", "key": "database-url"}},
    "redis": {"host": "redis-master.redis.svc.cluster.local"},
    "kafka": {"brokers": ["kafka-0.kafka.svc.cluster.local:9092"]},
    "jwt": {"secretRef": {"name": "authorization-secrets", "key": "jwt-secret"}},
}


def spec_body(**changes: Any) -> dict[str, Any]:
    """MINIMAL with top-level keys replaced (nested dicts are merged one level deep)."""
    body = copy.deepcopy(MINIMAL)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body
