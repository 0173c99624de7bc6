"""What the pods run with: the target (image, ConfigMap content, Secrets' versions), the
ConfigMap's data in the seed's keys, and the environment that reads it. Pure.

Re-exported by `resources`, whose builders use it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from authz_operator.spec import Spec

Obj = dict[str, Any]


def canonical_json(value: Any) -> bytes:
    """`value` as compact JSON with sorted keys, non-ASCII escaped: the bytes the hashes have
    always been taken of (`json.dumps(value, sort_keys=True, separators=(",", ":"))`).

    orjson writes the same bytes for ASCII text, integers, booleans and null, 30 times
    faster (a Deployment: 110 -> 4 us); every reconcile hashes each desired child, a
    twentieth of the operator's CPU time at 1,000 resources (issue 11). What orjson writes
    differently takes the json module's path, so a hash recorded before (a revision's key, a
    child's desired-hash) stays the same: text orjson leaves unescaped (UTF-8, DEL) and
    what it refuses (keys that are not text). Floats, whose exponents the two write
    differently, never occur: the CRD has no number fields and the builders write integers
    (tests/unit/operator/test_podconfig.py)."""
    try:
        raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:   # orjson.JSONEncodeError
        raw = b"\x80"
    if raw.isascii() and b"\x7f" not in raw:
        return raw
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def content_hash(value: Any) -> str:
    """A short, stable hash of any JSON-able value."""
    return hashlib.sha256(canonical_json(value)).hexdigest()[:16]


def secrets_hash(versions: Mapping[str, str]) -> str:
    """Hash of the referenced Secrets' resourceVersions: a changed Secret rolls the pods."""
    return content_hash(sorted(versions.items()))


@dataclass(frozen=True)
class Target:
    """What the pods should run: an image, the ConfigMap content and the Secrets' versions.

    Usually it comes straight from the spec (`target_from_spec`); a rollback builds it from
    a recorded revision instead.
    """

    image: str
    config: tuple[tuple[str, str], ...]
    secrets_hash: str

    @property
    def config_data(self) -> dict[str, str]:
        return dict(self.config)

    @property
    def config_hash(self) -> str:
        return content_hash(self.config_data)


def config_data(spec: Spec) -> dict[str, str]:
    """The non-secret configuration, as the ConfigMap's data (keys in the seed's style)."""
    return {
        "node-env": spec.node_env,
        "port": str(spec.port),
        "redis-host": spec.redis.host,
        "redis-port": str(spec.redis.port),
        "kafka-brokers": ",".join(spec.kafka.brokers),
        "kafka-client-id": spec.kafka.client_id,
        "kafka-consumer-group": spec.kafka.consumer_group,
        "jwt-expires-in": spec.jwt.expires_in,
        "identity-service-url": spec.services.identity_url,
        "referral-service-url": spec.services.referral_url,
        "statistics-service-url": spec.services.statistics_url,
        "log-level": spec.log_level,
    }


# The seed's variable names, in the seed's order, and the ConfigMap key each reads.
CONFIG_ENV: tuple[tuple[str, str], ...] = (
    ("NODE_ENV", "node-env"),
    ("PORT", "port"),
    ("REDIS_HOST", "redis-host"),
    ("REDIS_PORT", "redis-port"),
    ("KAFKA_BROKERS", "kafka-brokers"),
    ("KAFKA_CLIENT_ID", "kafka-client-id"),
    ("KAFKA_CONSUMER_GROUP", "kafka-consumer-group"),
    ("JWT_EXPIRES_IN", "jwt-expires-in"),
    ("IDENTITY_SERVICE_URL", "identity-service-url"),
    ("REFERRAL_SERVICE_URL", "referral-service-url"),
    ("STATISTICS_SERVICE_URL", "statistics-service-url"),
    ("LOG_LEVEL", "log-level"),
)
ENV_ORDER = (
    "NODE_ENV", "PORT", "DATABASE_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD",
    "KAFKA_BROKERS", "KAFKA_CLIENT_ID", "KAFKA_CONSUMER_GROUP", "JWT_SECRET",
    "JWT_SECRET_PREVIOUS", "JWT_EXPIRES_IN",
    "IDENTITY_SERVICE_URL", "REFERRAL_SERVICE_URL", "STATISTICS_SERVICE_URL", "LOG_LEVEL",
    "WEB_CONCURRENCY",
)
# The service's worker processes follow the container's CPU limit (rounded up: "500m" -> 1,
# "2" -> 2), read by the kubelet, so a change of spec.resources.limits.cpu resizes them.
WORKERS_ENV: Obj = {"name": "WEB_CONCURRENCY", "valueFrom": {
    "resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}}}


def target_from_spec(spec: Spec, secret_versions: Mapping[str, str]) -> Target:
    return Target(
        image=spec.image,
        config=tuple(sorted(config_data(spec).items())),
        secrets_hash=secrets_hash(secret_versions),
    )


def env(spec: Spec, config_map: str) -> list[Obj]:
    """Environment of the service (and migration) containers: ConfigMap and Secret key refs."""
    by_name: dict[str, Obj] = {
        var: {"name": var, "valueFrom": {"configMapKeyRef": {"name": config_map, "key": key}}}
        for var, key in CONFIG_ENV
    }
    for var, ref in spec.secret_refs():
        by_name[var] = {
            "name": var, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        }
    by_name["WEB_CONCURRENCY"] = WORKERS_ENV
    return [by_name[v] for v in ENV_ORDER if v in by_name]
