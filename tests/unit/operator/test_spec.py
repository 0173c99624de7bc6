from __future__ import annotations

from typing import Any

import pytest

from authz_operator.spec import (
    Autoscaling,
    Kafka,
    Redis,
    SecretKeyRef,
    Spec,
    SpecError,
    image_tag,
    parse_spec,
)

from .samples import MINIMAL, spec_body


def test_minimal_spec_gets_the_seed_defaults() -> None:
    spec = parse_spec(MINIMAL)
    assert spec == Spec(
        image="registry.example/authorization-service:1.4.0",
        database=spec.database,
        redis=Redis(host="redis-master.redis.svc.cluster.local"),
        kafka=Kafka(brokers=("kafka-0.kafka.svc.cluster.local:9092",)),
        jwt=spec.jwt,
    )
    assert (spec.replicas, spec.port, spec.node_env, spec.log_level) == (
        3, 3002, "production", "info")
    assert spec.autoscaling == Autoscaling(True, 2, 10, 70, 80)
    assert spec.resources.requests.cpu == "250m"
    assert spec.resources.limits.memory == "1Gi"
    assert spec.image_pull_secrets == ("registry-credentials",)
    assert spec.secret_refs() == (
        ("DATABASE_URL", SecretKeyRef("authorization-secrets", "database-url")),
        ("JWT_SECRET", SecretKeyRef("authorization-secrets", "jwt-secret")),
    )
    assert spec.secret_names() == ("authorization-secrets",)


def test_redis_password_is_an_optional_secret_ref() -> None:
    spec = parse_spec(spec_body(redis={"passwordSecretRef": {"name": "r", "key": "pw"}}))
    assert ("REDIS_PASSWORD", SecretKeyRef("r", "pw")) in spec.secret_refs()
    assert spec.secret_names() == ("authorization-secrets", "r")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"image": "registry.example/authorization-service"}, "image"),
        ({"image": "Not An Image:1"}, "image"),
        ({"database": {"urlSecretRef": {"name": "s"}}}, "database.urlSecretRef.key"),
        ({"database": {"urlSecretRef": None}}, "database.urlSecretRef"),
        ({"kafka": {"brokers": []}}, "kafka.brokers"),
        ({"kafka": {"brokers": ["no-port"]}}, "kafka.brokers[0]"),
        ({"replicas": -1}, "replicas"),
        ({"port": "3002"}, "port"),
        ({"logLevel": "verbose"}, "logLevel"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "autoscaling.minReplicas"),
        ({"ingress": {"enabled": True, "host": ""}}, "ingress.host"),
        ({"paused": "yes"}, "paused"),
    ],
)
def test_bad_specs_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(spec_body(**changes))
    assert info.value.field == field
    assert str(info.value).startswith(f"spec.{field}: ")


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("registry.example/authorization-service:1.4.0", "1.4.0"),
        ("registry.example:5000/a/b:2.0-unready", "2.0-unready"),
        ("a/b@sha256:" + "a" * 64, "sha256-aaaaaaaaaaaa"),
        ("a/b:1.0@sha256:" + "a" * 64, "1.0"),
    ],
)
def test_image_tag(image: str, tag: str) -> None:
    assert image_tag(image) == tag
