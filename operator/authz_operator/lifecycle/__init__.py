"""The state machine: from what was observed, decide what to write and what to report. Pure.

`decide(observed) -> Plan`. The same observation always gives the same plan, whatever woke the
reconcile (create, update, resume, a child or Secret event): the operator is level-based.
A plan with no applies, no deletes, no jobs, no events and an unchanged status means the
reconcile sends nothing to the API server.

A reconcile reads as five steps over frozen state (`state.py`):
1. hold and manual rollback (`target.hold_and_rollback_request`): is the spec held?
2. target revision (`target.target_revision`): the spec's, or a recorded one while held;
3. migration gate (`migration.migration_gate`): up or down Job first, one at a time;
4. child plan (`selector.selector_plan`, `children.child_plan`): how a Deployment of an earlier
   version (immutable selector) is replaced; what to apply and delete, what someone else owns;
5. verdict (`verdict.verdict`): phase and conditions; record a revision, or roll back.
"""

from __future__ import annotations

from authz_operator.lifecycle.children import child_plan, hold_deployment
from authz_operator.lifecycle.migration import migration_gate
from authz_operator.lifecycle.model import Apply, Observed, Plan, SecretView
from authz_operator.lifecycle.observe import (
    controlled_by,
    crash_looping,
    crash_message,
    deployment_available,
    min_replicas,
    missing_secret_keys,
    replica_fields,
)
from authz_operator.lifecycle.report import OK, Signal, Verdict, apply_events, finish
from authz_operator.lifecycle.selector import Orphans, orphans_wanted, selector_plan
from authz_operator.lifecycle.situation import Draft, Situation, revision_key
from authz_operator.lifecycle.state import MigrateCode, MigrateResult, parse_result
from authz_operator.lifecycle.target import hold_and_rollback_request, target_revision
from authz_operator.lifecycle.verdict import verdict
from authz_operator.spec import SpecError
from authz_operator.status import Phase, Reason
from authz_operator.workload import job_state, rollout_state

__all__ = [
    "Apply", "MigrateCode", "MigrateResult", "Observed", "Orphans", "Plan", "SecretView",
    "controlled_by", "crash_looping", "crash_message", "decide", "deployment_available",
    "job_state", "missing_secret_keys", "orphans_wanted", "parse_result", "revision_key",
    "rollout_state",
]


def decide(obs: Observed) -> Plan:
    plan = Plan()
    dep = obs.children.get("Deployment")
    available = deployment_available(dep)
    if isinstance(obs.spec, SpecError):
        plan.permanent_error = msg = str(obs.spec)
        return finish(obs, plan, v := Verdict.failing(Phase.FAILED, Reason.INVALID_SPEC, msg),
                      v.conditions(available, None), replica_fields(None, dep, obs.owner.name))
    spec = obs.spec
    if spec.paused:
        msg = "spec.paused is true: the children are left as they are"
        paused = Verdict(Phase.PAUSED, Signal(False, Reason.PAUSED, msg),
                         Signal(False, Reason.PAUSED, msg), OK)
        return finish(obs, plan, paused, paused.conditions(available, None),
                      replica_fields(spec, dep, obs.owner.name))

    sit, draft = Situation.of(obs, spec), Draft()
    hold = hold_and_rollback_request(sit, draft)
    aim = target_revision(sit, hold)
    gate = migration_gate(sit, hold, aim, draft)
    hold = gate.hold
    held = hold_deployment(sit, hold, aim, migrating=gate.waiting is not None)
    sel = selector_plan(sit.dep, obs.replica_sets, obs.owner, held, spec.autoscaling.enabled,
                        min_replicas(spec))
    children = child_plan(sit, hold, aim, held, gate.job, sel)
    step_events, draft.events = draft.events, []
    decision = verdict(sit, hold, aim, gate, children, draft)

    plan.applies, plan.deletes, plan.again = children.applies, children.deletes, decision.again
    plan.orphans = children.orphans
    adopting = children.adopting
    reported = [a for a in plan.applies if a.kind != "Job"
                and not (adopting and a.kind == "Deployment")]   # sel.events say it
    plan.events = [*apply_events(obs, reported, plan.deletes), *step_events, *draft.events]
    if not sel.by_applying or any(a.kind == "Deployment" for a in plan.applies):
        plan.events += sel.events
        plan.deletes += [("ReplicaSet", rs) for rs in sel.delete_replica_sets]
    fields = draft.fields
    fields["hold"] = decision.hold.to_status() if decision.hold is not None else None
    db, st = gate.database, obs.status
    if ("schemaVersion" not in fields and not st.get("schemaVersion") and db.schema_version
            and db.image == st.get("image")):
        fields["schemaVersion"] = db.schema_version  # a revision recorded before its schema
    if gate.job is not None:
        plan.again = False  # the Job's own events wake us
    conditions = decision.verdict.conditions(available, gate.migrated)
    return finish(obs, plan, decision.verdict, conditions,
                  {**replica_fields(spec, dep, obs.owner.name), **fields})
