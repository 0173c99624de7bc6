"""Step 3: the migration gate. Before the pods run a new image, its `migrate up` Job must
succeed; before a rollback across a schema change, `migrate down` runs with the NEWER image
(only it knows the newer migrations). One Job at a time; a Job created before a crash is
adopted, not duplicated; a failure holds the spec."""

from __future__ import annotations

from dataclasses import dataclass, replace

from authz_operator import resources as r
from authz_operator.lifecycle.model import Obj
from authz_operator.lifecycle.report import Why
from authz_operator.lifecycle.situation import Draft, Situation
from authz_operator.lifecycle.state import (
    Database,
    Hold,
    HoldReason,
    MigrateCode,
    MigrationRecord,
    parse_result,
)
from authz_operator.lifecycle.target import Aim
from authz_operator.status import Condition, Direction, Event, Reason, timestamp
from authz_operator.workload import JobState, job_state

NO_ERROR = "see its pod logs"


@dataclass(frozen=True)
class Gate:
    migrated: Condition
    hold: Hold | None
    database: Database               # the schema after this round
    waiting: Why | None = None       # the Deployment waits for a migration (or its failure)
    failed: Why | None = None        # a migration failed: the resource has failed
    job: Obj | None = None           # a migration Job to create


@dataclass(frozen=True)
class _Run:
    """The migration this round needs: which Job, in which direction, with which image."""

    record: MigrationRecord          # as status.migration will record it (phase Running)
    target: r.Target                 # what the Job runs
    serves: str                      # the image the pods run once the schema is right

    @property
    def running(self) -> str:
        rec = self.record
        what = f"migrate down to {rec.to}" if rec.to else "migrate up"
        return f"Job {rec.job} runs {what} with {rec.image}"


def migration_gate(sit: Situation, hold: Hold | None, aim: Aim, draft: Draft) -> Gate:
    db = sit.database
    gate = Gate(Condition("Migrated", True, Reason.MIGRATIONS_DISABLED,
                          "spec.migrations.enabled is false"), hold, db)
    if sit.spec.migrations.enabled and not sit.missing and aim.target is not None:
        gate = replace(gate, migrated=Condition(
            "Migrated", True, Reason.MIGRATION_SUCCEEDED,
            f"schema {db.schema_version or 'unknown'} for {db.image}"))
        run = _needed(sit, hold, aim)
        if run is not None:
            gate = _step(sit, gate, run, draft)
    return _held(gate)


def _needed(sit: Situation, hold: Hold | None, aim: Aim) -> _Run | None:
    """Up when the database was migrated by another image; down when a rollback goes to a
    revision with another schema; None when the schema is right."""
    target, back, db = aim.target, aim.rollback_to, sit.database
    assert target is not None
    down_to: str | None = None
    if back is None:
        if db.image == target.image:
            return None
        direction, image, key = Direction.UP, target.image, str(aim.target_key)
    elif back.schema_version and db.schema_version and db.schema_version != back.schema_version:
        direction, image, key = Direction.DOWN, db.image or target.image, sit.key
        down_to = back.schema_version
    else:
        return None
    mig = sit.migration
    reuse = mig is not None and (mig.phase is JobState.RUNNING or (
        mig.phase is JobState.FAILED and hold is not None))
    if mig is not None and reuse and (mig.image, mig.direction, mig.key) == (
            image, direction, key):
        number = mig.revision
    else:
        number = sit.last_revision + 1
    job = r.child_names(sit.obs.owner.name).job(number, down=direction is Direction.DOWN)
    record = MigrationRecord(job=job, revision=number, direction=direction, image=image,
                             key=key, phase=JobState.RUNNING, to=down_to)
    return _Run(record, r.Target(image, target.config, target.secrets_hash), target.image)


def _step(sit: Situation, gate: Gate, run: _Run, draft: Draft) -> Gate:
    """Wait for another Job, start ours, or read what ours did."""
    name = run.record.job
    busy = sorted(n for n, j in sit.obs.jobs.items()
                  if n != name and job_state(j) is JobState.RUNNING)
    job = sit.obs.jobs.get(name)
    if busy:
        why = Why(Reason.MIGRATING, f"waiting for Job {busy[0]} to finish")
        return replace(gate, waiting=why, migrated=Condition("Migrated", False, *_pair(why)))
    state = JobState.RUNNING if job is None else job_state(job)
    if state is JobState.RUNNING:
        return _running(sit, gate, run, draft, start=job is None)
    draft.numbered(sit, run.record.revision)
    if state is JobState.SUCCEEDED:
        return _succeeded(sit, gate, run, draft)
    return _failed(sit, gate, run, draft)


def _pair(why: Why) -> tuple[str, str]:
    return why.reason, why.message


def _running(sit: Situation, gate: Gate, run: _Run, draft: Draft, start: bool) -> Gate:
    why = Why(Reason.MIGRATING, run.running)
    gate = replace(gate, waiting=why, migrated=Condition("Migrated", False, *_pair(why)))
    if start:
        draft.fields["migration"] = replace(run.record,
                                            started_at=timestamp(sit.obs.now)).to_status()
        draft.numbered(sit, run.record.revision)
        draft.events.append(Event("Normal", Reason.MIGRATION_STARTED, run.running))
        rec = run.record
        return replace(gate, job=r.desired_migration_job(
            sit.spec, sit.obs.owner, run.target, rec.revision, down_to=rec.to))
    if sit.migration is None or sit.migration.job != run.record.job:   # adopted after a restart
        draft.fields["migration"] = run.record.to_status()
        draft.numbered(sit, run.record.revision)
    return gate


def _succeeded(sit: Situation, gate: Gate, run: _Run, draft: Draft) -> Gate:
    rec = run.record
    if rec.direction is Direction.UP:
        result = parse_result(sit.obs.job_results.get(rec.job))
        db = Database(result.schema_version, rec.image)
    else:
        db = Database(rec.to, run.serves)
    draft.fields["database"] = db.to_status()
    schema = db.schema_version or "unknown"
    if sit.migration is None or not sit.migration.is_(rec.job, JobState.SUCCEEDED):
        draft.fields["migration"] = replace(rec, phase=JobState.SUCCEEDED,
                                            schema_version=db.schema_version).to_status()
        draft.events.append(Event("Normal", Reason.MIGRATION_SUCCEEDED,
                                  f"Job {rec.job}: schema {schema}"))
    return replace(gate, database=db, migrated=Condition(
        "Migrated", True, Reason.MIGRATION_SUCCEEDED, f"schema {schema} for {db.image}"))


def _failed(sit: Situation, gate: Gate, run: _Run, draft: Draft) -> Gate:
    """Decided by the Job's `code`: an image older than the schema, or a rollback across an
    irreversible migration, get their own reasons. An up failure holds the spec; a down
    failure blocks the rollback's hold."""
    rec = run.record
    result = parse_result(sit.obs.job_results.get(rec.job))
    error, code = result.error, result.code
    if error is None:     # the pod's message is read only until the outcome is recorded
        error = _recorded_error(sit.migration, rec.job)
        code = sit.migration.code if error is not None and sit.migration else None
    message = f"Job {rec.job} failed: {error or NO_ERROR}"
    reason: Reason
    if rec.direction is Direction.UP:
        reason = Reason.SCHEMA_NEWER if code == MigrateCode.SCHEMA_NEWER \
            else Reason.MIGRATION_FAILED
        hold: Hold = Hold(key=sit.key, retry=sit.retry, reason=HoldReason(reason),
                          to=sit.status.get("revision"), message=message)
    else:
        reason = Reason.ROLLBACK_REFUSED if code == MigrateCode.IRREVERSIBLE \
            else Reason.ROLLBACK_FAILED
        assert gate.hold is not None, "a down-migration runs only for a held spec"
        hold = replace(gate.hold, blocked=str(reason), message=message)
    if sit.migration is None or not sit.migration.is_(rec.job, JobState.FAILED):
        draft.fields["migration"] = replace(rec, phase=JobState.FAILED, message=message,
                                            code=code).to_status()
        draft.events.append(Event("Warning", reason, message))
    why = Why(reason, message)
    return replace(gate, hold=hold, failed=why, waiting=why,
                   migrated=Condition("Migrated", False, reason, message))


def _recorded_error(mig: MigrationRecord | None, job: str) -> str | None:
    """The error of a failed Job as status.migration recorded it, so later reconciles give
    the same reason and message without reading the pod again."""
    if mig is None or not mig.is_(job, JobState.FAILED):
        return None
    prefix = f"Job {job} failed: "
    message = mig.message or ""
    if not message.startswith(prefix) or message == prefix + NO_ERROR:
        return None
    return message.removeprefix(prefix)


def _held(gate: Gate) -> Gate:
    """A blocked rollback stays failed; a spec held for its migration reports that."""
    hold = gate.hold
    if hold is not None and hold.blocked and gate.failed is None:
        why = Why(hold.blocked, hold.message)
        gate = replace(gate, failed=why, waiting=why,
                       migrated=Condition("Migrated", False, *_pair(why)))
    if hold is not None and hold.reason.migration_failed:
        gate = replace(gate, migrated=Condition("Migrated", False, hold.reason, hold.message))
    return gate
