"""What the resource reports: the verdict as conditions and phase, the status, the events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from authz_operator.diff import Change
from authz_operator.lifecycle.model import Apply, Obj, Observed, Plan
from authz_operator.status import (
    Condition,
    Event,
    Phase,
    Reason,
    find,
    merge_conditions,
    reason_of,
)


@dataclass(frozen=True)
class Signal:
    """One condition's status, reason and message."""

    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Why:
    """Why the Deployment waits, or what failed: a reason and a message."""

    reason: str
    message: str


OK = Signal(False, Reason.AS_EXPECTED, "nothing is wrong")   # as Degraded: nothing is wrong


@dataclass(frozen=True)
class Verdict:
    """The phase and the Ready, Progressing and Degraded conditions of one reconcile."""

    phase: Phase
    ready: Signal
    progressing: Signal
    degraded: Signal

    @classmethod
    def failing(cls, phase: Phase, reason: str, message: str,
                progressing: str | None = None) -> Verdict:
        """Not ready, not progressing (for `progressing` or `reason`), degraded."""
        return cls(phase, Signal(False, reason, message),
                   Signal(False, progressing or reason, message), Signal(True, reason, message))

    @classmethod
    def moving(cls, phase: Phase, reason: str, message: str,
               progressing: str | None = None) -> Verdict:
        """Not ready yet, progressing (for `progressing` or `reason`), nothing is wrong."""
        return cls(phase, Signal(False, reason, message),
                   Signal(True, progressing or reason, message), OK)

    def conditions(self, available: Condition, migrated: Condition | None) -> list[Condition]:
        out = [Condition("Ready", self.ready.status, self.ready.reason, self.ready.message),
               available,
               Condition("Progressing", self.progressing.status, self.progressing.reason,
                         self.progressing.message),
               Condition("Degraded", self.degraded.status, self.degraded.reason,
                         self.degraded.message)]
        return out if migrated is None else [*out, migrated]


# The status fields the lifecycle remembers from one reconcile to the next (state.py's
# types and the serving revision); everything else is worked out again each time.
REMEMBERED = ("image", "schemaVersion", "revision", "history", "configHash", "secretsHash",
              "revisionKey", "migration", "hold", "database", "lastRevision",
              "rollbackHandled")


def _status(obs: Observed, phase: Phase, conditions: list[Condition], extra: Obj) -> Obj:
    keep = {k: v for k, v in obs.status.items() if k in REMEMBERED}
    status: Obj = {
        **keep,
        **extra,
        "phase": str(phase),
        "observedGeneration": obs.generation,
        "conditions": merge_conditions(obs.status.get("conditions"), conditions,
                                       obs.generation, obs.now),
    }
    return {k: v for k, v in status.items() if v is not None}


def finish(obs: Observed, plan: Plan, verdict: Verdict, conditions: list[Condition],
           extra: Obj) -> Plan:
    """Render the status (remembered fields, then `extra`) and the transition events."""
    plan.status = _status(obs, verdict.phase, conditions, extra)
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


def apply_events(obs: Observed, applies: Sequence[Apply],
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
