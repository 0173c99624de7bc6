"""Step 4: the child plan. What to apply and delete, and which children someone else owns.

The Deployment is held back while a migration runs or failed, while Secrets are missing and
while a held spec has nothing to serve; its labels then keep naming the image its pods run.
A held spec's configuration is not applied either (unless a rollback needs it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from authz_operator import resources as r
from authz_operator.diff import Change, change
from authz_operator.lifecycle.model import Apply
from authz_operator.lifecycle.observe import controlled_by
from authz_operator.lifecycle.selector import SelectorPlan, Step
from authz_operator.lifecycle.situation import Situation
from authz_operator.lifecycle.state import Hold
from authz_operator.lifecycle.target import Aim


@dataclass
class ChildPlan:
    applies: list[Apply] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)    # (kind, name)
    conflicts: list[str] = field(default_factory=list)              # "Kind name"
    orphans: list[tuple[str, str]] = field(default_factory=list)    # deleted, dependents kept
    adopting: bool = False    # the Deployment is created to adopt orphaned ReplicaSets


def hold_deployment(sit: Situation, hold: Hold | None, aim: Aim, migrating: bool) -> bool:
    """Never roll pods that cannot start, or before their migration."""
    return (bool(sit.missing) or aim.target is None or migrating
            or (hold is not None and not aim.rollback_needed))


def child_plan(sit: Situation, hold: Hold | None, aim: Aim, held: bool,
               job: r.Obj | None, sel: SelectorPlan | None = None) -> ChildPlan:
    """`sel` gives the pod selector to build with and how an old Deployment is replaced."""
    sel = sel or SelectorPlan(Step.NONE)
    spec, owner, name = sit.spec, sit.obs.owner, sit.obs.owner.name
    target = aim.target or sit.wanted
    label_image = aim.live_image if held and aim.live_image else target.image
    desired = r.desired_children(spec, owner, r.Target(label_image, target.config,
                                                       target.secrets_hash), sel.selector)
    desired["Deployment"] = r.desired_deployment(spec, owner, target, sel.selector)
    plan = ChildPlan()
    if sel.step is Step.ORPHAN:
        plan.orphans.append(("Deployment", r.child_name(name, "Deployment")))
    for kind in r.OWNED_KINDS:
        want, live = desired[kind], sit.obs.children.get(kind)
        if live is not None and not controlled_by(live, owner):
            if want is not None:
                plan.conflicts.append(f"{kind} {r.child_name(name, kind)}")
            continue
        if want is None:
            if live is not None:
                plan.deletes.append((kind, r.child_name(name, kind)))
            continue
        if kind == "Deployment" and (held or sel.keep_deployment):
            continue
        if kind == "ConfigMap" and hold is not None and not aim.rollback_needed \
                and live is not None:
            continue
        ch = change(want, live)
        if ch is not None:
            plan.applies.append(_with_replicas(want, ch, sel))
            plan.adopting = plan.adopting or (kind == "Deployment" and sel.step is Step.ADOPT)
    if job is not None:
        plan.applies.append(Apply(job, Change.CREATE))
    return plan


def _with_replicas(want: r.Obj, ch: Change, sel: SelectorPlan) -> Apply:
    """The Deployment that adopts orphaned ReplicaSets starts with their replica count (an
    HPA's choice; without `replicas` it would start with 1 and scale them down)."""
    if want["kind"] != "Deployment" or sel.replicas is None or ch is not Change.CREATE:
        return Apply(want, ch)
    return Apply(r.with_replicas(want, sel.replicas), ch, handover_replicas=True)
