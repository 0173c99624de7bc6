"""Every builder compared as a whole object, over spec variants."""

from __future__ import annotations

import json
from typing import Any

import pytest

from authz_operator import resources as r
from authz_operator.spec import parse_spec

from .samples import OWNER, spec_body

LABELS = {
    "app.kubernetes.io/name": "authorization-service",
    "app.kubernetes.io/instance": "authorization-service",
    "app.kubernetes.io/managed-by": "authz-operator",
    "app.kubernetes.io/version": "1.4.0",
}
SELECTOR = {   # the serving pods only: never the migration Job's
    "app.kubernetes.io/name": "authorization-service",
    "app.kubernetes.io/instance": "authorization-service",
    "app.kubernetes.io/component": "server",
}
LEGACY_SELECTOR = {   # what Deployments of earlier operator versions select
    "app.kubernetes.io/name": "authorization-service",
    "app.kubernetes.io/instance": "authorization-service",
}
OWNER_REFS = [{
    "apiVersion": "rwadurian.io/v1alpha1", "kind": "AuthorizationService",
    "name": "authorization-service", "uid": "uid-1", "controller": True,
    "blockOwnerDeletion": True,
}]
VERSIONS = {"authorization-secrets": "41"}


def build(**changes: Any) -> tuple[Any, r.Target]:
    spec = parse_spec(spec_body(**changes))
    return spec, r.target_from_spec(spec, VERSIONS)


def strip_hash(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The desired-hash annotation is checked separately (it is a hash of the rest)."""
    if obj is None:
        return None
    out = json.loads(json.dumps(obj))
    anns = out["metadata"]["annotations"]
    assert anns.pop(r.ANN_DESIRED_HASH) == r.content_hash(strip_hash_input(obj))
    if not anns:
        del out["metadata"]["annotations"]
    return out  # type: ignore[no-any-return]


def strip_hash_input(obj: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(obj))
    anns = out["metadata"]["annotations"]
    del anns[r.ANN_DESIRED_HASH]
    if not anns:
        del out["metadata"]["annotations"]
    return out  # type: ignore[no-any-return]


def meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "rwadurian", "labels": LABELS,
            "ownerReferences": OWNER_REFS, **extra}


ENV = [
    {"name": "NODE_ENV", "valueFrom": {"configMapKeyRef": {
        "name": "authorization-service-config", "key": "node-env"}}},
    {"name": "PORT", "valueFrom": {"configMapKeyRef": {
        "name": "authorization-service-config", "key": "port"}}},
    {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {
        "name": "authorization-secrets", "key": "database-url"}}},
    {"name": "REDIS_HOST", "valueFrom": {"configMapKeyRef": {
        "name": "authorization-service-config", "key": "redis-host"}}},
    {"name": "REDIS_PORT", "valueFrom": {"configMapKeyRef": {
        "name": "authorization-service-config", "key": "redis-port"}}},
    {"name": "KAFKA_BROKERS", "valueFrom": {"configMapKeyRef": {
        "name": "authorization-service-config", "key": "kafka-brokers"}}},
    {"name": "KAFKA_CLIENT_ID", "valueFrom": {"configMapKeyRef": {
        "name": "authorization-service-config", "key": "kafka-client-id"}}},
    {"name": "KAFKA_CONSUMER_GROUP", "valueFrom": {"configMapKeyRef": {
        "name": "authorization-service-config", "key": "kafka-consumer-group"}}},
    {"name": "JWT_SECRET", "valueFrom": {"secretKeyRef": {
        "name": "authorization-secrets", "key": "jwt-secret"}}},
    {"name": "JWT_EXPIRES_IN", "valueFrom": {"configMapKeyRef": {
        "name": "authorization-service-config", "key": "jwt-expires-in"}}},
    {"name": "IDENTITY_SERVICE_URL", "valueFrom": {"configMapKeyRef": {
        "name": "authorization-service-config", "key": "identity-service-url"}}},
    {"name": "REFERRAL_SERVICE_URL", "valueFrom": {"configMapKeyRef": {
        "name": "authorization-service-config", "key": "referral-service-url"}}},
    {"name": "STATISTICS_SERVICE_URL", "valueFrom": {"configMapKeyRef": {
        "name": "authorization-service-config", "key": "statistics-service-url"}}},
    {"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {
        "name": "authorization-service-config", "key": "log-level"}}},
    {"name": "WEB_CONCURRENCY", "valueFrom": {"resourceFieldRef": {
        "resource": "limits.cpu", "divisor": "1"}}},
]
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
    "runAsUser": 1001, "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_COMMON = {
    "serviceAccountName": "authorization-service",
    "automountServiceAccountToken": False,
    "securityContext": {"runAsNonRoot": True, "runAsUser": 1001, "runAsGroup": 1001,
                        "fsGroup": 1001, "seccompProfile": {"type": "RuntimeDefault"}},
    "volumes": [{"name": "tmp", "emptyDir": {}}],
    "imagePullSecrets": [{"name": "registry-credentials"}],
}
RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"},
             "limits": {"cpu": "1", "memory": "1Gi"}}


def expected_deployment(target: r.Target, replicas: int | None = None,
                        env: list[dict[str, Any]] = ENV,
                        versions: dict[str, str] = VERSIONS) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": SELECTOR},
        "progressDeadlineSeconds": 600,
        "revisionHistoryLimit": 10,
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": {**LABELS, "app.kubernetes.io/component": "server"},
                         "annotations": {
                "rwadurian.io/config-hash": target.config_hash,
                "rwadurian.io/secrets-hash": r.secrets_hash(versions),
            }},
            # The service drains for 5 s on SIGTERM (unready, still serving) before it stops
            # accepting; the kubelet waits 40 s for the drain, in-flight requests and relay.
            "spec": {**POD_COMMON, "terminationGracePeriodSeconds": 40, "containers": [{
                "name": "authorization-service",
                "image": "registry.example/authorization-service:1.4.0",
                "imagePullPolicy": "IfNotPresent",
                "command": ["authz-service", "serve"],
                "ports": [{"name": "http", "containerPort": 3002, "protocol": "TCP"}],
                "env": [*env, {"name": "SHUTDOWN_GRACE_MS", "value": "5000"}],
                "resources": RESOURCES,
                "readinessProbe": {"httpGet": {"path": "/health/ready", "port": "http"},
                                   "initialDelaySeconds": 10, "periodSeconds": 5,
                                   "timeoutSeconds": 1, "failureThreshold": 3},
                "livenessProbe": {"httpGet": {"path": "/health/live", "port": "http"},
                                  "initialDelaySeconds": 30, "periodSeconds": 10,
                                  "timeoutSeconds": 1, "failureThreshold": 3},
                "securityContext": CONTAINER_SECURITY,
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta("authorization-service"), "spec": spec}


def test_config_data_is_the_seed_configuration() -> None:
    _, target = build()
    assert target.config_data == {
        "node-env": "production", "port": "3002",
        "redis-host": "redis-master.redis.svc.cluster.local", "redis-port": "6379",
        "kafka-brokers": "kafka-0.kafka.svc.cluster.local:9092",
        "kafka-client-id": "authorization-service",
        "kafka-consumer-group": "authorization-service-group",
        "jwt-expires-in": "1h",
        "identity-service-url": "http://identity-service:3001",
        "referral-service-url": "http://referral-service:3003",
        "statistics-service-url": "http://statistics-service:3004",
        "log-level": "info",
    }


def test_configmap() -> None:
    spec, target = build()
    assert strip_hash(r.desired_configmap(spec, OWNER, target)) == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": meta("authorization-service-config"), "data": target.config_data,
    }


def test_service_account_mounts_no_token() -> None:
    spec, target = build()
    assert strip_hash(r.desired_service_account(spec, OWNER, target)) == {
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": meta("authorization-service"), "automountServiceAccountToken": False,
    }


@pytest.mark.parametrize("port", [3002, 8080])
def test_service(port: int) -> None:
    spec, target = build(port=port)
    assert strip_hash(r.desired_service(spec, OWNER, target)) == {
        "apiVersion": "v1", "kind": "Service", "metadata": meta("authorization-service"),
        "spec": {"type": "ClusterIP", "selector": SELECTOR,
                 "ports": [{"name": "http", "port": port, "targetPort": "http",
                            "protocol": "TCP"}]},
    }


def test_deployment_with_autoscaling_leaves_replicas_to_the_hpa() -> None:
    spec, target = build()
    assert strip_hash(r.desired_deployment(spec, OWNER, target)) == expected_deployment(target)


def test_deployment_without_autoscaling_sets_replicas() -> None:
    spec, target = build(autoscaling={"enabled": False}, replicas=4)
    assert strip_hash(r.desired_deployment(spec, OWNER, target)) == expected_deployment(
        target, replicas=4)


def test_deployment_with_redis_password_and_no_pull_secrets() -> None:
    spec, target = build(redis={"passwordSecretRef": {"name": "redis", "key": "password"}},
                         imagePullSecrets=[])
    dep = r.desired_deployment(spec, OWNER, target)
    pod = dep["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in pod
    env = pod["containers"][0]["env"]
    assert [e["name"] for e in env] == [
        *(v for v in r.ENV_ORDER if v != "JWT_SECRET_PREVIOUS"), "SHUTDOWN_GRACE_MS"]
    assert env[5] == {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "redis", "key": "password"}}}


def test_deployment_and_job_with_a_previous_jwt_secret() -> None:
    """During a JWT rotation the pods also read JWT_SECRET_PREVIOUS from its Secret key, and
    that Secret's version is part of the secrets hash (changing it rolls the pods)."""
    versions = {"authorization-secrets": "41", "jwt-previous": "7"}
    spec = parse_spec(spec_body(jwt={"previousSecretRef": {"name": "jwt-previous",
                                                           "key": "jwt-secret"}}))
    target = r.target_from_spec(spec, versions)
    previous = {"name": "JWT_SECRET_PREVIOUS", "valueFrom": {"secretKeyRef": {
        "name": "jwt-previous", "key": "jwt-secret"}}}
    jwt_at = next(i for i, e in enumerate(ENV) if e["name"] == "JWT_SECRET") + 1
    env = [*ENV[:jwt_at], previous, *ENV[jwt_at:]]
    assert strip_hash(r.desired_deployment(spec, OWNER, target)) == expected_deployment(
        target, env=env, versions=versions)
    job = r.desired_migration_job(spec, OWNER, target, 2)
    assert job["spec"]["template"]["spec"]["containers"][0]["env"] == env
    rotated = r.target_from_spec(spec, {**versions, "jwt-previous": "8"})
    assert rotated.secrets_hash != target.secrets_hash
    assert r.desired_deployment(spec, OWNER, rotated)["spec"]["template"] != r.desired_deployment(
        spec, OWNER, target)["spec"]["template"]


def test_probes_come_from_the_spec_on_fixed_paths() -> None:
    spec, target = build(probes={
        "readiness": {"initialDelaySeconds": 0, "periodSeconds": 2, "timeoutSeconds": 4,
                      "failureThreshold": 6},
        "liveness": {"periodSeconds": 20}})
    [c] = r.desired_deployment(spec, OWNER, target)["spec"]["template"]["spec"]["containers"]
    assert (c["readinessProbe"], c["livenessProbe"]) == (
        {"httpGet": {"path": "/health/ready", "port": "http"}, "initialDelaySeconds": 0,
         "periodSeconds": 2, "timeoutSeconds": 4, "failureThreshold": 6},
        {"httpGet": {"path": "/health/live", "port": "http"}, "initialDelaySeconds": 30,
         "periodSeconds": 20, "timeoutSeconds": 1, "failureThreshold": 3})


def test_changed_secret_version_or_config_changes_the_pod_template() -> None:
    spec, target = build()
    dep = r.desired_deployment(spec, OWNER, target)
    other_secret = r.target_from_spec(spec, {"authorization-secrets": "42"})
    dep2 = r.desired_deployment(spec, OWNER, other_secret)
    assert dep["spec"]["template"] != dep2["spec"]["template"]
    assert r.desired_hash(dep) != r.desired_hash(dep2)
    spec3, target3 = build(logLevel="debug")
    dep3 = r.desired_deployment(spec3, OWNER, target3)
    assert (dep3["spec"]["template"]["metadata"]["annotations"][r.ANN_CONFIG_HASH]
            != dep["spec"]["template"]["metadata"]["annotations"][r.ANN_CONFIG_HASH])


def test_hpa() -> None:
    spec, target = build(autoscaling={"minReplicas": 3, "maxReplicas": 7,
                                      "targetCPUUtilization": 60})
    assert strip_hash(r.desired_hpa(spec, OWNER, target)) == {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": meta("authorization-service"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": "authorization-service"},
            "minReplicas": 3, "maxReplicas": 7,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {
                    "type": "Utilization", "averageUtilization": 60}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {
                    "type": "Utilization", "averageUtilization": 80}}},
            ],
        },
    }


def test_no_hpa_when_autoscaling_is_off() -> None:
    spec, target = build(autoscaling={"enabled": False})
    assert r.desired_hpa(spec, OWNER, target) is None


@pytest.mark.parametrize(
    ("changes", "wanted"),
    [
        ({}, True),
        ({"autoscaling": {"enabled": False}, "replicas": 2}, True),
        ({"autoscaling": {"enabled": False}, "replicas": 1}, False),
        ({"autoscaling": {"minReplicas": 1, "maxReplicas": 1}}, False),
    ],
)
def test_pdb_only_when_more_than_one_replica_can_run(changes: dict[str, Any],
                                                      wanted: bool) -> None:
    spec, target = build(**changes)
    pdb = r.desired_pdb(spec, OWNER, target)
    if not wanted:
        assert pdb is None
        return
    assert strip_hash(pdb) == {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": meta("authorization-service"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}},
    }


def test_ingress() -> None:
    spec, target = build()
    assert strip_hash(r.desired_ingress(spec, OWNER, target)) == {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": meta("authorization-service", annotations={
            "nginx.ingress.kubernetes.io/rewrite-target": "/"}),
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": "api.rwadurian.com", "http": {"paths": [{
                "path": "/authorization", "pathType": "Prefix",
                "backend": {"service": {"name": "authorization-service",
                                        "port": {"name": "http"}}},
            }]}}],
        },
    }


def test_no_ingress_when_disabled() -> None:
    spec, target = build(ingress={"enabled": False})
    assert r.desired_ingress(spec, OWNER, target) is None


def test_migration_job_up_and_down() -> None:
    spec, target = build()
    job = r.desired_migration_job(spec, OWNER, target, 3)
    extra = {"rwadurian.io/revision": "3", "rwadurian.io/migration": "up"}
    assert strip_hash(job) == {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {**meta("authorization-service-migrate-3",
                            annotations={"rwadurian.io/revision": "3"}),
                     "labels": {**LABELS, **extra}},
        "spec": {
            "backoffLimit": 3, "activeDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": {**LABELS, **extra,
                                        "app.kubernetes.io/component": "migration"}},
                "spec": {**POD_COMMON, "restartPolicy": "Never", "containers": [{
                    "name": "migrate",
                    "image": "registry.example/authorization-service:1.4.0",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["authz-service", "migrate", "up"],
                    "env": ENV, "resources": RESOURCES,
                    "securityContext": CONTAINER_SECURITY,
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }]},
            },
        },
    }
    down = r.desired_migration_job(spec, OWNER, target, 3, down_to="0002")
    assert down["metadata"]["name"] == "authorization-service-rollback-3"
    assert down["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "authz-service", "migrate", "down", "--to", "0002"]


def test_builders_are_deterministic() -> None:
    spec, target = build()
    first = json.dumps(r.desired_children(spec, OWNER, target), sort_keys=True)
    spec2, target2 = build()
    assert json.dumps(r.desired_children(spec2, OWNER, target2), sort_keys=True) == first


def test_version_label_is_a_valid_label_value() -> None:
    long_tag = "v" + "1" * 100 + "-"
    assert r.labels("x", f"registry.example/a:{long_tag}")["app.kubernetes.io/version"] == (
        "v" + "1" * 62)


def test_serving_selectors_match_the_servers_and_not_the_migration_pods() -> None:
    spec, target = build()
    dep = r.desired_deployment(spec, OWNER, target)
    job = r.desired_migration_job(spec, OWNER, target, revision=1)
    pdb = r.desired_pdb(spec, OWNER, target)
    assert pdb is not None
    server = dep["spec"]["template"]["metadata"]["labels"]
    migration = job["spec"]["template"]["metadata"]["labels"]
    for selector in (dep["spec"]["selector"]["matchLabels"],
                     r.desired_service(spec, OWNER, target)["spec"]["selector"],
                     pdb["spec"]["selector"]["matchLabels"]):
        assert selector == SELECTOR
        assert selector.items() <= server.items()
        assert not selector.items() <= migration.items()


def test_a_legacy_selector_is_kept_where_it_is_given() -> None:
    """While a Deployment of an earlier version is replaced, its selector (immutable) is
    kept, and the Service and PDB select what it selects; the pods get the label anyway."""
    spec, target = build()
    children = r.desired_children(spec, OWNER, target, selector=LEGACY_SELECTOR)
    dep, svc, pdb = (children[k] for k in ("Deployment", "Service", "PodDisruptionBudget"))
    assert dep is not None
    assert svc is not None
    assert pdb is not None
    assert dep["spec"]["selector"]["matchLabels"] == LEGACY_SELECTOR
    assert svc["spec"]["selector"] == LEGACY_SELECTOR
    assert pdb["spec"]["selector"]["matchLabels"] == LEGACY_SELECTOR
    assert dep["spec"]["template"] == r.desired_deployment(spec, OWNER, target)["spec"][
        "template"]


def test_placement_lands_in_the_pods_of_the_deployment_and_the_job() -> None:
    """nodeSelector, tolerations and affinity on the service's pods; the Job's pod gets the
    same unless migrations.<field> replaces one; nothing at all without them."""
    tolerations = [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}]
    affinity = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}}
    spec, target = build(nodeSelector={"type": "kwok"}, tolerations=tolerations,
                         affinity=affinity, migrations={"affinity": {}})
    placement = {"nodeSelector": {"type": "kwok"}, "tolerations": tolerations}
    expected = expected_deployment(target)
    expected["spec"]["template"]["spec"].update({**placement, "affinity": affinity})
    assert strip_hash(r.desired_deployment(spec, OWNER, target)) == expected
    job = r.desired_migration_job(spec, OWNER, target, 3)
    plain_spec, plain_target = build()
    plain_job = r.desired_migration_job(plain_spec, OWNER, plain_target, 3)
    assert job["spec"]["template"]["spec"] == {**plain_job["spec"]["template"]["spec"],
                                               **placement}
    assert r.desired_hash(r.desired_deployment(plain_spec, OWNER, plain_target)) != r.desired_hash(
        r.desired_deployment(spec, OWNER, target))

