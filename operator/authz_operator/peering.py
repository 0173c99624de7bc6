"""kopf's peering object, which two replicas of the operator need to never both act.

Without `settings.peering.mandatory` kopf starts every replica unpaused and pauses the
lower one only once its watch of the peering object shows the other: a replica started
beside an acting one (every rollout of the operator's Deployment) first reconciled every
resource at the same time as the other. Mandatory, a replica starts paused and acts only
once the peering object says it is the highest live one; so the object must exist, and a
replica says so loudly when it does not (it would otherwise wait in silence).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from authz_operator.kube import Kube, KubeError

log = logging.getLogger(__name__)
API = "/apis/kopf.dev/v1"


def object_paths(name: str, clusterwide: bool, namespaces: Sequence[str]) -> list[str]:
    """The API paths of the peering objects a replica coordinates through: the cluster's
    ClusterKopfPeering, or a KopfPeering in each namespace named exactly (a pattern's
    namespaces use the cluster-wide one)."""
    if clusterwide:
        return [f"{API}/clusterkopfpeerings/{name}"]
    return [f"{API}/namespaces/{ns}/kopfpeerings/{name}" for ns in namespaces]


def missing(kube: Kube, paths: Sequence[str]) -> list[str]:
    """Those of `paths` the API server does not have."""
    return [path for path in paths if not kube.exists(path)]


def say_if_missing(kube: Kube, paths: Sequence[str]) -> None:
    """An error line for each of `paths` that does not exist. A failed check is a warning,
    never a failed start: the check only explains a pause, it does not cause one."""
    try:
        absent = missing(kube, paths)
    except KubeError as exc:
        log.warning("could not check that kopf's peering objects exist: %s", exc)
        return
    for path in absent:
        log.error("kopf's peering object %s does not exist: this replica acts on nothing "
                  "until it does (it is part of the install: docs/install.md)", path)
