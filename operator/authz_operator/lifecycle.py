"""The state machine: from what was observed, decide what to write and what to report. Pure.

`decide(observed) -> Plan`. The same observation always gives the same plan, whatever woke the
reconcile (create, update, resume, a child or Secret event): the operator is level-based.
A plan with no applies, no deletes, no jobs, no events and an unchanged status means the
reconcile sends nothing to the API server.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from authz_operator import resources as r
from authz_operator.diff import Change, change
from authz_operator.spec import Spec, SpecError
from authz_operator.status import (
    Condition,
    Event,
    Phase,
    Reason,
    find,
    merge_conditions,
    reason_of,
    timestamp,
)

Obj = dict[str, Any]


@dataclass(frozen=True)
class SecretView:
    """What the operator may know about a Secret: its version and key names, never values."""

    resource_version: str
    keys: frozenset[str]


@dataclass(frozen=True)
class Observed:
    owner: r.Owner
    generation: int
    spec: Spec | SpecError
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    children: Mapping[str, Obj | None]          # by kind, live objects (None: absent)
    secrets: Mapping[str, SecretView | None]    # by name (None: absent)
    jobs: Mapping[str, Obj]                     # migration Jobs of this resource, by name
    job_results: Mapping[str, str]              # Job name -> termination message of its pod
    now: datetime.datetime


@dataclass(frozen=True)
class Apply:
    obj: Obj
    change: Change

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


@dataclass
class Plan:
    applies: list[Apply] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)    # (kind, name)
    status: Obj = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    status_changed: bool = False
    permanent_error: str | None = None

    @property
    def writes(self) -> int:
        return (len(self.applies) + len(self.deletes) + len(self.events)
                + (1 if self.status_changed else 0))


# ---------------------------------------------------------------------------------------------
# small observations


def controlled_by(obj: Mapping[str, Any], owner: r.Owner) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner.uid and ref.get("controller") for ref in refs)


def missing_secret_keys(spec: Spec, secrets: Mapping[str, SecretView | None]) -> list[str]:
    """Human-readable list of what is missing: 'Secret s' or 'key k in Secret s'."""
    out: list[str] = []
    for var, ref in spec.secret_refs():
        view = secrets.get(ref.name)
        if view is None:
            item = f"Secret {ref.name!r} (for {var})"
        elif ref.key not in view.keys:
            item = f"key {ref.key!r} in Secret {ref.name!r} (for {var})"
        else:
            continue
        if item not in out:
            out.append(item)
    return out


@dataclass(frozen=True)
class RolloutState:
    complete: bool
    failed: bool
    message: str


def rollout_state(dep: Mapping[str, Any], min_replicas: int = 0) -> RolloutState:
    """`kubectl rollout status` semantics for a live Deployment, also waiting for
    `min_replicas` (an HPA's minimum: a fresh Deployment starts with one pod)."""
    meta, spec, st = dep.get("metadata", {}), dep.get("spec", {}), dep.get("status") or {}
    want = max(int(spec.get("replicas", 1)), min_replicas)
    if int(st.get("observedGeneration", 0)) < int(meta.get("generation", 1)):
        return RolloutState(False, False, "waiting for the Deployment controller")
    for c in st.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return RolloutState(False, True, str(c.get("message") or "progress deadline"))
    updated = int(st.get("updatedReplicas", 0))
    replicas = int(st.get("replicas", 0))
    available = int(st.get("availableReplicas", 0))
    if updated < want:
        return RolloutState(False, False, f"{updated} of {want} replicas updated")
    if replicas > updated:
        return RolloutState(False, False, f"{replicas - updated} old replicas terminating")
    if available < updated:
        return RolloutState(False, False, f"{available} of {updated} updated replicas available")
    return RolloutState(True, False, f"{available} of {want} replicas available")


def _serving(dep: Mapping[str, Any]) -> bool:
    """Some pods of the current template are available and no old-template pods are left."""
    st = dep.get("status") or {}
    return (int(st.get("availableReplicas", 0)) > 0
            and int(st.get("replicas", 0)) == int(st.get("updatedReplicas", 0)))


def deployment_available(dep: Mapping[str, Any] | None) -> Condition:
    if dep is None:
        return Condition("Available", False, Reason.DEPLOYMENT_MISSING,
                         "the Deployment does not exist yet")
    for c in (dep.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Available":
            return Condition("Available", c.get("status") == "True",
                             str(c.get("reason") or Reason.AVAILABLE),
                             str(c.get("message") or ""))
    return Condition("Available", None, "Unknown", "the Deployment reports no availability yet")


def revision_key(image: str, config_hash: str, secrets_hash: str) -> str:
    return r.content_hash([image, config_hash, secrets_hash])


def _min_replicas(spec: Spec) -> int:
    return spec.autoscaling.min_replicas if spec.autoscaling.enabled else spec.replicas


def _replica_fields(spec: Spec | None, dep: Mapping[str, Any] | None, name: str) -> Obj:
    desired = _min_replicas(spec) if spec is not None else 0
    if dep is not None:
        replicas = int(dep.get("spec", {}).get("replicas", 1))
        desired = max(desired, replicas) if spec is not None and spec.autoscaling.enabled \
            else replicas
    st = (dep or {}).get("status") or {}
    ready = int(st.get("readyReplicas", 0))
    selector = ",".join(f"{k}={v}" for k, v in sorted(r.selector_labels(name).items()))
    return {"replicas": int(st.get("replicas", 0)), "readyReplicas": ready,
            "ready": f"{ready}/{desired}", "selector": selector}


# ---------------------------------------------------------------------------------------------
# the decision


def _status(obs: Observed, phase: Phase, conditions: list[Condition], extra: Obj) -> Obj:
    keep = {k: v for k, v in obs.status.items()
            if k in ("image", "schemaVersion", "revision", "history", "configHash",
                     "secretsHash", "revisionKey", "migration", "failed")}
    status: Obj = {
        **keep,
        **extra,
        "phase": str(phase),
        "observedGeneration": obs.generation,
        "conditions": merge_conditions(obs.status.get("conditions"), conditions,
                                       obs.generation, obs.now),
    }
    return {k: v for k, v in status.items() if v is not None}


def _finish(obs: Observed, plan: Plan, phase: Phase, conditions: list[Condition],
            extra: Obj) -> Plan:
    plan.status = _status(obs, phase, conditions, extra)
    plan.status_changed = plan.status != dict(obs.status)
    plan.events.extend(_transition_events(obs, plan.status))
    return plan


def _transition_events(obs: Observed, new: Mapping[str, Any]) -> list[Event]:
    """Events for what changed between the old and the new status: only on transitions."""
    old_phase = obs.status.get("phase")
    old_conds, new_conds = obs.status.get("conditions"), new.get("conditions")
    phase = new.get("phase")
    events: list[Event] = []
    ready_reason = reason_of(new_conds, "Ready")
    old_ready_reason = reason_of(old_conds, "Ready")
    ready = find(new_conds, "Ready") or {}
    old_ready = find(old_conds, "Ready") or {}

    if ready_reason == Reason.SECRET_MISSING and (
            old_ready_reason != Reason.SECRET_MISSING
            or old_ready.get("message") != ready.get("message")):
        events.append(Event("Warning", Reason.SECRET_MISSING, str(ready.get("message"))))
    if old_ready_reason == Reason.SECRET_MISSING and ready_reason != Reason.SECRET_MISSING:
        events.append(Event("Normal", Reason.SECRETS_FOUND,
                            "all referenced Secret keys exist; continuing"))
    if phase == Phase.PAUSED and old_phase != Phase.PAUSED:
        events.append(Event("Normal", Reason.PAUSED, "spec.paused is true: children are frozen"))
    if old_phase == Phase.PAUSED and phase != Phase.PAUSED:
        events.append(Event("Normal", Reason.RESUMED, "spec.paused is false: reconciling again"))
    for reason in (Reason.INVALID_SPEC, Reason.CHILD_CONFLICT, Reason.ROLLOUT_FAILED,
                   Reason.UNAVAILABLE):
        if ready_reason == reason and old_ready_reason != reason:
            events.append(Event("Warning", reason, str(ready.get("message"))))
    if phase == Phase.READY and (old_phase != Phase.READY or obs.status.get("revision")
                                 != new.get("revision")):
        events.append(Event("Normal", Reason.ROLLOUT_COMPLETE,
                            f"revision {new.get('revision')} ({new.get('image')}) is ready: "
                            f"{new.get('ready')}"))
    return events


def _apply_events(obs: Observed, applies: Sequence[Apply],
                  deletes: Sequence[tuple[str, str]]) -> list[Event]:
    seen_before = obs.status.get("observedGeneration") == obs.generation and obs.status.get(
        "phase") not in (None, Phase.PENDING, Phase.PAUSED, Phase.FAILED)
    created = [a for a in applies if a.change is Change.CREATE and not seen_before]
    recreated = [a for a in applies if a.change is Change.CREATE and seen_before]
    updated = [a for a in applies if a.change is Change.UPDATE]
    drifted = [a for a in applies if a.change is Change.DRIFT] + recreated
    events: list[Event] = []

    def names(items: Sequence[Apply]) -> str:
        return ", ".join(f"{a.kind} {a.name}" for a in items)

    if created:
        events.append(Event("Normal", Reason.CREATED, f"created {names(created)}"))
    if updated:
        events.append(Event("Normal", Reason.UPDATED, f"updated {names(updated)}"))
    if drifted:
        events.append(Event("Normal", Reason.DRIFT_CORRECTED,
                            f"restored {names(drifted)} to the desired state"))
    if deletes:
        events.append(Event("Normal", Reason.DELETED, "deleted " + ", ".join(
            f"{k} {n} (no longer wanted)" for k, n in deletes)))
    for a in applies:
        if a.kind == "Deployment" and a.change in (Change.CREATE, Change.UPDATE):
            image = a.obj["spec"]["template"]["spec"]["containers"][0]["image"]
            events.append(Event("Normal", Reason.ROLLOUT_STARTED, f"rolling out {image}"))
    return events


def decide(obs: Observed) -> Plan:
    plan = Plan()
    name = obs.owner.name
    dep = obs.children.get("Deployment")
    available = deployment_available(dep)

    if isinstance(obs.spec, SpecError):
        msg = str(obs.spec)
        plan.permanent_error = msg
        return _finish(obs, plan, Phase.FAILED, [
            Condition("Ready", False, Reason.INVALID_SPEC, msg), available,
            Condition("Progressing", False, Reason.INVALID_SPEC, msg),
            Condition("Degraded", True, Reason.INVALID_SPEC, msg),
        ], _replica_fields(None, dep, name))

    spec = obs.spec
    replica_fields = _replica_fields(spec, dep, name)
    if spec.paused:
        msg = "spec.paused is true: the children are left as they are"
        return _finish(obs, plan, Phase.PAUSED, [
            Condition("Ready", False, Reason.PAUSED, msg), available,
            Condition("Progressing", False, Reason.PAUSED, msg),
            Condition("Degraded", False, Reason.AS_EXPECTED, "nothing is wrong"),
        ], replica_fields)

    missing = missing_secret_keys(spec, obs.secrets)
    versions = {n: v.resource_version for n, v in sorted(obs.secrets.items()) if v is not None}
    target = r.target_from_spec(spec, versions)
    desired = r.desired_children(spec, obs.owner, target)

    conflicts: list[str] = []
    for kind in r.OWNED_KINDS:
        want, live = desired[kind], obs.children.get(kind)
        if live is not None and not controlled_by(live, obs.owner):
            if want is not None:
                conflicts.append(f"{kind} {r.child_name(name, kind)}")
            continue
        if want is None:
            if live is not None:
                plan.deletes.append((kind, r.child_name(name, kind)))
            continue
        if kind == "Deployment" and missing:
            continue  # hold: never roll pods that cannot start
        ch = change(want, live)
        if ch is not None:
            plan.applies.append(Apply(want, ch))
    plan.events.extend(_apply_events(obs, plan.applies, plan.deletes))

    dep_apply = next((a for a in plan.applies if a.kind == "Deployment"), None)
    key = revision_key(target.image, target.config_hash, target.secrets_hash)
    current_key = obs.status.get("revisionKey")
    revision_fields: Obj = {}

    if missing:
        msg = "missing " + "; ".join(missing)
        phase = Phase.PENDING if dep is None else Phase.DEGRADED
        conds = [Condition("Ready", False, Reason.SECRET_MISSING, msg), available,
                 Condition("Progressing", False, Reason.SECRET_MISSING, msg),
                 Condition("Degraded", True, Reason.SECRET_MISSING, msg)]
    elif conflicts:
        msg = ("not owned by this AuthorizationService, left alone: " + ", ".join(conflicts))
        conds = [Condition("Ready", False, Reason.CHILD_CONFLICT, msg), available,
                 Condition("Progressing", False, Reason.CHILD_CONFLICT, msg),
                 Condition("Degraded", True, Reason.CHILD_CONFLICT, msg)]
        phase = Phase.DEGRADED
    elif dep_apply is not None or dep is None:
        msg = f"rolling out {target.image}"
        phase = Phase.ROLLING_OUT
        conds = [Condition("Ready", False, Reason.ROLLING_OUT, msg), available,
                 Condition("Progressing", True, Reason.ROLLOUT_STARTED, msg),
                 Condition("Degraded", False, Reason.AS_EXPECTED, "nothing is wrong")]
    else:
        state = rollout_state(dep, _min_replicas(spec))
        if state.complete:
            phase = Phase.READY
            conds = [Condition("Ready", True, Reason.ROLLOUT_COMPLETE, state.message), available,
                     Condition("Progressing", False, Reason.ROLLOUT_COMPLETE, state.message),
                     Condition("Degraded", False, Reason.AS_EXPECTED, "nothing is wrong")]
            if current_key != key:
                revision_fields = _record_revision(obs, spec, target, key)
        elif state.failed:
            phase = Phase.DEGRADED
            conds = [Condition("Ready", False, Reason.ROLLOUT_FAILED, state.message), available,
                     Condition("Progressing", False, Reason.PROGRESS_DEADLINE_EXCEEDED,
                               state.message),
                     Condition("Degraded", True, Reason.PROGRESS_DEADLINE_EXCEEDED,
                               state.message)]
        elif current_key == key and _serving(dep):
            # This revision rolled out before; scaling (HPA) or a replaced pod is no rollout.
            phase = Phase.READY
            conds = [Condition("Ready", True, Reason.ROLLOUT_COMPLETE, state.message), available,
                     Condition("Progressing", False, Reason.ROLLOUT_COMPLETE, state.message),
                     Condition("Degraded", False, Reason.AS_EXPECTED, "nothing is wrong")]
        elif current_key == key:
            # This revision rolled out before and now no pod is available.
            phase = Phase.DEGRADED
            conds = [Condition("Ready", False, Reason.UNAVAILABLE, state.message), available,
                     Condition("Progressing", False, Reason.UNAVAILABLE, state.message),
                     Condition("Degraded", True, Reason.UNAVAILABLE, state.message)]
        else:
            phase = Phase.ROLLING_OUT
            conds = [Condition("Ready", False, Reason.ROLLING_OUT, state.message), available,
                     Condition("Progressing", True, Reason.ROLLING_OUT, state.message),
                     Condition("Degraded", False, Reason.AS_EXPECTED, "nothing is wrong")]

    return _finish(obs, plan, phase, conds, {**replica_fields, **revision_fields})


def _record_revision(obs: Observed, spec: Spec, target: r.Target, key: str) -> Obj:
    history = [dict(h) for h in obs.status.get("history") or []]
    number = max([int(h.get("revision", 0)) for h in history] + [0]) + 1
    schema = obs.status.get("schemaVersion")
    entry: Obj = {
        "revision": number, "image": target.image, "configHash": target.config_hash,
        "secretsHash": target.secrets_hash, "deployedAt": timestamp(obs.now),
        "outcome": "Deployed",
    }
    if schema is not None:
        entry["schemaVersion"] = schema
    history = [*history, entry][-spec.rollout.revision_history_limit:]
    return {"revision": number, "image": target.image, "configHash": target.config_hash,
            "secretsHash": target.secrets_hash, "revisionKey": key, "history": history}
