"""Conditions and events: what the resource tells its users. Pure.

Conditions follow the Kubernetes convention (type, status, reason, message,
lastTransitionTime, observedGeneration); lastTransitionTime only moves when the status
of a condition flips, so an unchanged situation produces an identical status (and no write).
Event reasons are a closed, searchable vocabulary (`Reason`).
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class Phase(enum.StrEnum):
    PENDING = "Pending"
    MIGRATING = "Migrating"
    ROLLING_OUT = "RollingOut"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"
    ROLLING_BACK = "RollingBack"
    PAUSED = "Paused"


class Outcome(enum.StrEnum):
    """How a revision in status.history ended."""

    DEPLOYED = "Deployed"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"


class Direction(enum.StrEnum):
    """Which way a migration Job moves the schema."""

    UP = "up"
    DOWN = "down"


class Reason(enum.StrEnum):
    """Reasons used for conditions and events; users search events by these."""

    CREATED = "Created"
    UPDATED = "Updated"
    DELETED = "Deleted"
    DRIFT_CORRECTED = "DriftCorrected"
    SECRET_MISSING = "SecretMissing"  # noqa: S105 (a reason, not a password)
    SECRETS_FOUND = "SecretsFound"
    PAUSED = "Paused"
    RESUMED = "Resumed"
    INVALID_SPEC = "InvalidSpec"
    CHILD_CONFLICT = "ChildConflict"
    ROLLOUT_STARTED = "RolloutStarted"
    ROLLING_OUT = "RollingOut"
    ROLLOUT_COMPLETE = "RolloutComplete"
    ROLLOUT_FAILED = "RolloutFailed"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    UNAVAILABLE = "Unavailable"
    AVAILABLE = "MinimumReplicasAvailable"
    DEPLOYMENT_MISSING = "DeploymentMissing"
    AS_EXPECTED = "AsExpected"
    MIGRATING = "Migrating"
    MIGRATION_STARTED = "MigrationStarted"
    MIGRATION_SUCCEEDED = "MigrationSucceeded"
    MIGRATION_FAILED = "MigrationFailed"
    MIGRATIONS_DISABLED = "MigrationsDisabled"
    SCHEMA_NEWER = "SchemaNewerThanImage"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    ROLLBACK_REFUSED = "RollbackRefused"
    ROLLBACK_FAILED = "RollbackFailed"
    RETRYING = "Retrying"
    SELECTOR_MIGRATED = "SelectorMigrated"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None          # None: Unknown
    reason: str
    message: str

    @property
    def status_str(self) -> str:
        return "Unknown" if self.status is None else ("True" if self.status else "False")


@dataclass(frozen=True)
class Event:
    type: str                    # Normal | Warning
    reason: str
    message: str


def timestamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    old: Sequence[Mapping[str, Any]] | None,
    new: Iterable[Condition],
    generation: int,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """Render `new` as status.conditions, keeping lastTransitionTime of unflipped ones."""
    previous = {c.get("type"): c for c in old or ()}
    out: list[dict[str, Any]] = []
    for cond in new:
        before = previous.get(cond.type)
        flipped = before is None or before.get("status") != cond.status_str
        out.append({
            "type": cond.type,
            "status": cond.status_str,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": timestamp(now) if flipped or before is None
            else str(before.get("lastTransitionTime") or timestamp(now)),
            "observedGeneration": generation,
        })
    return out


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for c in conditions or ():
        if c.get("type") == type_:
            return c
    return None


def reason_of(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> str | None:
    c = find(conditions, type_)
    return None if c is None else str(c.get("reason"))
