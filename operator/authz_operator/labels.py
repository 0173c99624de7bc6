"""Names, labels and ownership of the children: written once, read by builders and readers.

Pure. `resources` (the builders) stamps these on every child; the reconciler, the lifecycle
and the plugin select by them.

Selectors. The serving pods (the Deployment's) carry `app.kubernetes.io/component: server`,
the migration Job's pods `component: migration`. The Deployment, the Service and the
PodDisruptionBudget select `serving_selector` (name, instance, component=server), so a Job's
pods are never counted by the PDB (a PDB over pods of a Job cannot be computed) nor routed
to. Deployments made by operator versions before the component label select only name and
instance (`selector_labels`); a Deployment's selector is immutable, see
`lifecycle.selector` for how they are replaced.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authz_operator import kinds
from authz_operator.spec import API_VERSION, KIND, image_tag

APP_NAME = "authorization-service"
MANAGED_BY = "authz-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
# kopf's own bookkeeping on the resource (handlers.configure): its progress and the
# last-handled configuration (a copy of the whole spec), which nothing of ours reads.
KOPF_ANNOTATION_PREFIX = "authz.rwadurian.io"


class Component(enum.StrEnum):
    """What a pod of the resource does: serve, or migrate the schema."""

    SERVER = "server"
    MIGRATION = "migration"


@dataclass(frozen=True)
class Owner:
    """The AuthorizationService that owns the children."""

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class ChildNames:
    deployment: str
    service: str
    service_account: str
    config_map: str
    hpa: str
    pdb: str
    ingress: str

    def job(self, revision: int, down: bool = False) -> str:
        return f"{self.deployment}-{'rollback' if down else 'migrate'}-{revision}"


def child_name(owner_name: str, kind: str) -> str:
    return kinds.CHILD[kind].name(owner_name)


def child_names(name: str) -> ChildNames:
    """Every child's fixed name. The CRD limits `name` so that all of these are valid."""
    return ChildNames(
        deployment=child_name(name, "Deployment"), service=child_name(name, "Service"),
        service_account=child_name(name, "ServiceAccount"),
        config_map=child_name(name, "ConfigMap"), hpa=child_name(name, "HorizontalPodAutoscaler"),
        pdb=child_name(name, "PodDisruptionBudget"), ingress=child_name(name, "Ingress"),
    )


def selector_labels(name: str) -> dict[str, str]:
    """The labels every pod of the resource has (serving and migrating): stable for the life
    of the resource. Alone, the selector of Deployments made by earlier operator versions."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: name}


def serving_selector(name: str) -> dict[str, str]:
    """The labels that select the serving pods only (Deployment, Service, PDB)."""
    return {**selector_labels(name), LABEL_COMPONENT: str(Component.SERVER)}


def selector_string(selector: Mapping[str, str]) -> str:
    """A label selector as the API's query string (and status.selector) writes it."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


# Every object the operator makes carries this label: kopf watches the children's kinds by
# it (handlers.configure), the indexes and the resync select by it.
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
MANAGED_SELECTOR = selector_string(MANAGED)
# The serving pods of every resource (the instance label aside): the only pods a reconcile
# reads (lifecycle.observe.crash_message). A migration Job's pods are not watched: what a
# reconcile needs of them, the Job's status and a finished pod's termination message, comes
# from the Job's watch and one LIST (reconciler.termination_message).
SERVING_PODS = {**MANAGED, LABEL_NAME: APP_NAME, LABEL_COMPONENT: str(Component.SERVER)}


# Of the serving pods, only the running ones: a crash-looping container (the only pod state a
# reconcile reads) keeps its pod in phase Running, as restartPolicy Always does for every
# Deployment's pod. A pod's Pending events (created, scheduled, its containers being made),
# half of its events or more, are then never sent (issue 11).
RUNNING_PODS = "status.phase=Running"


def watch_selector(kind: str) -> str:
    """The label selector the API server applies to the operator's watch (and the resync's
    LIST) of an owned kind: ours, and of pods only the serving ones."""
    return selector_string(SERVING_PODS if kind == kinds.POD.kind else MANAGED)


def watch_fields(kind: str) -> str:
    """The field selector of the same watch and LIST: of pods only the running ones."""
    return RUNNING_PODS if kind == kinds.POD.kind else ""


def labels(name: str, image: str) -> dict[str, str]:
    version = image_tag(image)[:63].rstrip("._-") or "unknown"
    return {
        **selector_labels(name),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/version": version,
    }


def pod_labels(name: str, image: str, component: Component) -> dict[str, str]:
    """The labels of a pod template: the common ones and what the pod does."""
    return {**labels(name, image), LABEL_COMPONENT: str(component)}


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION, "kind": KIND, "name": owner.name, "uid": owner.uid,
        "controller": True, "blockOwnerDeletion": True,
    }
