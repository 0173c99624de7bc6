"""Pure builders: the desired children of one AuthorizationService.

`desired_*(spec, owner, target) -> dict | None`: same input, same output (byte for byte once
serialised with sorted keys); None means "this child should not exist". Hash annotations
and the seed's defaults (probes, user 1001, ...) live here and nowhere else; names, labels
and owner references come from `labels` (re-exported here).

`selector`: the pod selector of the Deployment, the Service and the PDB. None (always, but
while a Deployment of an earlier operator version is replaced) means `serving_selector`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authz_operator import kinds
from authz_operator.labels import (
    APP_NAME,
    MANAGED_BY,
    ChildNames,
    Component,
    Owner,
    child_name,
    child_names,
    labels,
    owner_reference,
    pod_labels,
    selector_labels,
    selector_string,
    serving_selector,
)
from authz_operator.spec import Probe, Spec
from authz_operator.status import Direction

Obj = dict[str, Any]
Selector = Mapping[str, str] | None
__all__ = [  # what this module re-exports from `labels` (its own names are public too)
    "APP_NAME", "MANAGED_BY", "ChildNames", "Component", "Owner", "child_name", "child_names",
    "labels", "owner_reference", "pod_labels", "selector_labels", "selector_string",
    "serving_selector",
]

FIELD_MANAGER = "authz-operator"
# Owns a Deployment's spec.replicas from its creation on, when an HPA scales it: our applies
# leave `replicas` out then, and a field only we had applied would be removed (reset to 1).
REPLICAS_MANAGER = "authz-operator-replicas"
CONTAINER = "authorization-service"
MIGRATE_CONTAINER = "migrate"

ANN_DESIRED_HASH = "rwadurian.io/desired-hash"
ANN_CONFIG_HASH = "rwadurian.io/config-hash"
ANN_SECRETS_HASH = "rwadurian.io/secrets-hash"
ANN_REVISION = "rwadurian.io/revision"
ANN_RETRY = "rwadurian.io/retry"
ANN_ROLLBACK_TO = "rwadurian.io/rollback-to"
LABEL_REVISION = "rwadurian.io/revision"
LABEL_MIGRATION = "rwadurian.io/migration"

RUN_AS_USER = 1001
TMP_VOLUME = "tmp"


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


# ---------------------------------------------------------------------------------------------
# hashes and metadata


def content_hash(value: Any) -> str:
    """A short, stable hash of any JSON-able value."""
    raw = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def secrets_hash(versions: Mapping[str, str]) -> str:
    """Hash of the referenced Secrets' resourceVersions: a changed Secret rolls the pods."""
    return content_hash(sorted(versions.items()))


def _meta(owner: Owner, name: str, image: str, annotations: Mapping[str, str] | None = None,
          extra_labels: Mapping[str, str] | None = None) -> Obj:
    meta: Obj = {
        "name": name, "namespace": owner.namespace,
        "labels": {**labels(owner.name, image), **(extra_labels or {})},
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _finish(obj: Obj) -> Obj:
    """Stamp the hash of the whole desired object, so a changed desire is cheap to detect."""
    digest = content_hash(obj)
    obj["metadata"].setdefault("annotations", {})[ANN_DESIRED_HASH] = digest
    return obj


def desired_hash(obj: Mapping[str, Any]) -> str | None:
    value = (obj.get("metadata", {}).get("annotations") or {}).get(ANN_DESIRED_HASH)
    return str(value) if value is not None else None


# ---------------------------------------------------------------------------------------------
# configuration


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
)


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
    return [by_name[v] for v in ENV_ORDER if v in by_name]


# ---------------------------------------------------------------------------------------------
# children


def desired_configmap(spec: Spec, owner: Owner, target: Target) -> Obj:
    names = child_names(owner.name)
    return _finish({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": _meta(owner, names.config_map, target.image),
        "data": target.config_data,
    })


def desired_service_account(spec: Spec, owner: Owner, target: Target) -> Obj:
    names = child_names(owner.name)
    return _finish({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": _meta(owner, names.service_account, target.image),
        "automountServiceAccountToken": False,
    })


def _selector(owner: Owner, selector: Selector) -> dict[str, str]:
    return dict(selector) if selector is not None else serving_selector(owner.name)


def desired_service(spec: Spec, owner: Owner, target: Target, selector: Selector = None) -> Obj:
    names = child_names(owner.name)
    return _finish({
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(owner, names.service, target.image),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(owner, selector),
            "ports": [{"name": "http", "port": spec.port, "targetPort": "http",
                       "protocol": "TCP"}],
        },
    })


def _pod_security_context() -> Obj:
    return {
        "runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER, "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security_context() -> Obj:
    return {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "runAsNonRoot": True, "runAsUser": RUN_AS_USER,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(spec: Spec) -> Obj:
    r = spec.resources
    return {
        "requests": {"cpu": r.requests.cpu, "memory": r.requests.memory},
        "limits": {"cpu": r.limits.cpu, "memory": r.limits.memory},
    }


def _pod_spec_common(spec: Spec, owner: Owner) -> Obj:
    pod: Obj = {
        "serviceAccountName": child_names(owner.name).service_account,
        "automountServiceAccountToken": False,
        "securityContext": _pod_security_context(),
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
    }
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in spec.image_pull_secrets]
    return pod


def _probe(path: str, probe: Probe) -> Obj:
    """An HTTP probe on the service's port. timeoutSeconds and failureThreshold are sent even
    at the API server's defaults (1 and 3): what we send is what the spec says."""
    return {
        "httpGet": {"path": path, "port": "http"},
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "failureThreshold": probe.failure_threshold,
    }


def desired_deployment(spec: Spec, owner: Owner, target: Target,
                       selector: Selector = None) -> Obj:
    names = child_names(owner.name)
    container: Obj = {
        "name": CONTAINER,
        "image": target.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["authz-service", "serve"],
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": env(spec, names.config_map),
        "resources": _resources(spec),
        "readinessProbe": _probe("/health/ready", spec.probes.readiness),
        "livenessProbe": _probe("/health/live", spec.probes.liveness),
        "securityContext": _container_security_context(),
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],  # noqa: S108
    }
    deployment_spec: Obj = {
        "selector": {"matchLabels": _selector(owner, selector)},
        "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
        "revisionHistoryLimit": spec.rollout.revision_history_limit,
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "template": {
            "metadata": {
                "labels": pod_labels(owner.name, target.image, Component.SERVER),
                "annotations": {
                    ANN_CONFIG_HASH: target.config_hash,
                    ANN_SECRETS_HASH: target.secrets_hash,
                },
            },
            "spec": {**_pod_spec_common(spec, owner), "containers": [container]},
        },
    }
    if not spec.autoscaling.enabled:
        # With an HPA the replica count belongs to the HPA: we must not fight it.
        deployment_spec["replicas"] = spec.replicas
    return _finish({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(owner, names.deployment, target.image),
        "spec": deployment_spec,
    })


def desired_hpa(spec: Spec, owner: Owner, target: Target) -> Obj | None:
    if not spec.autoscaling.enabled:
        return None
    a = spec.autoscaling
    names = child_names(owner.name)

    def metric(resource: str, utilization: int) -> Obj:
        return {"type": "Resource", "resource": {
            "name": resource, "target": {"type": "Utilization",
                                         "averageUtilization": utilization}}}

    return _finish({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(owner, names.hpa, target.image),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": names.deployment},
            "minReplicas": a.min_replicas, "maxReplicas": a.max_replicas,
            "metrics": [metric("cpu", a.target_cpu_utilization),
                        metric("memory", a.target_memory_utilization)],
        },
    })


def desired_pdb(spec: Spec, owner: Owner, target: Target,
                selector: Selector = None) -> Obj | None:
    """A PodDisruptionBudget only when more than one replica can run (else it blocks drains)."""
    if spec.max_possible_replicas <= 1:
        return None
    return _finish({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": _meta(owner, child_names(owner.name).pdb, target.image),
        "spec": {"maxUnavailable": 1,
                 "selector": {"matchLabels": _selector(owner, selector)}},
    })


def desired_ingress(spec: Spec, owner: Owner, target: Target) -> Obj | None:
    if not spec.ingress.enabled:
        return None
    ig = spec.ingress
    names = child_names(owner.name)
    return _finish({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": _meta(owner, names.ingress, target.image, annotations=dict(ig.annotations)),
        "spec": {
            "ingressClassName": ig.class_name,
            "rules": [{"host": ig.host, "http": {"paths": [{
                "path": ig.path, "pathType": "Prefix",
                "backend": {"service": {"name": names.service, "port": {"name": "http"}}},
            }]}}],
        },
    })


def desired_migration_job(spec: Spec, owner: Owner, target: Target, revision: int,
                          down_to: str | None = None) -> Obj:
    """The Job that migrates the schema for `revision` (`migrate up`), or, with `down_to`,
    takes it down to that version. Run with `target.image`: for a rollback that is the NEWER
    image, the only one that knows the newer migrations."""
    names = child_names(owner.name)
    command = ["authz-service", "migrate", "up"]
    if down_to is not None:
        command = ["authz-service", "migrate", "down", "--to", down_to]
    direction = Direction.DOWN if down_to else Direction.UP
    extra = {LABEL_REVISION: str(revision), LABEL_MIGRATION: str(direction)}
    container: Obj = {
        "name": MIGRATE_CONTAINER,
        "image": target.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": env(spec, names.config_map),
        "resources": _resources(spec),
        "securityContext": _container_security_context(),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],  # noqa: S108
    }
    return _finish({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _meta(owner, names.job(revision, down=down_to is not None), target.image,
                          annotations={ANN_REVISION: str(revision)}, extra_labels=extra),
        "spec": {
            "backoffLimit": spec.migrations.backoff_limit,
            "activeDeadlineSeconds": spec.migrations.active_deadline_seconds,
            "template": {
                "metadata": {"labels": {
                    **pod_labels(owner.name, target.image, Component.MIGRATION), **extra}},
                "spec": {**_pod_spec_common(spec, owner), "restartPolicy": "Never",
                         "containers": [container]},
            },
        },
    })


def with_replicas(deployment: Obj, replicas: int) -> Obj:
    """The desired Deployment, created with `replicas` (its desired hash unchanged: the
    count is the HPA's to change, not a difference from what we want)."""
    out: Obj = json.loads(json.dumps(deployment))
    out["spec"]["replicas"] = replicas
    return out


def replicas_only(deployment: Mapping[str, Any]) -> Obj:
    """What REPLICAS_MANAGER applies: the Deployment's identity and its spec.replicas."""
    meta = deployment["metadata"]
    return {"apiVersion": deployment["apiVersion"], "kind": deployment["kind"],
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {"replicas": deployment["spec"]["replicas"]}}


# The kinds the operator owns and may delete when no longer desired, in apply order.
OWNED_KINDS = kinds.OWNED_KINDS


def desired_children(spec: Spec, owner: Owner, target: Target,
                     selector: Selector = None) -> dict[str, Obj | None]:
    """Every owned child by kind (None: must not exist). The Job is not here: lifecycle
    decides when one is needed."""
    return {
        "ServiceAccount": desired_service_account(spec, owner, target),
        "ConfigMap": desired_configmap(spec, owner, target),
        "Service": desired_service(spec, owner, target, selector),
        "Deployment": desired_deployment(spec, owner, target, selector),
        "HorizontalPodAutoscaler": desired_hpa(spec, owner, target),
        "PodDisruptionBudget": desired_pdb(spec, owner, target, selector),
        "Ingress": desired_ingress(spec, owner, target),
    }

