from __future__ import annotations

import asyncio
from typing import Any

import pytest

from authz_operator.spec import (
    Autoscaling,
    Kafka,
    Placement,
    Probe,
    Probes,
    Redis,
    SecretKeyRef,
    Spec,
    SpecError,
    Toleration,
    image_tag,
    parse_spec,
    raw_secret_names,
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
    assert spec.probes == Probes(readiness=Probe(10, 5, 1, 3), liveness=Probe(30, 10, 1, 3))
    assert spec.secret_refs() == (
        ("DATABASE_URL", SecretKeyRef("authorization-secrets", "database-url")),
        ("JWT_SECRET", SecretKeyRef("authorization-secrets", "jwt-secret")),
    )
    assert spec.secret_names() == ("authorization-secrets",)


def test_redis_password_is_an_optional_secret_ref() -> None:
    spec = parse_spec(spec_body(redis={"passwordSecretRef": {"name": "r", "key": "pw"}}))
    assert ("REDIS_PASSWORD", SecretKeyRef("r", "pw")) in spec.secret_refs()
    assert spec.secret_names() == ("authorization-secrets", "r")


def test_previous_jwt_secret_is_an_optional_secret_ref_read_after_the_current_one() -> None:
    spec = parse_spec(spec_body(jwt={"previousSecretRef": {"name": "jwt-old", "key": "s"}}))
    assert spec.jwt.previous_secret_ref == SecretKeyRef("jwt-old", "s")
    assert spec.secret_refs()[-2:] == (
        ("JWT_SECRET", SecretKeyRef("authorization-secrets", "jwt-secret")),
        ("JWT_SECRET_PREVIOUS", SecretKeyRef("jwt-old", "s")))
    assert spec.secret_names() == ("authorization-secrets", "jwt-old")
    assert parse_spec(MINIMAL).jwt.previous_secret_ref is None


@pytest.mark.parametrize("changes", [
    {},
    {"redis": {"passwordSecretRef": {"name": "r", "key": "pw"}}},
    {"jwt": {"previousSecretRef": {"name": "jwt-old", "key": "s"}}},
    {"redis": {"passwordSecretRef": {"name": "r", "key": "pw"}},
     "jwt": {"previousSecretRef": {"name": "authorization-secrets", "key": "jwt-old"}}},
])
def test_the_secret_watch_reads_the_secrets_the_parser_does(changes: dict[str, Any]) -> None:
    """The Secret watch's index (raw spec) and the pods' env (parsed spec) never disagree."""
    body = spec_body(**changes)
    assert raw_secret_names(body) == set(parse_spec(body).secret_names())


def test_the_secret_index_lists_every_referenced_secret() -> None:
    from authz_operator import handlers

    spec = spec_body(jwt={"previousSecretRef": {"name": "jwt-old", "key": "s"}})
    index: Any = handlers.secret_refs   # typed by kopf's decorator as taking every kwarg
    assert asyncio.run(index(namespace="ns", name="a", spec=spec)) == {
        ("ns", "authorization-secrets"): "a", ("ns", "jwt-old"): "a"}


def test_the_secret_watch_reads_an_unparseable_spec_too() -> None:
    body = spec_body(port="not a port", jwt={"previousSecretRef": {"name": "jwt-old"}})
    assert raw_secret_names(body) == {"authorization-secrets", "jwt-old"}
    assert raw_secret_names({"jwt": "x", "database": {"urlSecretRef": {"name": ""}}}) == set()


REQ = "requiredDuringSchedulingIgnoredDuringExecution"
PREF = "preferredDuringSchedulingIgnoredDuringExecution"
NODE_TERMS = f"affinity.nodeAffinity.{REQ}.nodeSelectorTerms"
PLACEMENT_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"nodeSelector": ["type=kwok"]}, "nodeSelector"),
    ({"nodeSelector": {"bad key!": "x"}}, "nodeSelector[bad key!]"),
    ({"nodeSelector": {"type": "no spaces"}}, "nodeSelector[type]"),
    ({"nodeSelector": {"type": 1}}, "nodeSelector[type]"),
    ({"tolerations": {"key": "a"}}, "tolerations"),
    ({"tolerations": ["a"]}, "tolerations[0]"),
    ({"tolerations": [{"value": "x"}]}, "tolerations[0].operator"),
    ({"tolerations": [{"key": "a", "operator": "Maybe"}]}, "tolerations[0].operator"),
    ({"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]}, "tolerations[0].value"),
    ({"tolerations": [{"key": "a", "effect": "Sometimes"}]}, "tolerations[0].effect"),
    ({"tolerations": [{"key": "a", "effect": "NoSchedule", "tolerationSeconds": 5}]},
     "tolerations[0].tolerationSeconds"),
    ({"tolerations": [{"key": "a", "effect": "NoExecute", "tolerationSeconds": "5"}]},
     "tolerations[0].tolerationSeconds"),
    ({"tolerations": [{"key": "a", "colour": "x"}]}, "tolerations[0].colour"),
    ({"tolerations": [{"key": "a"}, {"key": "/x"}]}, "tolerations[1].key"),
    ({"affinity": []}, "affinity"),
    ({"affinity": {"nodeAfinity": {}}}, "affinity.nodeAfinity"),
    ({"affinity": {"nodeAffinity": {REQ: {}}}}, f"affinity.nodeAffinity.{REQ}.nodeSelectorTerms"),
    ({"affinity": {"nodeAffinity": {REQ: {"nodeSelectorTerms": []}}}}, NODE_TERMS),
    ({"affinity": {"nodeAffinity": {REQ: {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In"}]}]}}}},
     f"{NODE_TERMS}[0].matchExpressions[0].values"),
    ({"affinity": {"nodeAffinity": {REQ: {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "Exists", "values": ["a"]}]}]}}}},
     f"{NODE_TERMS}[0].matchExpressions[0].values"),
    ({"affinity": {"nodeAffinity": {REQ: {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "Exists"}]}]}}}},
     f"{NODE_TERMS}[0].matchFields[0].operator"),
    ({"affinity": {"nodeAffinity": {PREF: [{"weight": 1, "preference": {"matchExpressions": [
        {"key": "cores", "operator": "Gt", "values": ["many"]}]}}]}}},
     f"affinity.nodeAffinity.{PREF}[0].preference.matchExpressions[0].values"),
    ({"affinity": {"nodeAffinity": {PREF: [{"preference": {}}]}}},
     f"affinity.nodeAffinity.{PREF}[0].weight"),
    ({"affinity": {"podAntiAffinity": {PREF: [
        {"weight": 101, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}}},
     f"affinity.podAntiAffinity.{PREF}[0].weight"),
    ({"affinity": {"podAffinity": {REQ: [{"labelSelector": {}}]}}},
     f"affinity.podAffinity.{REQ}[0].topologyKey"),
    ({"affinity": {"podAffinity": {REQ: [{"topologyKey": "zone", "labelSelector": {
        "matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}}]}}},
     f"affinity.podAffinity.{REQ}[0].labelSelector.matchExpressions[0].operator"),
    ({"affinity": {"podAffinity": {REQ: [{"topologyKey": "zone", "labelSelector": {
        "matchLabels": {"app": "a b"}}}]}}},
     f"affinity.podAffinity.{REQ}[0].labelSelector.matchLabels[app]"),
    ({"affinity": {"podAffinity": {REQ: [{"topologyKey": "zone", "namespaces": "team"}]}}},
     f"affinity.podAffinity.{REQ}[0].namespaces"),
    ({"migrations": {"tolerations": [{"value": "x"}]}}, "migrations.tolerations[0].operator"),
    ({"migrations": {"nodeSelector": "kwok"}}, "migrations.nodeSelector"),
    ({"migrations": {"affinity": {"podAffinity": {REQ: [{}]}}}},
     f"migrations.affinity.podAffinity.{REQ}[0].topologyKey"),
]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"image": "registry.example/authorization-service"}, "image"),
        ({"jwt": {"previousSecretRef": {"name": "s"}}}, "jwt.previousSecretRef.key"),
        ({"jwt": {"previousSecretRef": "s"}}, "jwt.previousSecretRef"),
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
        ({"probes": []}, "probes"),
        ({"probes": {"readiness": 5}}, "probes.readiness"),
        ({"probes": {"readiness": {"periodSeconds": 0}}}, "probes.readiness.periodSeconds"),
        ({"probes": {"readiness": {"initialDelaySeconds": -1}}},
         "probes.readiness.initialDelaySeconds"),
        ({"probes": {"liveness": {"timeoutSeconds": 3601}}}, "probes.liveness.timeoutSeconds"),
        ({"probes": {"liveness": {"failureThreshold": 101}}},
         "probes.liveness.failureThreshold"),
        ({"probes": {"liveness": {"periodSeconds": "10"}}}, "probes.liveness.periodSeconds"),
        *PLACEMENT_ERRORS,
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


# ---------------------------------------------------------------------------------------------
# placement: nodeSelector, tolerations, affinity

ON_KWOK = {"nodeSelector": {"type": "kwok"},
           "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}]}
SPREAD = {"podAntiAffinity": {PREF: [{"weight": 50, "podAffinityTerm": {
    "topologyKey": "kubernetes.io/hostname",
    "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "authorization-service"}}}}]}}


def test_no_placement_unless_asked() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.placement == Placement()
    assert spec.migrations.placement == Placement()
    assert spec.placement.pod_fields() == {}


def test_placement_is_parsed_and_the_job_inherits_it() -> None:
    spec = parse_spec(spec_body(**ON_KWOK, affinity=SPREAD))
    assert spec.placement.node_selector == (("type", "kwok"),)
    assert spec.placement.tolerations == (Toleration(key="kwok.x-k8s.io/node",
                                                     operator="Exists"),)
    assert spec.placement.pod_fields() == {**ON_KWOK, "affinity": SPREAD}
    assert spec.migrations.placement == spec.placement


def test_the_jobs_placement_replaces_the_pods_field_by_field() -> None:
    """A field given under migrations (even empty) replaces the pods' one; the others are
    inherited."""
    spec = parse_spec(spec_body(**ON_KWOK, affinity=SPREAD, migrations={
        "nodeSelector": {}, "affinity": {},
        "tolerations": [{"key": "batch", "value": "yes", "effect": "NoExecute",
                         "tolerationSeconds": 60}]}))
    assert spec.migrations.placement.pod_fields() == {"tolerations": [
        {"key": "batch", "operator": "Equal", "value": "yes", "effect": "NoExecute",
         "tolerationSeconds": 60}]}
    assert spec.placement.pod_fields() == {**ON_KWOK, "affinity": SPREAD}


def test_every_affinity_field_is_kept_and_nulls_are_dropped() -> None:
    affinity: dict[str, Any] = {
        "nodeAffinity": {
            REQ: {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]},
                                      {"key": "cores", "operator": "Gt", "values": ["4"]}],
                 "matchFields": [{"key": "metadata.name", "operator": "NotIn",
                                  "values": ["n1"]}]}]},
            PREF: [{"weight": 1, "preference": {"matchExpressions": [
                {"key": "ssd", "operator": "Exists"}]}}]},
        "podAffinity": {REQ: [{"topologyKey": "zone", "namespaces": ["db"],
                               "namespaceSelector": {"matchLabels": {"team": "x"}},
                               "matchLabelKeys": ["pod-template-hash"],
                               "mismatchLabelKeys": ["tenant"],
                               "labelSelector": {"matchExpressions": [
                                   {"key": "app", "operator": "In", "values": ["postgres"]}]}}]},
        **SPREAD,
    }
    spec = parse_spec(spec_body(affinity={**affinity, "podAffinity": {
        **affinity["podAffinity"], PREF: None}}))
    assert spec.placement.pod_fields() == {"affinity": affinity}
