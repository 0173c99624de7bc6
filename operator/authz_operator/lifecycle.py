"""The state machine: from what was observed, decide what to write and what to report. Pure.

`decide(observed) -> Plan`. The same observation always gives the same plan, whatever woke the
reconcile (create, update, resume, a child or Secret event): the operator is level-based.
A plan with no applies, no deletes, no jobs, no events and an unchanged status means the
reconcile sends nothing to the API server.
"""

from __future__ import annotations

import datetime
import enum
import json
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
from authz_operator.workload import job_state, rollout_state, serving

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
    pods: Sequence[Obj] = ()                    # the Deployment's pods, while it rolls out


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
    again: bool = False          # state moved on: reconcile again with a fresh observation

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
                     "secretsHash", "revisionKey", "migration", "hold", "database",
                     "lastRevision", "rollbackHandled")}
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
    if ready_reason == Reason.ROLLED_BACK and old_ready_reason != Reason.ROLLED_BACK:
        events.append(Event("Warning" if phase == Phase.DEGRADED else "Normal",
                            Reason.ROLLED_BACK, str(ready.get("message"))))
    if phase == Phase.READY and ready_reason == Reason.ROLLOUT_COMPLETE and (
            old_phase != Phase.READY or obs.status.get("revision")
                                 != new.get("revision")):
        events.append(Event("Normal", Reason.ROLLOUT_COMPLETE,
                            f"revision {new.get('revision')} ({new.get('image')}) is ready: "
                            f"{new.get('ready')}"))
    return events


def _apply_events(obs: Observed, applies: Sequence[Apply],
                  deletes: Sequence[tuple[str, str]]) -> list[Event]:
    seen_before = obs.status.get("observedGeneration") == obs.generation and obs.status.get(
        "phase") in (Phase.READY, Phase.ROLLING_OUT, Phase.DEGRADED)
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


class MigrateCode(enum.StrEnum):
    """The `code` of a failed `authz-service migrate` (docs/service.md, "Termination message")
    that the operator decides by; any other code is a plain failure."""

    IRREVERSIBLE = "irreversible"
    SCHEMA_NEWER = "schema_newer"


@dataclass(frozen=True)
class MigrateResult:
    schema_version: str | None = None
    error: str | None = None
    code: str | None = None


def parse_result(message: str | None) -> MigrateResult:
    """What a migration container's termination message says: its schema version, or its
    error and code (None when the container wrote no JSON, e.g. it crashed)."""
    if not message:
        return MigrateResult()
    try:
        data = json.loads(message)
    except ValueError:
        return MigrateResult(error=" ".join(message.split())[-500:])
    if not isinstance(data, dict):
        return MigrateResult(error=message[-500:])
    if data.get("error"):
        return MigrateResult(error=str(data["error"]), code=str(data.get("code") or "") or None)
    version = data.get("schemaVersion")
    return MigrateResult(schema_version=str(version) if version is not None else None)


def _recorded_error(mig: Mapping[str, Any], job_name: str) -> str | None:
    """The error of a failed Job as status.migration recorded it. The pod's termination
    message is read only until the outcome is recorded (no pod list on every reconcile), so
    later reconciles must give the same reason and message from the record."""
    if mig.get("job") != job_name or mig.get("phase") != "Failed":
        return None
    prefix = f"Job {job_name} failed: "
    message = str(mig.get("message") or "")
    if not message.startswith(prefix) or message == prefix + _NO_ERROR:
        return None
    return message.removeprefix(prefix)


def crash_message(pods: Sequence[Mapping[str, Any]], image: str) -> str | None:
    """Why pods of `image` crash (CrashLoopBackOff), or None."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if (cs.get("image") == image or _pod_image(pod) == image) and waiting.get(
                    "reason") == "CrashLoopBackOff" and int(cs.get("restartCount", 0)) >= 1:
                return (f"pod {pod['metadata']['name']} crashes: "
                        f"{waiting.get('message') or 'CrashLoopBackOff'}")
    return None


def _pod_image(pod: Mapping[str, Any]) -> str | None:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    image = containers[0].get("image")
    return str(image) if image else None


def _entry(history: Sequence[Mapping[str, Any]], revision: Any) -> Obj | None:
    for h in history:
        if str(h.get("revision")) == str(revision):
            return dict(h)
    return None


def _live_target(dep: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(image, config-hash) the live Deployment's pods run."""
    if dep is None:
        return None, None
    tmpl = dep.get("spec", {}).get("template", {})
    image = (tmpl.get("spec", {}).get("containers") or [{}])[0].get("image")
    return image, (tmpl.get("metadata", {}).get("annotations") or {}).get(r.ANN_CONFIG_HASH)


@dataclass
class _Verdict:
    phase: Phase
    ready: tuple[bool, str, str]
    progressing: tuple[bool, str, str]
    degraded: tuple[bool, str, str]


_OK = (False, Reason.AS_EXPECTED, "nothing is wrong")
_NO_ERROR = "see its pod logs"


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

    st = obs.status
    extra: Obj = {}
    events: list[Event] = []
    missing = missing_secret_keys(spec, obs.secrets)
    versions = {n: v.resource_version for n, v in sorted(obs.secrets.items()) if v is not None}
    wanted = r.target_from_spec(spec, versions)
    key = revision_key(wanted.image, wanted.config_hash, wanted.secrets_hash)
    retry = obs.annotations.get(r.ANN_RETRY, "")
    history = [dict(h) for h in st.get("history") or []]
    db: Obj = dict(st.get("database") or {})
    mig: Obj = dict(st.get("migration") or {})
    last_rev = max([int(st.get("lastRevision") or 0), int(mig.get("revision") or 0)]
                   + [int(h.get("revision") or 0) for h in history])

    # -- hold: a failed (or rolled back) spec is not tried again until it or `retry` changes
    hold: Obj | None = dict(st["hold"]) if st.get("hold") else None
    if hold is not None and (hold.get("key") != key or hold.get("retry", "") != retry):
        hold = None
        events.append(Event("Normal", "Retrying",
                            "the spec or the rwadurian.io/retry annotation changed: trying again"))
    rollback_request = obs.annotations.get(r.ANN_ROLLBACK_TO)
    if rollback_request and rollback_request != st.get("rollbackHandled"):
        extra["rollbackHandled"] = rollback_request
        entry = _entry(history, rollback_request)
        if entry is None or entry.get("outcome") == "Failed":
            events.append(Event("Warning", Reason.ROLLBACK_REFUSED,
                                f"revision {rollback_request} is not a good revision in "
                                "status.history"))
        else:
            hold = {"key": key, "retry": retry, "reason": "ManualRollback",
                    "to": entry["revision"],
                    "message": f"rollback to revision {entry['revision']} requested"}
            events.append(Event("Normal", Reason.ROLLING_BACK,
                                f"rolling back to revision {entry['revision']} "
                                f"({entry.get('image')}) as requested by "
                                f"{r.ANN_ROLLBACK_TO}"))

    # -- the effective target: the spec's, or a recorded revision's while held
    rollback_to = _entry(history, hold["to"]) if hold and hold.get("to") else None
    target: r.Target | None = wanted
    if hold is not None:
        target = None
        if rollback_to is not None:
            config = rollback_to.get("config")
            target = r.Target(
                image=str(rollback_to["image"]),
                config=tuple(sorted(config.items())) if isinstance(config, dict)
                else wanted.config,
                secrets_hash=wanted.secrets_hash)
    target_key = revision_key(target.image, target.config_hash, target.secrets_hash) \
        if target else None

    live_image, live_config = _live_target(dep)
    rollback_needed = target is not None and hold is not None and (
        dep is None or live_image != target.image or live_config != target.config_hash)
    hold_deployment = bool(missing) or target is None or (hold is not None
                                                          and not rollback_needed)
    hold_reason: tuple[str, str] | None = None   # why the Deployment waits this round

    # -- the migration gate: up (new image) or down (rollback across a schema change)
    migrated = Condition("Migrated", True, Reason.MIGRATIONS_DISABLED,
                         "spec.migrations.enabled is false")
    job_apply: Obj | None = None
    failed_now: tuple[str, str] | None = None
    if spec.migrations.enabled and not missing and target is not None:
        direction: str | None = None
        job_image, down_to = target.image, None
        if rollback_to is None:
            direction = "up" if db.get("image") != target.image else None
        elif (rollback_to.get("schemaVersion") and db.get("schemaVersion")
              and db["schemaVersion"] != rollback_to["schemaVersion"]):
            direction, job_image = "down", str(db.get("image") or target.image)
            down_to = str(rollback_to["schemaVersion"])
        schema_msg = f"schema {db.get('schemaVersion') or 'unknown'} for {db.get('image')}"
        migrated = Condition("Migrated", True, Reason.MIGRATION_SUCCEEDED, schema_msg)
        if direction is not None:
            reuse = mig.get("phase") == "Running" or (mig.get("phase") == "Failed"
                                                       and hold is not None)
            if (reuse and mig.get("image") == job_image
                    and mig.get("direction") == direction
                    and mig.get("key") == (target_key if direction == "up" else key)):
                number = int(mig["revision"])
            else:
                number = last_rev + 1
            job_name = r.child_names(name).job(number, down=direction == "down")
            job = obs.jobs.get(job_name)
            busy = sorted(n for n, j in obs.jobs.items()
                          if n != job_name and job_state(j) == "Running")
            record = {"job": job_name, "revision": number, "direction": direction,
                      "image": job_image, "key": target_key if direction == "up" else key}
            if down_to:
                record["to"] = down_to
            what = f"migrate down to {down_to}" if down_to else "migrate up"
            running_msg = f"Job {job_name} runs {what} with {job_image}"
            if busy:
                hold_reason = (Reason.MIGRATING, f"waiting for Job {busy[0]} to finish")
                migrated = Condition("Migrated", False, Reason.MIGRATING, hold_reason[1])
            elif job is None:
                job_target = r.Target(job_image, target.config, target.secrets_hash)
                job_apply = r.desired_migration_job(spec, obs.owner, job_target, number,
                                                    down_to=down_to)
                extra["migration"] = {**record, "phase": "Running",
                                      "startedAt": timestamp(obs.now)}
                extra["lastRevision"] = max(last_rev, number)
                hold_reason = (Reason.MIGRATING, running_msg)
                migrated = Condition("Migrated", False, Reason.MIGRATING, hold_reason[1])
                events.append(Event("Normal", Reason.MIGRATION_STARTED, hold_reason[1]))
            else:
                jstate = job_state(job)
                result = parse_result(obs.job_results.get(job_name))
                version, error, code = result.schema_version, result.error, result.code
                if jstate == "Failed" and error is None:
                    error = _recorded_error(mig, job_name)
                    code = mig.get("code") if error is not None else None
                if jstate == "Running":
                    hold_reason = (Reason.MIGRATING, running_msg)
                    migrated = Condition("Migrated", False, Reason.MIGRATING, hold_reason[1])
                    if mig.get("job") != job_name:   # adopted after a restart
                        extra["migration"] = {**record, "phase": "Running"}
                        extra["lastRevision"] = max(last_rev, number)
                elif jstate == "Succeeded":
                    if direction == "up":
                        db = {"schemaVersion": version, "image": job_image}
                    else:
                        db = {"schemaVersion": down_to, "image": target.image}
                    extra["database"] = db
                    extra["lastRevision"] = max(last_rev, number)
                    if mig.get("job") != job_name or mig.get("phase") != "Succeeded":
                        extra["migration"] = {**record, "phase": "Succeeded",
                                              "schemaVersion": db["schemaVersion"]}
                        events.append(Event("Normal", Reason.MIGRATION_SUCCEEDED,
                                            f"Job {job_name}: schema "
                                            f"{db['schemaVersion'] or 'unknown'}"))
                    migrated = Condition("Migrated", True, Reason.MIGRATION_SUCCEEDED,
                                         f"schema {db['schemaVersion'] or 'unknown'} for "
                                         f"{db['image']}")
                else:
                    message = f"Job {job_name} failed: {error or _NO_ERROR}"
                    if direction == "up":
                        reason = (Reason.SCHEMA_NEWER if code == MigrateCode.SCHEMA_NEWER
                                  else Reason.MIGRATION_FAILED)
                        hold = {"key": key, "retry": retry, "reason": str(reason),
                                "to": st.get("revision"), "message": message}
                    else:
                        reason = (Reason.ROLLBACK_REFUSED if code == MigrateCode.IRREVERSIBLE
                                  else Reason.ROLLBACK_FAILED)
                        assert hold is not None
                        hold = {**hold, "blocked": str(reason), "message": message}
                    failed_now = (str(reason), message)
                    hold_reason = failed_now
                    migrated = Condition("Migrated", False, reason, message)
                    extra["lastRevision"] = max(last_rev, number)
                    if mig.get("job") != job_name or mig.get("phase") != "Failed":
                        extra["migration"] = {**record, "phase": "Failed", "message": message,
                                              "code": code}
                        events.append(Event("Warning", reason, message))
    if hold is not None and hold.get("blocked") and failed_now is None:
        failed_now = (str(hold["blocked"]), str(hold.get("message")))
        hold_reason = failed_now
        migrated = Condition("Migrated", False, failed_now[0], failed_now[1])
    if hold is not None and hold.get("reason") in (Reason.MIGRATION_FAILED,
                                                   Reason.SCHEMA_NEWER):
        migrated = Condition("Migrated", False, str(hold["reason"]), str(hold.get("message")))
    if hold_reason is not None:
        hold_deployment = True

    # -- children: labelled with the image the pods run (or are about to run)
    deploy_target = target or wanted
    label_image = live_image if hold_deployment and live_image else deploy_target.image
    desired = r.desired_children(spec, obs.owner, r.Target(
        label_image, deploy_target.config, deploy_target.secrets_hash))
    desired["Deployment"] = r.desired_deployment(spec, obs.owner, deploy_target)
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
        if kind == "Deployment" and hold_deployment:
            continue  # never roll pods that cannot start, or before their migration
        if kind == "ConfigMap" and hold is not None and not rollback_needed and live is not None:
            continue  # a held spec's configuration is not applied either
        ch = change(want, live)
        if ch is not None:
            plan.applies.append(Apply(want, ch))
    if job_apply is not None:
        plan.applies.append(Apply(job_apply, Change.CREATE))
    plan.events.extend(_apply_events(obs, [a for a in plan.applies if a.kind != "Job"],
                                     plan.deletes))
    plan.events.extend(events)

    # -- the verdict
    dep_apply = next((a for a in plan.applies if a.kind == "Deployment"), None)
    rolling_back = rollback_to is not None and hold is not None
    verdict: _Verdict
    if missing:
        msg = "missing " + "; ".join(missing)
        verdict = _Verdict(Phase.PENDING if dep is None else Phase.DEGRADED,
                           (False, Reason.SECRET_MISSING, msg),
                           (False, Reason.SECRET_MISSING, msg), (True, Reason.SECRET_MISSING, msg))
    elif conflicts:
        msg = "not owned by this AuthorizationService, left alone: " + ", ".join(conflicts)
        verdict = _Verdict(Phase.DEGRADED, (False, Reason.CHILD_CONFLICT, msg),
                           (False, Reason.CHILD_CONFLICT, msg), (True, Reason.CHILD_CONFLICT, msg))
    elif failed_now is not None or (hold is not None and hold.get("reason") in (
            Reason.MIGRATION_FAILED, Reason.SCHEMA_NEWER)):
        held = hold or {}
        why, msg = failed_now or (str(held.get("reason")), str(held.get("message")))
        verdict = _Verdict(Phase.FAILED, (False, why, msg), (False, why, msg),
                           (True, why, msg))
    elif hold_reason is not None:
        msg = hold_reason[1]
        verdict = _Verdict(Phase.ROLLING_BACK if rolling_back else Phase.MIGRATING,
                           (False, hold_reason[0], msg), (True, hold_reason[0], msg), _OK)
    elif target is None:
        msg = str((hold or {}).get("message") or "nothing to deploy")
        verdict = _Verdict(Phase.FAILED, (False, Reason.ROLLOUT_FAILED, msg),
                           (False, Reason.ROLLOUT_FAILED, msg), (True, Reason.ROLLOUT_FAILED, msg))
    elif dep_apply is not None or dep is None:
        msg = f"rolling {'back to' if rolling_back else 'out'} {target.image}"
        reason = Reason.ROLLING_BACK if rolling_back else Reason.ROLLOUT_STARTED
        verdict = _Verdict(Phase.ROLLING_BACK if rolling_back else Phase.ROLLING_OUT,
                           (False, Reason.ROLLING_BACK if rolling_back else Reason.ROLLING_OUT,
                            msg), (True, reason, msg), _OK)
    else:
        state = rollout_state(dep, _min_replicas(spec))
        crashed = None if state.complete else crash_message(obs.pods, target.image)
        current = st.get("revisionKey") == target_key
        if state.complete or (current and serving(dep)):
            if not current:
                extra.update(_record_revision(obs, spec, target, str(target_key), history,
                                              db, mig, last_rev, hold))
            verdict = _done_verdict(hold, state.message)
        elif (state.failed or crashed) and hold is None:
            msg = crashed or state.message
            good = _entry(history, st.get("revision")) if st.get("revision") else None
            if spec.rollout.auto_rollback and good is not None:
                number = (int(mig["revision"]) if mig.get("image") == target.image
                          and mig.get("key") == target_key
                          and _entry(history, mig.get("revision")) is None else last_rev + 1)
                failed_entry: Obj = {
                    "revision": number, "image": target.image, "configHash": target.config_hash,
                    "secretsHash": target.secrets_hash, "deployedAt": timestamp(obs.now),
                    "outcome": "Failed", "message": msg[:500]}
                if db.get("schemaVersion"):
                    failed_entry["schemaVersion"] = db["schemaVersion"]
                extra["history"] = [*history, failed_entry][-spec.rollout.revision_history_limit:]
                extra["lastRevision"] = max(last_rev, number)
                hold = {"key": key, "retry": retry, "reason": "RolloutFailed",
                        "to": good["revision"], "message": msg[:500]}
                events_now = [Event("Warning", Reason.ROLLOUT_FAILED,
                                    f"revision {number} ({target.image}) failed: {msg}"),
                              Event("Normal", Reason.ROLLING_BACK,
                                    f"rolling back to revision {good['revision']} "
                                    f"({good.get('image')})")]
                plan.events.extend(events_now)
                plan.again = True
                verdict = _Verdict(Phase.ROLLING_BACK, (False, Reason.ROLLING_BACK, msg),
                                   (True, Reason.ROLLING_BACK, msg), (True, Reason.ROLLOUT_FAILED,
                                                                      msg))
            else:
                verdict = _Verdict(Phase.DEGRADED, (False, Reason.ROLLOUT_FAILED, msg),
                                   (False, Reason.PROGRESS_DEADLINE_EXCEEDED if state.failed
                                    else Reason.ROLLOUT_FAILED, msg),
                                   (True, Reason.ROLLOUT_FAILED, msg))
        elif current:
            verdict = _Verdict(Phase.DEGRADED, (False, Reason.UNAVAILABLE, state.message),
                               (False, Reason.UNAVAILABLE, state.message),
                               (True, Reason.UNAVAILABLE, state.message))
        else:
            reason = Reason.ROLLING_BACK if rolling_back else Reason.ROLLING_OUT
            verdict = _Verdict(Phase.ROLLING_BACK if rolling_back else Phase.ROLLING_OUT,
                               (False, reason, state.message), (True, reason, state.message),
                               _OK)

    extra["hold"] = hold
    if ("schemaVersion" not in extra and not st.get("schemaVersion") and db.get("schemaVersion")
            and db.get("image") == st.get("image")):
        extra["schemaVersion"] = db["schemaVersion"]  # a revision recorded before its schema
    if plan.applies and any(a.kind == "Job" for a in plan.applies):
        plan.again = False  # the Job's own events wake us
    conds = [
        Condition("Ready", *verdict.ready), available,
        Condition("Progressing", *verdict.progressing),
        Condition("Degraded", *verdict.degraded),
        migrated,
    ]
    return _finish(obs, plan, verdict.phase, conds, {**replica_fields, **extra})


def _done_verdict(hold: Mapping[str, Any] | None, message: str) -> _Verdict:
    if hold is None:
        return _Verdict(Phase.READY, (True, Reason.ROLLOUT_COMPLETE, message),
                        (False, Reason.ROLLOUT_COMPLETE, message), _OK)
    if hold.get("reason") == "ManualRollback":
        msg = f"serving revision {hold.get('to')} by request ({r.ANN_ROLLBACK_TO})"
        return _Verdict(Phase.READY, (True, Reason.ROLLED_BACK, msg),
                        (False, Reason.ROLLED_BACK, msg), _OK)
    msg = (f"rolled back to revision {hold.get('to')}: {hold.get('message')}; fix the spec "
           f"or change the {r.ANN_RETRY} annotation to try again")
    return _Verdict(Phase.DEGRADED, (False, Reason.ROLLED_BACK, msg),
                    (False, Reason.ROLLED_BACK, msg), (True, Reason.ROLLED_BACK, msg))


def _record_revision(obs: Observed, spec: Spec, target: r.Target, key: str,
                     history: list[Obj], db: Mapping[str, Any], mig: Mapping[str, Any],
                     last_rev: int, hold: Mapping[str, Any] | None) -> Obj:
    if (mig.get("image") == target.image and mig.get("direction") == "up"
            and mig.get("key") == key and _entry(history, mig.get("revision")) is None):
        number = int(mig["revision"])
    else:
        number = last_rev + 1
    entry: Obj = {
        "revision": number, "image": target.image, "configHash": target.config_hash,
        "secretsHash": target.secrets_hash, "config": target.config_data,
        "deployedAt": timestamp(obs.now), "outcome": "Deployed",
    }
    if hold is not None and hold.get("reason") == "ManualRollback":
        entry.update(outcome="RolledBack", message=f"rollback to revision {hold.get('to')}")
    schema = db.get("schemaVersion") or obs.status.get("schemaVersion")
    if schema is not None:
        entry["schemaVersion"] = schema
    if hold is not None and hold.get("reason") == "RolloutFailed":
        # An automatic rollback returns to a recorded revision: serve it, record nothing new
        # (unless the Secrets changed meanwhile, which makes it a new revision).
        back = _entry(history, hold.get("to"))
        if back is not None and revision_key(str(back.get("image")), str(back.get(
                "configHash")), str(back.get("secretsHash"))) == key:
            return {"revision": back["revision"], "image": back["image"],
                    "configHash": back.get("configHash"), "secretsHash": back.get("secretsHash"),
                    "revisionKey": key, "schemaVersion": back.get("schemaVersion")}
    new_history = [*history, entry][-spec.rollout.revision_history_limit:]
    return {"revision": number, "image": target.image, "configHash": target.config_hash,
            "secretsHash": target.secrets_hash, "revisionKey": key, "history": new_history,
            "schemaVersion": entry.get("schemaVersion"), "lastRevision": max(last_rev, number)}
