"""Between steps 3 and 4: replace a Deployment whose selector an earlier version set. Pure.

Deployments made before the component label select name and instance only, which also
matches the migration Job's pods. A Deployment's selector is immutable, so such a Deployment
is replaced, in steps that each keep every serving pod owned and routed to:

1. RELABEL: apply the desired Deployment but with its live selector. The pod template gains
   `app.kubernetes.io/component: server`: an ordinary rolling update (maxUnavailable 0). The
   Service and the PDB keep selecting what the live Deployment selects, old and new pods.
2. ORPHAN: once that rollout is complete (every pod has the label), delete the Deployment with
   propagationPolicy=Orphan. Its ReplicaSets and pods stay and keep serving; nothing else is
   written meanwhile (WAIT while the garbage collector orphans them).
3. ADOPT: create the Deployment with the serving selector and the same pod template. The
   Deployment controller adopts the orphaned ReplicaSet whose labels match (the labelled one)
   and, its template being equal, keeps it as the current one: no pod is replaced. With an
   HPA the new Deployment starts with the orphans' replica count (not the default 1), handed
   over to a second field manager so that later applies without `replicas` keep it.
   Orphaned ReplicaSets without the label (older revisions, scaled to 0) are deleted.
4. CLEANUP: an orphaned ReplicaSet that still has pods is deleted only once the new
   Deployment's rollout is complete.

The operator does not watch ReplicaSets (six events a resource, all about ReplicaSets with
an owner, issue 11): `orphans_wanted` says when a reconcile lists them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from authz_operator import resources as r
from authz_operator.lifecycle.model import Obj
from authz_operator.lifecycle.observe import controlled_by
from authz_operator.status import Event, Phase, Reason
from authz_operator.workload import rollout_state


class Step(enum.StrEnum):
    NONE = "None"          # the Deployment (or its absence) needs nothing special
    RELABEL = "Relabel"    # roll the label onto the pods, under the live selector
    ORPHAN = "Orphan"      # delete the Deployment, orphaning its ReplicaSets
    WAIT = "Wait"          # the Deployment is being deleted: leave it alone
    ADOPT = "Adopt"        # create it again: it adopts the labelled orphaned ReplicaSet
    CLEANUP = "Cleanup"    # delete orphaned ReplicaSets that nothing will adopt


@dataclass(frozen=True)
class SelectorPlan:
    step: Step
    selector: dict[str, str] | None = None     # build with it (None: the serving selector)
    replicas: int | None = None                 # ADOPT: create with this replica count
    delete_replica_sets: tuple[str, ...] = ()
    events: list[Event] = field(default_factory=list)

    @property
    def keep_deployment(self) -> bool:
        """The Deployment must not be applied this round."""
        return self.step in (Step.ORPHAN, Step.WAIT)

    @property
    def by_applying(self) -> bool:
        """The step is carried out by applying the Deployment (its events and deletes count
        only when it is applied: not while it is held, nor when it is in sync)."""
        return self.step in (Step.RELABEL, Step.ADOPT)


class Orphans(enum.Enum):
    """Whether this reconcile reads the resource's orphaned ReplicaSets (a LIST)."""

    NO = "no"             # none can matter: `selector_plan` does not read them
    LOOK = "look"         # they may exist: list them
    IF_FOUND = "if found" # list them again only if the last look found some (or there was
                          # none since the operator started): until the CLEANUP after ADOPT


# Phases that a resource reaches only once its Deployment has been made (a revision may not
# be recorded yet: the first rollout, or an earlier version's Deployment being relabelled).
DEPLOYED_PHASES = frozenset({Phase.ROLLING_OUT, Phase.ROLLING_BACK, Phase.READY,
                             Phase.DEGRADED, Phase.PAUSED})


def deployed(status: Mapping[str, Any]) -> bool:
    """Whether the resource has had a Deployment, by its status."""
    return bool(status.get("revision") or status.get("history")) \
        or status.get("phase") in DEPLOYED_PHASES


def orphans_wanted(dep: Obj | None, owner: r.Owner, status: Mapping[str, Any]) -> Orphans:
    """Without its Deployment a resource that has had one may have orphans (ours after
    ORPHAN, or someone's delete with --cascade=orphan); one that never had one has none (a
    new resource while its first migration runs). Beside a Deployment of the serving
    selector, orphans are left only by an ADOPT, until CLEANUP; beside any other Deployment
    (or one being deleted) `selector_plan` does not read them."""
    if dep is None:
        return Orphans.LOOK if deployed(status) else Orphans.NO
    if (not controlled_by(dep, owner) or dep["metadata"].get("deletionTimestamp")
            or live_selector(dep) != r.serving_selector(owner.name)):
        return Orphans.NO
    return Orphans.IF_FOUND


def live_selector(dep: Mapping[str, Any]) -> dict[str, str]:
    return dict(((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})


def orphaned_replica_sets(replica_sets: Sequence[Obj], owner: r.Owner) -> list[Obj]:
    """ReplicaSets of this resource (by labels) that no controller owns, by name."""
    ours = {**r.selector_labels(owner.name), "app.kubernetes.io/managed-by": r.MANAGED_BY}
    found = [rs for rs in replica_sets
             if ours.items() <= ((rs.get("metadata") or {}).get("labels") or {}).items()
             and not any(ref.get("controller")
                         for ref in rs["metadata"].get("ownerReferences") or [])]
    return sorted(found, key=lambda rs: str(rs["metadata"]["name"]))


def _serves(obj: Mapping[str, Any], owner: r.Owner) -> bool:
    """A pod template (or ReplicaSet) labelled as this resource's serving component."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return r.serving_selector(owner.name).items() <= labels.items()


def _name(rs: Mapping[str, Any]) -> str:
    return str(rs["metadata"]["name"])


def _pods(rs: Mapping[str, Any]) -> int:
    return max(int((rs.get("spec") or {}).get("replicas", 0)),
               int((rs.get("status") or {}).get("replicas", 0)))


def selector_plan(dep: Obj | None, replica_sets: Sequence[Obj], owner: r.Owner, held: bool,
                  autoscaling: bool, min_replicas: int) -> SelectorPlan:
    """Which step of the replacement this observation is at (module docstring). While the
    Deployment is held (a migration, missing Secrets) nothing is replaced: an old Deployment
    keeps its selector, orphaned ReplicaSets keep serving until it can be created."""
    name = r.child_name(owner.name, "Deployment")
    serving = r.serving_selector(owner.name)
    orphans = orphaned_replica_sets(replica_sets, owner)
    if dep is None:
        return _adopt(name, orphans, owner, autoscaling) if orphans and not held \
            else SelectorPlan(Step.NONE)
    if not controlled_by(dep, owner):
        return SelectorPlan(Step.NONE)
    live = live_selector(dep)
    if dep["metadata"].get("deletionTimestamp"):
        return SelectorPlan(Step.WAIT, selector=live)
    complete = rollout_state(dep, min_replicas).complete
    if live != serving:
        template = (dep.get("spec") or {}).get("template") or {}
        if held or not (complete and _serves(template, owner)):
            return SelectorPlan(Step.RELABEL, selector=live, events=[Event(
                "Normal", Reason.SELECTOR_MIGRATED,
                f"labelling the pods of Deployment {name} {r.LABEL_COMPONENT}="
                f"{r.Component.SERVER} (a rolling update, under its old selector), so that it "
                f"can be replaced by one selecting only the serving pods")])
        return SelectorPlan(Step.ORPHAN, selector=live, events=[Event(
            "Normal", Reason.SELECTOR_MIGRATED,
            f"Deployment {name} selects {r.selector_string(live)}, set by an earlier "
            f"operator version, and a selector cannot change: deleting it with its "
            f"ReplicaSets orphaned (their pods keep serving); it comes back selecting "
            f"{r.selector_string(serving)} and adopts them")])
    stale = tuple(_name(rs) for rs in orphans
                  if not _serves(rs, owner) and (complete or _pods(rs) == 0))
    if not stale:
        return SelectorPlan(Step.NONE)
    return SelectorPlan(Step.CLEANUP, delete_replica_sets=stale, events=[Event(
        "Normal", Reason.SELECTOR_MIGRATED,
        f"deleted orphaned ReplicaSet(s) {', '.join(stale)} of the replaced Deployment {name}")])


def _adopt(name: str, orphans: Sequence[Obj], owner: r.Owner,
           autoscaling: bool) -> SelectorPlan:
    labelled = [rs for rs in orphans if _serves(rs, owner)]
    stale = tuple(_name(rs) for rs in orphans if not _serves(rs, owner) and _pods(rs) == 0)
    replicas = max((_pods(rs) for rs in labelled), default=0) if autoscaling else 0
    adopts = ", ".join(_name(rs) for rs in labelled) or "none"
    return SelectorPlan(Step.ADOPT, replicas=replicas or None, delete_replica_sets=stale,
                        events=[Event("Normal", Reason.SELECTOR_MIGRATED,
                                      f"creating Deployment {name} selecting the serving pods; "
                                      f"it adopts the orphaned ReplicaSet(s): {adopts}")])
