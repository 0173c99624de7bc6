"""Pure builders: the desired children of one AuthorizationService.

`desired_*(spec, owner, target) -> dict | None`: same input, same output (byte for byte once
serialised with sorted keys); None means "this child should not exist". Hash annotations
and the seed's defaults (probes, user 1001, ...) live here and nowhere else; names, labels
and owner references come from `labels`, the pods' configuration and environment from
`podconfig` (both re-exported here).

`selector`: the pod selector of the Deployment, the Service and the PDB. None (always, but
while a Deployment of an earlier operator version is replaced) means `serving_selector`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from authz_operator import kinds
from authz_operator.labels import (
    APP_NAME,
    LABEL_COMPONENT,
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
from authz_operator.podconfig import (
    CONFIG_ENV,
    ENV_ORDER,
    Target,
    config_data,
    content_hash,
    env,
    secrets_hash,
    target_from_spec,
)
from authz_operator.spec import Placement, Probe, Spec
from authz_operator.status import Direction

Obj = dict[str, Any]
Selector = Mapping[str, str] | None
__all__ = [  # what this module re-exports from `labels` and `podconfig` (its own names
    # are public too)
    "APP_NAME", "CONFIG_ENV", "ENV_ORDER", "LABEL_COMPONENT", "MANAGED_BY", "ChildNames",
    "Component", "Owner", "Target", "child_name", "child_names", "config_data", "content_hash",
    "env", "labels", "owner_reference", "pod_labels", "secrets_hash", "selector_labels",
    "selector_string", "serving_selector", "target_from_spec",
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


# ---------------------------------------------------------------------------------------------
# hashes and metadata


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


def _pod_spec_common(spec: Spec, owner: Owner, placement: Placement) -> Obj:
    """What the service's pods and the migration Job's pod share; `placement` is each one's
    (nodeSelector, tolerations, affinity: present only when set)."""
    pod: Obj = {
        "serviceAccountName": child_names(owner.name).service_account,
        "automountServiceAccountToken": False,
        "securityContext": _pod_security_context(),
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
    }
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in spec.image_pull_secrets]
    pod.update(placement.pod_fields())
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


# On SIGTERM the service turns unready and serves on for this long before it stops accepting:
# the time the endpoints controller and kube-proxy take to stop sending it new connections,
# so a rollout or a scale-down resets none. Then it finishes in-flight requests (10 s) and
# drains the outbox relay (at most 15 s); the kubelet's grace period covers all of it.
SHUTDOWN_GRACE_MS = 5000
TERMINATION_GRACE_SECONDS = 40


def desired_deployment(spec: Spec, owner: Owner, target: Target,
                       selector: Selector = None) -> Obj:
    names = child_names(owner.name)
    container: Obj = {
        "name": CONTAINER,
        "image": target.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["authz-service", "serve"],
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": [*env(spec, names.config_map),
                {"name": "SHUTDOWN_GRACE_MS", "value": str(SHUTDOWN_GRACE_MS)}],
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
            "spec": {**_pod_spec_common(spec, owner, spec.placement),
                     "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                     "containers": [container]},
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
                "spec": {**_pod_spec_common(spec, owner, spec.migrations.placement),
                         "restartPolicy": "Never",
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

