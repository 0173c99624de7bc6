"""Replacing a Deployment whose selector an earlier version set: the decision as a table,
then the whole journey through `decide` and `act`."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from authz_operator import lifecycle as lc
from authz_operator import reconciler
from authz_operator import resources as r
from authz_operator.diff import Change
from authz_operator.lifecycle.selector import (
    Orphans,
    SelectorPlan,
    Step,
    orphans_wanted,
    selector_plan,
)
from authz_operator.spec import parse_spec
from authz_operator.status import Phase

from .samples import OWNER, spec_body
from .test_lifecycle import SECRETS, children_for, complete, live, observed

NAME = OWNER.name
LEGACY = {"app.kubernetes.io/name": "authorization-service", "app.kubernetes.io/instance": NAME}
SERVING = {**LEGACY, "app.kubernetes.io/component": "server"}
OURS = {**LEGACY, "app.kubernetes.io/managed-by": "authz-operator"}


def deployment(selector: dict[str, str], labelled: bool = True, done: bool = True,
               deleting: bool = False) -> dict[str, Any]:
    dep: dict[str, Any] = {
        "metadata": {"name": NAME, "uid": "d", "generation": 2,
                     "ownerReferences": [r.owner_reference(OWNER)]},
        "spec": {"replicas": 3, "selector": {"matchLabels": selector}, "template": {
            "metadata": {"labels": SERVING if labelled else OURS}}},
        "status": complete(3) if done else {**complete(3), "updatedReplicas": 1}}
    if deleting:
        dep["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z"
    return dep


def rs(name: str, replicas: int, labelled: bool = True, owned: bool = False,
       instance: str = NAME) -> dict[str, Any]:
    labels = {**OURS, "app.kubernetes.io/instance": instance, "pod-template-hash": name}
    if labelled:
        labels["app.kubernetes.io/component"] = "server"
    refs = [{"kind": "Deployment", "name": NAME, "uid": "d", "controller": True}] if owned \
        else []
    return {"metadata": {"name": name, "labels": labels, "ownerReferences": refs},
            "spec": {"replicas": replicas}, "status": {"replicas": replicas}}


CASES = [
    # (what is seen, live Deployment, ReplicaSets, held, autoscaling) -> plan
    ("fresh resource", None, [], False, True, SelectorPlan(Step.NONE)),
    ("serving selector already", deployment(SERVING), [rs("new", 3, owned=True)], False, True,
     SelectorPlan(Step.NONE)),
    ("old selector, pods not labelled yet", deployment(LEGACY, labelled=False), [], False,
     True, SelectorPlan(Step.RELABEL, selector=LEGACY)),
    ("old selector, labelling rollout still going", deployment(LEGACY, done=False), [],
     False, True, SelectorPlan(Step.RELABEL, selector=LEGACY)),
    ("old selector, every pod labelled, but held", deployment(LEGACY), [], True, True,
     SelectorPlan(Step.RELABEL, selector=LEGACY)),
    ("old selector being deleted", deployment(LEGACY, deleting=True), [], False, True,
     SelectorPlan(Step.WAIT, selector=LEGACY)),
    ("gone, orphans: the labelled one is adopted with its count, an empty one deleted", None,
     [rs("old", 0, labelled=False), rs("cur", 4)], False, True,
     SelectorPlan(Step.ADOPT, replicas=4, delete_replica_sets=("old",))),
    ("gone, orphans, no HPA: spec.replicas applies", None, [rs("cur", 4)], False, False,
     SelectorPlan(Step.ADOPT)),
    ("gone, orphans, held: they keep serving", None, [rs("cur", 4)], True, True,
     SelectorPlan(Step.NONE)),
    ("gone, only ReplicaSets someone owns or of another instance", None,
     [rs("a", 2, owned=True), rs("b", 2, instance="other")], False, True,
     SelectorPlan(Step.NONE)),
    ("replaced, an empty unlabelled orphan left", deployment(SERVING, done=False),
     [rs("old", 0, labelled=False)], False, True,
     SelectorPlan(Step.CLEANUP, delete_replica_sets=("old",))),
    ("replaced but rolling: an orphan with pods waits", deployment(SERVING, done=False),
     [rs("old", 2, labelled=False)], False, True, SelectorPlan(Step.NONE)),
    ("replaced and complete: an orphan with pods goes", deployment(SERVING),
     [rs("old", 2, labelled=False)], False, True,
     SelectorPlan(Step.CLEANUP, delete_replica_sets=("old",))),
]


@pytest.mark.parametrize(("seen", "dep", "sets", "held", "hpa", "want"), CASES,
                         ids=[c[0] for c in CASES])
def test_selector_plan(seen: str, dep: dict[str, Any] | None, sets: list[dict[str, Any]],
                       held: bool, hpa: bool, want: SelectorPlan) -> None:
    got = selector_plan(dep, sets, OWNER, held, autoscaling=hpa, min_replicas=2)
    assert dataclasses.replace(got, events=[]) == want
    assert [e.reason for e in got.events] == (
        ["SelectorMigrated"] if want.step not in (Step.NONE, Step.WAIT) else [])


def someone_elses(dep: dict[str, Any]) -> dict[str, Any]:
    return {**dep, "metadata": {**dep["metadata"], "ownerReferences": []}}


SERVED = {"phase": "Ready", "revision": 1}
WANTED = [
    # (what is seen, live Deployment, status) -> whether orphans are listed
    ("new, no Deployment yet (its first migration runs)", None, {}, Orphans.NO),
    ("new, migrating", None, {"phase": "Migrating"}, Orphans.NO),
    ("its first migration failed", None, {"phase": "Failed"}, Orphans.NO),
    ("a revision served, Deployment gone: ours after ORPHAN, or someone's cascade=orphan",
     None, SERVED, Orphans.LOOK),
    ("first rollout, no revision yet, Deployment gone", None, {"phase": "RollingOut"},
     Orphans.LOOK),
    ("an earlier version's, relabelled and orphaned before any revision was recorded", None,
     {"phase": "Ready"}, Orphans.LOOK),
    ("a revision in history only", None, {"phase": "Failed", "history": [{"revision": 1}]},
     Orphans.LOOK),
    ("serving selector: orphans only until the CLEANUP after an ADOPT",
     deployment(SERVING), SERVED, Orphans.IF_FOUND),
    ("old selector: RELABEL and ORPHAN do not read them", deployment(LEGACY), SERVED,
     Orphans.NO),
    ("being deleted: WAIT", deployment(LEGACY, deleting=True), SERVED, Orphans.NO),
    ("someone else's Deployment", someone_elses(deployment(SERVING)), SERVED, Orphans.NO),
]


@pytest.mark.parametrize(("seen", "dep", "status", "want"), WANTED, ids=[c[0] for c in WANTED])
def test_orphans_are_listed_only_where_selector_plan_reads_them(
        seen: str, dep: dict[str, Any] | None, status: dict[str, Any], want: Orphans) -> None:
    assert orphans_wanted(dep, OWNER, status) is want
    if want is Orphans.NO and dep is not None:
        # what NO means: the plan is the same with the orphans as without them
        sets = [rs("cur", 4), rs("old", 0, labelled=False)]
        assert selector_plan(dep, sets, OWNER, False, True, 2) == \
            selector_plan(dep, [], OWNER, False, True, 2)


def test_the_orphaning_event_says_what_happens_and_why() -> None:
    [event] = selector_plan(deployment(LEGACY), [], OWNER, False, True, 2).events
    assert event.type == "Normal"
    assert "selector cannot change" in event.message
    assert "app.kubernetes.io/component=server" in event.message


# ---------------------------------------------------------------------------------------------
# the journey through decide


def legacy_children() -> dict[str, Any]:
    """What an earlier version left: every selector without the component, pods unlabelled."""
    spec = parse_spec(spec_body())
    target = r.target_from_spec(spec, {"authorization-secrets": "41"})
    out = {k: live(v) for k, v in r.desired_children(spec, OWNER, target, LEGACY).items()}
    dep = out["Deployment"]
    assert dep is not None
    del dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
    dep["metadata"]["annotations"][r.ANN_DESIRED_HASH] = "from-an-earlier-version"
    return out


def after(obs: lc.Observed, plan: lc.Plan, **changes: Any) -> lc.Observed:
    """The next observation: the plan's status written, and what else changed."""
    return dataclasses.replace(obs, status=plan.status, **changes)


def test_journey_relabel_orphan_adopt_with_the_hpa_count_then_nothing() -> None:
    start = observed(children=legacy_children())
    relabel = lc.decide(start)
    [dep] = [a for a in relabel.applies if a.kind == "Deployment"]
    assert [a.kind for a in relabel.applies] == ["Deployment"]   # Service, PDB: still LEGACY
    assert dep.change is Change.UPDATE
    assert dep.obj["spec"]["selector"]["matchLabels"] == LEGACY
    assert dep.obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] \
        == "server"

    rolled = {**start.children, "Deployment": live(dep.obj)}
    orphan = lc.decide(after(start, relabel, children=rolled))
    assert (orphan.applies, orphan.deletes) == ([], [])
    assert orphan.orphans == [("Deployment", NAME)]
    assert "SelectorMigrated" in [e.reason for e in orphan.events]

    gone = {**rolled, "Deployment": None}
    labelled = rs("cur", 5)
    adopt = lc.decide(after(start, orphan, children=gone,
                            replica_sets=[labelled, rs("old", 0, labelled=False)]))
    by_kind = {a.kind: a for a in adopt.applies}
    assert set(by_kind) == {"Deployment", "Service", "PodDisruptionBudget"}
    create = by_kind["Deployment"]
    assert (create.change, create.handover_replicas) == (Change.CREATE, True)
    assert create.obj["spec"]["replicas"] == 5
    assert create.obj["spec"]["selector"]["matchLabels"] == SERVING
    assert by_kind["Service"].obj["spec"]["selector"] == SERVING
    assert by_kind["PodDisruptionBudget"].obj["spec"]["selector"]["matchLabels"] == SERVING
    assert adopt.deletes == [("ReplicaSet", "old")]
    reasons = [e.reason for e in adopt.events]
    assert "SelectorMigrated" in reasons
    assert "RolloutStarted" not in reasons   # the adopted pods run the same template
    assert "DriftCorrected" not in reasons

    assert adopt.status["phase"] == orphan.status["phase"] == Phase.READY   # pods serve

    created = live(by_kind["Deployment"].obj, observedGeneration=0)   # not synced yet
    replaced = {**gone, **{a.kind: live(a.obj) for a in adopt.applies}}
    synced = lc.decide(after(start, adopt, children={**replaced, "Deployment": created}))
    assert synced.status["phase"] == Phase.READY
    assert [e for e in synced.events if e.type == "Warning"] == []
    steady = lc.decide(after(start, synced, children=replaced))
    assert (steady.applies, steady.deletes, steady.orphans) == ([], [], [])
    assert steady.status["phase"] == Phase.READY


def test_a_fresh_resource_selects_the_serving_pods_and_lists_nothing_more() -> None:
    plan = lc.decide(observed(children=children_for(spec_body())))
    assert (plan.applies, plan.orphans) == ([], [])


# ---------------------------------------------------------------------------------------------
# act: the orphaning delete and the replicas handover reach the API


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def apply(self, obj: dict[str, Any], field_manager: str | None = None) -> None:
        self.calls.append(("apply", obj["kind"], field_manager, copy.deepcopy(obj["spec"])))

    def delete(self, kind: str, namespace: str, name: str, uid: str | None = None,
               orphan: bool = False) -> None:
        self.calls.append(("delete", kind, name, uid, orphan))


def test_act_orphans_and_hands_the_replicas_over() -> None:
    obs = observed(children=legacy_children(), secrets=SECRETS)
    spec = parse_spec(spec_body())
    dep = r.with_replicas(r.desired_deployment(spec, OWNER, r.target_from_spec(spec, {})), 5)
    plan = lc.Plan(applies=[lc.Apply(dep, Change.CREATE, handover_replicas=True)],
                   deletes=[("ReplicaSet", "old")], orphans=[("Deployment", NAME)])
    kube = Recorder()
    body = {"metadata": {"name": NAME, "namespace": "rwadurian", "uid": "uid-1"}}
    reconciler.act(kube, body, obs, plan)  # type: ignore[arg-type]
    assert kube.calls == [
        ("apply", "Deployment", None, dep["spec"]),
        ("apply", "Deployment", r.REPLICAS_MANAGER, {"replicas": 5}),
        ("delete", "Deployment", NAME, "uid-Deployment", True),
        ("delete", "ReplicaSet", "old", None, False),
    ]
