"""Every kind the operator and the plugin talk about, written once. Pure.

From this registry come the API paths (`kube`), the builders' child names and apply order
(`resources`), the child watches (`handlers`) and the plugin's object classes and children
tree (`plugin`). Adding a child kind means one `Child` line here (plus its builder).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from authz_operator.spec import GROUP, KIND, PLURAL, VERSION


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str          # "" for the core group
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if namespace is not None:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name)}"
        if sub is not None:
            base += f"/{sub}"
        return base


@dataclass(frozen=True)
class Child:
    """A child the builders make: one per AuthorizationService, with a fixed name."""

    kind: Kind
    suffix: str = ""         # its name is the owner's name plus this
    optional: bool = False   # absent on purpose when the spec turns it off (the plugin hides it)

    def name(self, owner: str) -> str:
        return owner + self.suffix


RESOURCE = Kind(KIND, GROUP, VERSION, PLURAL)
SERVICE_ACCOUNT = Kind("ServiceAccount", "", "v1", "serviceaccounts")
CONFIG_MAP = Kind("ConfigMap", "", "v1", "configmaps")
SERVICE = Kind("Service", "", "v1", "services")
DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments")
HPA = Kind("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers")
PDB = Kind("PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets")
INGRESS = Kind("Ingress", "networking.k8s.io", "v1", "ingresses")
JOB = Kind("Job", "batch", "v1", "jobs")          # migration Jobs: one per revision, by label
POD = Kind("Pod", "", "v1", "pods")
REPLICA_SET = Kind("ReplicaSet", "apps", "v1", "replicasets")   # listed: orphans (not watched)
SECRET = Kind("Secret", "", "v1", "secrets")
EVENT = Kind("Event", "", "v1", "events")

# The children, in apply order; the operator deletes those no longer desired.
CHILDREN: tuple[Child, ...] = (
    Child(SERVICE_ACCOUNT),
    Child(CONFIG_MAP, suffix="-config"),
    Child(SERVICE),
    Child(DEPLOYMENT),
    Child(HPA, optional=True),
    Child(PDB, optional=True),
    Child(INGRESS, optional=True),
)
CHILD: dict[str, Child] = {c.kind.kind: c for c in CHILDREN}
OWNED_KINDS: tuple[str, ...] = tuple(CHILD)
OPTIONAL_KINDS = frozenset(c.kind.kind for c in CHILDREN if c.optional)

# What wakes a reconcile besides the resource itself (Secrets are watched by reference):
# the children, the migration Jobs, and the pods (a crashing pod of a rollout is noticed
# without waiting for the progress deadline).
WATCHED: tuple[Kind, ...] = (*(c.kind for c in CHILDREN), JOB, POD)

# Every kind `kube` reads or writes, by name.
KINDS: dict[str, Kind] = {k.kind: k for k in (*WATCHED, REPLICA_SET, SECRET, EVENT, RESOURCE)}

# What the plugin reads: the resource, its children and Jobs, and their events.
PLUGIN_KINDS: tuple[Kind, ...] = (RESOURCE, *(c.kind for c in CHILDREN), JOB, EVENT)
