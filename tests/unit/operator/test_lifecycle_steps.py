"""The lifecycle's steps one at a time, and its status types (the whole journeys are in
test_lifecycle.py and test_migrations.py)."""

from __future__ import annotations

from typing import Any

import pytest

from authz_operator import resources as r
from authz_operator.lifecycle import crash_message
from authz_operator.lifecycle.children import child_plan, hold_deployment
from authz_operator.lifecycle.migration import migration_gate
from authz_operator.lifecycle.report import Verdict
from authz_operator.lifecycle.situation import Draft, Situation
from authz_operator.lifecycle.state import (
    Database,
    Hold,
    HoldReason,
    MigrationRecord,
    Revision,
)
from authz_operator.lifecycle.target import hold_and_rollback_request, target_revision
from authz_operator.lifecycle.verdict import _done
from authz_operator.spec import parse_spec
from authz_operator.status import Direction, Outcome, Phase, Reason
from authz_operator.workload import JobState

from .samples import spec_body
from .test_lifecycle import IMAGE, children_for, observed

V2 = "registry.example/authorization-service:1.5.0"
GOOD = {"revision": 1, "image": IMAGE, "configHash": "c1", "secretsHash": "s1",
        "config": {"log-level": "warn"}, "deployedAt": "2026-01-01T00:00:00Z",
        "outcome": "Deployed", "schemaVersion": "0003"}
BAD = {"revision": 2, "image": V2, "outcome": "Failed", "message": "crashed"}


def situation(body: dict[str, Any] | None = None, **kwargs: Any) -> Situation:
    obs = observed(body, **kwargs)
    return Situation.of(obs, parse_spec(body or spec_body()))


@pytest.mark.parametrize(("cls", "raw"), [
    (Hold, {"key": "k", "retry": "", "reason": "ManualRollback", "to": 1, "message": "m"}),
    (Hold, {"key": "k", "retry": "r", "reason": "MigrationFailed", "message": "m",
            "blocked": "RollbackRefused"}),
    (MigrationRecord, {"job": "a-rollback-3", "revision": 3, "direction": "down",
                       "image": V2, "key": "k", "to": "0003", "phase": "Failed",
                       "message": "Job a-rollback-3 failed: no", "code": "irreversible"}),
    (Database, {"schemaVersion": "0003", "image": IMAGE}),
    (Revision, GOOD), (Revision, BAD), (Revision, {"revision": 3, "image": "x:1"}),
])
def test_status_types_write_back_what_they_read(cls: Any, raw: dict[str, Any]) -> None:
    assert cls.from_status(raw).to_status() == raw


def test_status_types_are_typed() -> None:
    assert Revision.from_status(BAD).outcome is Outcome.FAILED
    assert not Revision.from_status(BAD).good
    mig = MigrationRecord.from_status({"job": "j", "revision": "2", "direction": "up",
                                       "image": IMAGE, "key": "k", "phase": "Running"})
    assert mig is not None
    assert (mig.revision, mig.direction, mig.phase) == (2, Direction.UP, JobState.RUNNING)
    assert Hold.from_status(None) is None
    assert HoldReason.SCHEMA_NEWER.migration_failed
    assert not HoldReason.ROLLOUT_FAILED.migration_failed


def test_a_hold_is_released_by_a_new_retry_annotation() -> None:
    sit = situation()
    held = Hold(sit.key, "", HoldReason.MIGRATION_FAILED, "m").to_status()
    kept = Situation.of(observed(status={"hold": held}), sit.spec)
    assert hold_and_rollback_request(kept, Draft()) is not None
    retried = Situation.of(observed(status={"hold": held},
                                    annotations={r.ANN_RETRY: "1"}), sit.spec)
    draft = Draft()
    assert hold_and_rollback_request(retried, draft) is None
    assert [e.reason for e in draft.events] == [Reason.RETRYING]


@pytest.mark.parametrize(("request_", "handled", "hold", "events"), [
    ("1", None, HoldReason.MANUAL_ROLLBACK, [Reason.ROLLING_BACK]),
    ("2", None, None, [Reason.ROLLBACK_REFUSED]),     # a failed revision
    ("9", None, None, [Reason.ROLLBACK_REFUSED]),     # not recorded
    ("1", "1", None, []),                             # handled before
])
def test_a_rollback_request(request_: str, handled: str | None, hold: HoldReason | None,
                            events: list[str]) -> None:
    status = {"history": [GOOD, BAD], "rollbackHandled": handled}
    sit = situation(status=status, annotations={r.ANN_ROLLBACK_TO: request_})
    draft = Draft()
    got = hold_and_rollback_request(sit, draft)
    assert (got.reason if got else None) == hold
    assert [e.reason for e in draft.events] == events
    assert draft.fields.get("rollbackHandled") == (None if handled else request_)


def test_the_target_while_held_is_the_recorded_revision_with_its_config() -> None:
    sit = situation(status={"history": [GOOD]}, children=children_for(spec_body()))
    assert target_revision(sit, None).target == sit.wanted
    hold = Hold(sit.key, "", HoldReason.MANUAL_ROLLBACK, "m", to=1)
    aim = target_revision(sit, hold)
    assert aim.target is not None
    assert (aim.target.image, aim.target.config_data) == (IMAGE, {"log-level": "warn"})
    assert aim.rollback_needed          # the live ConfigMap hash differs
    nothing = target_revision(sit, Hold(sit.key, "", HoldReason.MIGRATION_FAILED, "m"))
    assert (nothing.target, nothing.rollback_needed) == (None, False)


def test_the_gate_runs_up_for_a_new_image_and_lets_the_migrated_one_pass() -> None:
    sit = situation(body=spec_body(image=V2))
    draft = Draft()
    gate = migration_gate(sit, None, target_revision(sit, None), draft)
    assert gate.job is not None
    assert gate.job["metadata"]["name"] == "authorization-service-migrate-1"
    assert gate.waiting is not None
    assert draft.fields["migration"]["phase"] == "Running"
    assert draft.fields["lastRevision"] == 1
    same = situation()                  # the database was migrated by this image
    passed = migration_gate(same, None, target_revision(same, None), Draft())
    assert (passed.job, passed.waiting, passed.migrated.reason) == (
        None, None, Reason.MIGRATION_SUCCEEDED)


def test_the_gate_runs_down_with_the_newer_image_for_a_rollback_across_a_schema() -> None:
    status = {"history": [GOOD], "database": {"schemaVersion": "0004", "image": V2}}
    sit = situation(status=status)
    hold = Hold(sit.key, "", HoldReason.MANUAL_ROLLBACK, "m", to=1)
    gate = migration_gate(sit, hold, target_revision(sit, hold), Draft())
    assert gate.job is not None
    container = gate.job["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["command"][-2:]) == (V2, ["--to", "0003"])


def test_the_deployment_is_held_while_migrating_and_keeps_its_live_labels() -> None:
    sit = situation(body=spec_body(image=V2), children=children_for(spec_body()))
    aim = target_revision(sit, None)
    assert hold_deployment(sit, None, aim, migrating=True)
    assert not hold_deployment(sit, None, aim, migrating=False)
    # held: the other children keep the version label of the pods that run, so nothing moves
    assert child_plan(sit, None, aim, held=True, job=None).applies == []
    rolling = child_plan(sit, None, aim, held=False, job=None)
    assert "Deployment" in [a.kind for a in rolling.applies]
    assert rolling.applies[0].obj["metadata"]["labels"]["app.kubernetes.io/version"] == "1.5.0"


def test_verdict_shapes() -> None:
    failing = Verdict.failing(Phase.DEGRADED, Reason.UNAVAILABLE, "m")
    assert (failing.ready.status, failing.progressing.status, failing.degraded.status) == (
        False, False, True)
    moving = Verdict.moving(Phase.ROLLING_OUT, Reason.ROLLING_OUT, "m", Reason.ROLLOUT_STARTED)
    assert (moving.progressing.status, moving.progressing.reason, moving.degraded.reason) == (
        True, Reason.ROLLOUT_STARTED, Reason.AS_EXPECTED)


@pytest.mark.parametrize(("hold", "phase", "reason"), [
    (None, Phase.READY, Reason.ROLLOUT_COMPLETE),
    (Hold("k", "", HoldReason.MANUAL_ROLLBACK, "m", to=1), Phase.READY, Reason.ROLLED_BACK),
    (Hold("k", "", HoldReason.ROLLOUT_FAILED, "m", to=1), Phase.DEGRADED, Reason.ROLLED_BACK),
])
def test_a_finished_rollout_is_ready_unless_it_serves_an_automatic_rollback(
        hold: Hold | None, phase: Phase, reason: Reason) -> None:
    done = _done(hold, "2 of 2 replicas available")
    assert (done.phase, done.ready.reason) == (phase, reason)


@pytest.mark.parametrize(("last", "expected"), [
    ({"terminated": {"reason": "OOMKilled", "exitCode": 137}},
     "pod p crashes: OOMKilled (exit code 137); back-off 10s"),
    ({"terminated": {"reason": "Error", "exitCode": 1}},
     "pod p crashes: Error (exit code 1); back-off 10s"),
    ({}, "pod p crashes: back-off 10s"),
])
def test_a_crash_names_the_kubelets_reason_for_the_last_exit(last: dict[str, Any],
                                                             expected: str) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"image": IMAGE}]},
           "status": {"containerStatuses": [{
               "image": IMAGE, "restartCount": 2, "lastState": last,
               "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
           }]}}
    assert crash_message([pod], IMAGE) == expected
    assert crash_message([pod], "other:1") is None
