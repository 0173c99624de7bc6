"""Step 5: the verdict. From the steps before and the live Deployment: the phase and the
conditions; a finished rollout records its revision; a failed one is rolled back
automatically (when `spec.rollout.autoRollback` is on and a good revision exists)."""

from __future__ import annotations

from dataclasses import dataclass

from authz_operator import resources as r
from authz_operator.lifecycle.children import ChildPlan
from authz_operator.lifecycle.migration import Gate
from authz_operator.lifecycle.model import Obj
from authz_operator.lifecycle.observe import crash_message, min_replicas
from authz_operator.lifecycle.report import OK, Signal, Verdict, Why
from authz_operator.lifecycle.situation import Draft, Situation, revision_key
from authz_operator.lifecycle.state import Hold, HoldReason, Revision
from authz_operator.lifecycle.target import Aim
from authz_operator.status import Direction, Event, Outcome, Phase, Reason, timestamp
from authz_operator.workload import rollout_state, serving


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    hold: Hold | None
    again: bool = False          # a rollback starts: reconcile again at once


def verdict(sit: Situation, hold: Hold | None, aim: Aim, gate: Gate, children: ChildPlan,
            draft: Draft) -> Decision:
    rolling_back = aim.rollback_to is not None and hold is not None
    moving = Phase.ROLLING_BACK if rolling_back else Phase.ROLLING_OUT
    if sit.missing:
        msg = "missing " + "; ".join(sit.missing)
        return Decision(Verdict.failing(Phase.PENDING if sit.dep is None else Phase.DEGRADED,
                                        Reason.SECRET_MISSING, msg), hold)
    if children.conflicts:
        msg = ("not owned by this AuthorizationService, left alone: "
               + ", ".join(children.conflicts))
        return Decision(Verdict.failing(Phase.DEGRADED, Reason.CHILD_CONFLICT, msg), hold)
    failed = gate.failed
    if failed is None and hold is not None and hold.reason.migration_failed:
        failed = Why(hold.reason, hold.message)
    if failed is not None:
        return Decision(Verdict.failing(Phase.FAILED, failed.reason, failed.message), hold)
    if gate.waiting is not None:
        phase = Phase.ROLLING_BACK if rolling_back else Phase.MIGRATING
        return Decision(Verdict.moving(phase, gate.waiting.reason, gate.waiting.message), hold)
    if aim.target is None:
        msg = hold.message if hold is not None and hold.message else "nothing to deploy"
        return Decision(Verdict.failing(Phase.FAILED, Reason.ROLLOUT_FAILED, msg), hold)
    if children.adopting and sit.status.get("revisionKey") == aim.target_key:
        # An old Deployment is replaced (lifecycle.selector): its orphaned pods serve the
        # revision the status records, and the new Deployment adopts them.
        return Decision(_done(hold, "the Deployment is replaced: its pods keep serving"), hold)
    dep_apply = any(a.kind == "Deployment" for a in children.applies)
    if dep_apply or sit.dep is None:
        msg = f"rolling {'back to' if rolling_back else 'out'} {aim.target.image}"
        return Decision(Verdict.moving(
            moving, Reason.ROLLING_BACK if rolling_back else Reason.ROLLING_OUT, msg,
            Reason.ROLLING_BACK if rolling_back else Reason.ROLLOUT_STARTED), hold)
    return _watch_rollout(sit, hold, aim, gate, draft, moving)


def _watch_rollout(sit: Situation, hold: Hold | None, aim: Aim, gate: Gate, draft: Draft,
                   moving: Phase) -> Decision:
    """The Deployment runs the target: is the rollout done, failed, or still going?"""
    assert aim.target is not None
    assert sit.dep is not None
    state = rollout_state(sit.dep, min_replicas(sit.spec))
    crashed = None if state.complete else crash_message(sit.obs.pods, aim.target.image)
    current = sit.status.get("revisionKey") == aim.target_key
    if current and not (sit.dep.get("status") or {}).get("observedGeneration"):
        # Just created (an adopting one, or recreated): its controller has not looked yet.
        return Decision(_done(hold, state.message), hold)
    if state.complete or (current and serving(sit.dep)):
        if not current:
            draft.fields.update(_record_revision(sit, aim.target, str(aim.target_key),
                                                 gate, hold))
        return Decision(_done(hold, state.message), hold)
    if (state.failed or crashed) and hold is None:
        msg = crashed or state.message
        good = sit.revision(sit.status.get("revision")) if sit.status.get("revision") else None
        if sit.spec.rollout.auto_rollback and good is not None:
            return _roll_back(sit, aim, gate, good, msg, draft)
        return Decision(Verdict.failing(
            Phase.DEGRADED, Reason.ROLLOUT_FAILED, msg,
            Reason.PROGRESS_DEADLINE_EXCEEDED if state.failed else None), hold)
    if current:
        return Decision(Verdict.failing(Phase.DEGRADED, Reason.UNAVAILABLE, state.message),
                        hold)
    reason = Reason.ROLLING_BACK if moving is Phase.ROLLING_BACK else Reason.ROLLING_OUT
    return Decision(Verdict.moving(moving, reason, state.message), hold)


def _done(hold: Hold | None, message: str) -> Verdict:
    if hold is None:
        return Verdict(Phase.READY, Signal(True, Reason.ROLLOUT_COMPLETE, message),
                       Signal(False, Reason.ROLLOUT_COMPLETE, message), OK)
    if hold.reason is HoldReason.MANUAL_ROLLBACK:
        msg = f"serving revision {hold.to} by request ({r.ANN_ROLLBACK_TO})"
        return Verdict(Phase.READY, Signal(True, Reason.ROLLED_BACK, msg),
                       Signal(False, Reason.ROLLED_BACK, msg), OK)
    msg = (f"rolled back to revision {hold.to}: {hold.message}; fix the spec "
           f"or change the {r.ANN_RETRY} annotation to try again")
    return Verdict.failing(Phase.DEGRADED, Reason.ROLLED_BACK, msg)


def _roll_back(sit: Situation, aim: Aim, gate: Gate, good: Revision, msg: str,
               draft: Draft) -> Decision:
    """Record the failed revision, hold the spec and go back to `good`."""
    mig, target = sit.migration, aim.target
    assert target is not None
    if (mig is not None and mig.image == target.image and mig.key == aim.target_key
            and sit.revision(mig.revision) is None):
        number = mig.revision
    else:
        number = sit.last_revision + 1
    failed = Revision(revision=number, image=target.image, config_hash=target.config_hash,
                      secrets_hash=target.secrets_hash, deployed_at=timestamp(sit.obs.now),
                      outcome=Outcome.FAILED, message=msg[:500],
                      schema_version=gate.database.schema_version or None)
    draft.fields["history"] = _bounded(sit, [*sit.history, failed])
    draft.numbered(sit, number)
    draft.events += [Event("Warning", Reason.ROLLOUT_FAILED,
                           f"revision {number} ({target.image}) failed: {msg}"),
                     Event("Normal", Reason.ROLLING_BACK,
                           f"rolling back to revision {good.revision} ({good.image})")]
    hold = Hold(key=sit.key, retry=sit.retry, reason=HoldReason.ROLLOUT_FAILED, to=good.revision,
                message=msg[:500])
    return Decision(Verdict(Phase.ROLLING_BACK, Signal(False, Reason.ROLLING_BACK, msg),
                            Signal(True, Reason.ROLLING_BACK, msg),
                            Signal(True, Reason.ROLLOUT_FAILED, msg)), hold, again=True)


def _bounded(sit: Situation, history: list[Revision]) -> list[Obj]:
    return [h.to_status() for h in history[-sit.spec.rollout.revision_history_limit:]]


def _record_revision(sit: Situation, target: r.Target, key: str, gate: Gate,
                     hold: Hold | None) -> Obj:
    """The status fields of a revision that now serves: a new history entry, or (after an
    automatic rollback to the same revision key) the recorded one again."""
    mig, db = sit.migration, gate.database
    if (mig is not None and mig.image == target.image and mig.direction is Direction.UP
            and mig.key == key and sit.revision(mig.revision) is None):
        number = mig.revision
    else:
        number = sit.last_revision + 1
    manual = hold is not None and hold.reason is HoldReason.MANUAL_ROLLBACK
    schema = db.schema_version or sit.status.get("schemaVersion")
    entry = Revision(
        revision=number, image=target.image, config_hash=target.config_hash,
        secrets_hash=target.secrets_hash, config=target.config_data,
        deployed_at=timestamp(sit.obs.now),
        outcome=Outcome.ROLLED_BACK if manual else Outcome.DEPLOYED,
        message=f"rollback to revision {hold.to}" if manual and hold else None,
        schema_version=None if schema is None else str(schema))
    if hold is not None and hold.reason is HoldReason.ROLLOUT_FAILED:
        # An automatic rollback returns to a recorded revision: serve it, record nothing new
        # (unless the Secrets changed meanwhile, which makes it a new revision).
        back = sit.revision(hold.to)
        if back is not None and revision_key(str(back.image), str(back.config_hash),
                                             str(back.secrets_hash)) == key:
            return {"revision": back.revision, "image": back.image,
                    "configHash": back.config_hash, "secretsHash": back.secrets_hash,
                    "revisionKey": key, "schemaVersion": back.schema_version}
    return {"revision": number, "image": target.image, "configHash": target.config_hash,
            "secretsHash": target.secrets_hash, "revisionKey": key,
            "history": _bounded(sit, [*sit.history, entry]),
            "schemaVersion": entry.schema_version,
            "lastRevision": max(sit.last_revision, number)}
