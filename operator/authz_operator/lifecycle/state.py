"""The lifecycle's memory in status, as frozen types: each reads itself from status
(`from_status`) and writes itself back (`to_status`, leaving out what is unset), so an
unchanged situation writes back the very same status.

- `Hold`: a spec the operator will not try again (it failed, or is rolled back) until the
  spec or the retry annotation changes.
- `MigrationRecord`: the latest migration Job and what became of it.
- `Database`: the schema the database has, and the image that put it there.
- `Revision`: one entry of status.history.
- `MigrateResult`: what a migration Job's termination message says (docs/service.md).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from authz_operator.status import Direction, Outcome, Reason
from authz_operator.workload import JobState

Obj = dict[str, Any]


def _compact(items: Mapping[str, Any]) -> Obj:
    return {k: v for k, v in items.items() if v is not None}


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


class HoldReason(enum.StrEnum):
    MANUAL_ROLLBACK = "ManualRollback"                 # rwadurian.io/rollback-to
    ROLLOUT_FAILED = Reason.ROLLOUT_FAILED.value       # rolled back automatically
    MIGRATION_FAILED = Reason.MIGRATION_FAILED.value   # its up-migration failed
    SCHEMA_NEWER = Reason.SCHEMA_NEWER.value           # its image is older than the schema

    @property
    def migration_failed(self) -> bool:
        return self in (HoldReason.MIGRATION_FAILED, HoldReason.SCHEMA_NEWER)


@dataclass(frozen=True)
class Hold:
    key: str                      # the revision key of the held spec
    retry: str                    # the retry annotation when it was held
    reason: HoldReason
    message: str
    to: int | None = None         # the revision to serve meanwhile
    blocked: str | None = None    # why the rollback's down-migration did not run (a Reason)

    def releases(self, key: str, retry: str) -> bool:
        """The spec or the retry annotation changed: try again."""
        return self.key != key or self.retry != retry

    @classmethod
    def from_status(cls, raw: Any) -> Hold | None:
        if not raw:
            return None
        return cls(key=str(raw.get("key")), retry=str(raw.get("retry", "")),
                   reason=HoldReason(raw.get("reason")), message=str(raw.get("message")),
                   to=_opt_int(raw.get("to")), blocked=_opt_str(raw.get("blocked")))

    def to_status(self) -> Obj:
        return _compact({"key": self.key, "retry": self.retry, "reason": str(self.reason),
                         "to": self.to, "message": self.message, "blocked": self.blocked})


@dataclass(frozen=True)
class MigrationRecord:
    job: str
    revision: int
    direction: Direction
    image: str
    key: str                       # up: the target's revision key; down: the spec's
    phase: JobState
    to: str | None = None          # down: the schema version to go down to
    started_at: str | None = None
    schema_version: str | None = None
    message: str | None = None
    code: str | None = None        # the failed Job's `code`

    def is_(self, job: str, phase: JobState) -> bool:
        return self.job == job and self.phase is phase

    @classmethod
    def from_status(cls, raw: Any) -> MigrationRecord | None:
        if not raw:
            return None
        return cls(job=str(raw.get("job")), revision=int(raw.get("revision") or 0),
                   direction=Direction(raw.get("direction") or Direction.UP),
                   image=str(raw.get("image")), key=str(raw.get("key")),
                   phase=JobState(raw.get("phase") or JobState.RUNNING),
                   to=_opt_str(raw.get("to")), started_at=_opt_str(raw.get("startedAt")),
                   schema_version=_opt_str(raw.get("schemaVersion")),
                   message=_opt_str(raw.get("message")), code=_opt_str(raw.get("code")))

    def to_status(self) -> Obj:
        return _compact({
            "job": self.job, "revision": self.revision, "direction": str(self.direction),
            "image": self.image, "key": self.key, "to": self.to, "phase": str(self.phase),
            "startedAt": self.started_at, "schemaVersion": self.schema_version,
            "message": self.message, "code": self.code})


@dataclass(frozen=True)
class Database:
    schema_version: str | None = None
    image: str | None = None

    @classmethod
    def from_status(cls, raw: Any) -> Database:
        raw = raw or {}
        return cls(_opt_str(raw.get("schemaVersion")), _opt_str(raw.get("image")))

    def to_status(self) -> Obj:
        return _compact({"schemaVersion": self.schema_version, "image": self.image})


@dataclass(frozen=True)
class Revision:
    revision: int
    image: str | None = None
    config_hash: str | None = None
    secrets_hash: str | None = None
    config: Mapping[str, str] | None = None   # the ConfigMap's data, to roll back to
    deployed_at: str | None = None
    outcome: Outcome | None = None
    message: str | None = None
    schema_version: str | None = None

    @property
    def good(self) -> bool:
        """A revision one may roll back to."""
        return self.outcome is not Outcome.FAILED

    @classmethod
    def from_status(cls, raw: Mapping[str, Any]) -> Revision:
        config, outcome = raw.get("config"), raw.get("outcome")
        return cls(revision=int(raw.get("revision") or 0), image=_opt_str(raw.get("image")),
                   config_hash=_opt_str(raw.get("configHash")),
                   secrets_hash=_opt_str(raw.get("secretsHash")),
                   config=dict(config) if isinstance(config, Mapping) else None,
                   deployed_at=_opt_str(raw.get("deployedAt")),
                   outcome=Outcome(outcome) if outcome is not None else None,
                   message=_opt_str(raw.get("message")),
                   schema_version=_opt_str(raw.get("schemaVersion")))

    def to_status(self) -> Obj:
        return _compact({
            "revision": self.revision, "image": self.image, "configHash": self.config_hash,
            "secretsHash": self.secrets_hash,
            "config": dict(self.config) if self.config is not None else None,
            "deployedAt": self.deployed_at, "outcome": self.outcome and str(self.outcome),
            "message": self.message, "schemaVersion": self.schema_version})


def find_revision(history: Sequence[Revision], revision: Any) -> Revision | None:
    for entry in history:
        if str(entry.revision) == str(revision):
            return entry
    return None


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
