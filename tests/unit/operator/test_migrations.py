"""Migrations, revisions and rollbacks (issue 5), driven through a small simulated world:
each `step()` decides on what the world shows and applies the plan to it."""

from __future__ import annotations

import copy
import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from authz_operator import lifecycle as lc
from authz_operator import resources as r
from authz_operator.diff import Change
from authz_operator.spec import parse_spec
from authz_operator.status import Phase

from .samples import OWNER, spec_body

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
SECRETS = {"authorization-secrets": lc.SecretView("41", frozenset({"database-url",
                                                                    "jwt-secret"}))}
V1 = "registry.example/authorization-service:1.4.0"
V2 = "registry.example/authorization-service:1.5.0"


@dataclass
class World:
    body: dict[str, Any] = field(default_factory=spec_body)
    status: dict[str, Any] = field(default_factory=dict)
    children: dict[str, Any] = field(default_factory=dict)
    jobs: dict[str, Any] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    pods: list[Any] = field(default_factory=list)
    generation: int = 1
    minutes: int = 0

    def observed(self) -> lc.Observed:
        return lc.Observed(
            owner=OWNER, generation=self.generation, spec=parse_spec(self.body),
            status=copy.deepcopy(self.status), annotations=dict(self.annotations),
            children=copy.deepcopy(self.children), secrets=SECRETS,
            jobs=copy.deepcopy(self.jobs), job_results=self.unrecorded_results(),
            now=NOW + datetime.timedelta(minutes=self.minutes), pods=list(self.pods))

    def unrecorded_results(self) -> dict[str, str]:
        """As the reconciler observes: a Job's termination message only until the status
        records its outcome."""
        mig = self.status.get("migration") or {}
        newest = int(mig.get("revision") or 0)

        def revision(job: str) -> int:
            return int(self.jobs[job]["metadata"]["labels"][r.LABEL_REVISION])
        return {n: m for n, m in self.results.items()
                if not (mig.get("job") == n and mig.get("phase") in ("Succeeded", "Failed"))
                and revision(n) >= newest}

    def step(self) -> lc.Plan:
        self.minutes += 1
        plan = lc.decide(self.observed())
        for a in plan.applies:
            obj = copy.deepcopy(a.obj)
            obj["metadata"]["uid"] = f"uid-{a.name}"
            if a.kind == "Job":
                assert a.name not in self.jobs, f"second Job {a.name}"
                obj["status"] = {}
                self.jobs[a.name] = obj
            elif a.kind == "Deployment":
                obj["metadata"]["generation"] = 1 + (self.children.get("Deployment") or {}).get(
                    "metadata", {}).get("generation", 0)
                obj["spec"].setdefault("replicas", 2)
                obj["status"] = {"observedGeneration": obj["metadata"]["generation"],
                                 "replicas": 2, "updatedReplicas": 0}
                self.children["Deployment"] = obj
            else:
                self.children[a.kind] = obj
        for kind, _ in plan.deletes:
            self.children.pop(kind, None)
        self.status = plan.status
        return plan

    def settle(self) -> lc.Plan:
        """Step until the plan asks for nothing more; return the last plan."""
        plan = self.step()
        while plan.again:
            plan = self.step()
        return plan

    def finish_job(self, name: str, ok: bool, message: str) -> None:
        self.jobs[name]["status"] = {"conditions": [
            {"type": "Complete" if ok else "Failed", "status": "True"}]}
        self.results[name] = message

    def roll_out(self) -> None:
        dep = self.children["Deployment"]
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"], "replicas": 2,
            "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2,
            "conditions": [{"type": "Available", "status": "True",
                            "reason": "MinimumReplicasAvailable"}]}

    def fail_rollout(self) -> None:
        dep = self.children["Deployment"]
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"], "replicas": 3,
            "updatedReplicas": 1, "readyReplicas": 2, "availableReplicas": 2,
            "conditions": [{"type": "Progressing", "status": "False",
                            "reason": "ProgressDeadlineExceeded",
                            "message": "ReplicaSet has timed out progressing."}]}

    def change_spec(self, **changes: Any) -> None:
        self.body = spec_body(**changes)
        self.generation += 1

    def image(self) -> str:
        return str(self.children["Deployment"]["spec"]["template"]["spec"]["containers"][0][
            "image"])

    def cond(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == type_)


def ok(version: str, *applied: str) -> str:
    return json.dumps({"schemaVersion": version, "applied": list(applied)})


def deployed(world: World, image: str = V1, schema: str = "0003") -> None:
    """Bring a world to Ready on `image` (the first migration and rollout)."""
    world.change_spec(image=image) if world.body["image"] != image else None
    world.step()
    job = next(n for n, j in world.jobs.items() if j["status"] == {})
    world.finish_job(job, True, ok(schema))
    world.step()
    world.roll_out()
    world.step()
    assert world.status["phase"] == Phase.READY, world.status


def test_first_deploy_migrates_before_the_deployment_exists() -> None:
    w = World()
    plan = w.step()
    kinds = [(a.kind, a.change) for a in plan.applies]
    assert ("Deployment", Change.CREATE) not in kinds
    assert kinds[-1] == ("Job", Change.CREATE)
    job = plan.applies[-1].obj
    assert job["metadata"]["name"] == "authorization-service-migrate-1"
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "authz-service", "migrate", "up"]
    assert w.status["phase"] == Phase.MIGRATING
    assert w.cond("Migrated")["status"] == "False"
    assert w.status["migration"]["revision"] == 1
    assert "MigrationStarted" in [e.reason for e in plan.events]

    # While the Job runs nothing more is written, and no second Job ever appears.
    assert w.step().writes == 0

    w.finish_job("authorization-service-migrate-1", True, ok("0003", "0001", "0002", "0003"))
    plan = w.step()
    assert [a.kind for a in plan.applies] == ["Deployment"]
    assert w.status["database"] == {"schemaVersion": "0003", "image": V1}
    assert w.cond("Migrated")["status"] == "True"
    assert w.status["phase"] == Phase.ROLLING_OUT
    assert [e.reason for e in plan.events] == ["Created", "RolloutStarted", "MigrationSucceeded"]

    w.roll_out()
    w.step()
    assert (w.status["phase"], w.status["revision"], w.status["schemaVersion"]) == (
        Phase.READY, 1, "0003")
    [entry] = w.status["history"]
    assert (entry["revision"], entry["image"], entry["schemaVersion"], entry["outcome"]) == (
        1, V1, "0003", "Deployed")
    assert entry["config"]["log-level"] == "info"
    assert w.step().writes == 0


def test_failed_migration_leaves_the_deployment_and_is_not_retried_until_asked() -> None:
    w = World()
    deployed(w)
    before = copy.deepcopy(w.children["Deployment"])
    w.change_spec(image=V2 + "-badmigration")
    w.step()
    w.finish_job("authorization-service-migrate-2", False,
                 json.dumps({"code": "sql",
                            "error": "migration 9999_injected_failure failed: boom"}))
    plan = w.step()
    assert "Deployment" not in [a.kind for a in plan.applies]
    assert w.children["Deployment"] == before
    assert w.status["phase"] == Phase.FAILED
    migrated = w.cond("Migrated")
    assert (migrated["status"], migrated["reason"]) == ("False", "MigrationFailed")
    assert "9999_injected_failure failed: boom" in migrated["message"]
    assert "MigrationFailed" in [e.reason for e in plan.events]
    assert w.status["database"] == {"schemaVersion": "0003", "image": V1}

    # No retry loop: the same spec is left alone.
    assert w.step().writes == 0
    assert w.step().writes == 0

    # The retry annotation tries again, with a new revision number.
    w.annotations[r.ANN_RETRY] = "1"
    plan = w.step()
    assert [a.name for a in plan.applies if a.kind == "Job"] == [
        "authorization-service-migrate-3"]
    assert "Retrying" in [e.reason for e in plan.events]


def test_image_older_than_the_schema_is_refused() -> None:
    w = World()
    deployed(w)
    w.change_spec(image="registry.example/authorization-service:1.0.0")
    w.step()
    w.finish_job("authorization-service-migrate-2", False, json.dumps({
        "code": "schema_newer",
        "error": "database schema 0003 is newer than this code's newest migration 0002; "
                 "run the newer image instead"}))
    w.step()
    assert w.status["phase"] == Phase.FAILED
    assert w.cond("Migrated")["reason"] == "SchemaNewerThanImage"
    assert w.image() == V1


def test_a_second_job_waits_for_the_running_one() -> None:
    w = World()
    w.step()                                           # migrate-1 runs
    w.change_spec(image=V2)
    plan = w.step()
    assert [a for a in plan.applies if a.kind == "Job"] == []
    assert "waiting for Job authorization-service-migrate-1" in w.cond("Ready")["message"]
    w.finish_job("authorization-service-migrate-1", True, ok("0003"))
    plan = w.step()
    assert [a.name for a in plan.applies if a.kind == "Job"] == [
        "authorization-service-migrate-2"]


def test_a_job_created_before_a_crash_is_adopted_not_duplicated() -> None:
    w = World()
    w.step()
    w.status = {}                # the status patch never happened (operator killed)
    plan = w.step()              # World.step asserts no second Job with the same name
    assert [a for a in plan.applies if a.kind == "Job"] == []
    assert w.status["migration"]["job"] == "authorization-service-migrate-1"


def test_failed_rollout_rolls_back_schema_first_then_image_and_config() -> None:
    w = World()
    deployed(w)
    w.change_spec(image=V2 + "-unready", logLevel="debug")
    w.step()
    w.finish_job("authorization-service-migrate-2", True, ok("0004", "0004"))
    w.step()
    assert w.image() == V2 + "-unready"
    w.fail_rollout()
    plan = w.settle()
    assert [e.reason for e in plan.events if e.reason in ("RolloutFailed", "RollingBack")] == []
    assert w.status["history"][-1]["outcome"] == "Failed"
    assert w.status["history"][-1]["revision"] == 2
    # the schema moved: the down-migration runs first, with the NEWER image
    down = w.jobs["authorization-service-rollback-3"]
    container = down["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == V2 + "-unready"
    assert container["command"] == ["authz-service", "migrate", "down", "--to", "0003"]
    assert w.status["phase"] == Phase.ROLLING_BACK
    assert w.image() == V2 + "-unready"

    w.finish_job("authorization-service-rollback-3", True, ok("0003"))
    w.step()
    assert w.image() == V1
    assert w.children["ConfigMap"]["data"]["log-level"] == "info"
    assert w.status["database"] == {"schemaVersion": "0003", "image": V1}
    w.roll_out()
    plan = w.step()
    assert w.status["phase"] == Phase.DEGRADED
    degraded = w.cond("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RolledBack")
    assert "RolledBack" in [e.reason for e in plan.events]
    assert (w.status["revision"], w.status["image"], w.status["schemaVersion"]) == (1, V1, "0003")
    assert w.step().writes == 0          # and the failed spec is not tried again


def test_rollout_events_on_failure() -> None:
    w = World()
    deployed(w)
    w.change_spec(image=V2 + "-crash")
    w.step()
    w.finish_job("authorization-service-migrate-2", True, ok("0003"))
    w.step()
    w.pods = [{"metadata": {"name": "p1"}, "spec": {"containers": [{"image": V2 + "-crash"}]},
               "status": {"containerStatuses": [{
                   "image": V2 + "-crash", "restartCount": 1,
                   "state": {"waiting": {"reason": "CrashLoopBackOff",
                                         "message": "back-off 1s"}}}]}}]
    plan = w.step()
    assert [e.reason for e in plan.events if e.type == "Warning"] == ["RolloutFailed"]
    assert "RollingBack" in [e.reason for e in plan.events]
    assert plan.again
    assert "pod p1 crashes" in w.status["history"][-1]["message"]
    w.pods = []
    w.step()          # schema did not move: no down Job, straight back to the old image
    assert not any(n.startswith("authorization-service-rollback") for n in w.jobs)
    assert w.image() == V1


def test_no_auto_rollback_when_disabled() -> None:
    w = World(body=spec_body(rollout={"autoRollback": False}))
    deployed(w)
    w.body = spec_body(image=V2, rollout={"autoRollback": False})
    w.generation += 1
    w.step()
    w.finish_job("authorization-service-migrate-2", True, ok("0003"))
    w.step()
    w.fail_rollout()
    w.step()
    assert w.status["phase"] == Phase.DEGRADED
    assert w.cond("Ready")["reason"] == "RolloutFailed"
    assert w.image() == V2


def test_manual_rollback_to_a_recorded_revision() -> None:
    w = World()
    deployed(w)
    w.change_spec(image=V2)
    w.step()
    w.finish_job("authorization-service-migrate-2", True, ok("0004", "0004"))
    w.step()
    w.roll_out()
    w.step()
    assert (w.status["revision"], w.status["phase"]) == (2, Phase.READY)

    w.annotations[r.ANN_ROLLBACK_TO] = "1"
    plan = w.step()
    assert "RollingBack" in [e.reason for e in plan.events]
    down = w.jobs["authorization-service-rollback-3"]
    assert down["spec"]["template"]["spec"]["containers"][0]["image"] == V2
    w.finish_job("authorization-service-rollback-3", True, ok("0003"))
    w.step()
    assert w.image() == V1
    w.roll_out()
    w.step()
    assert w.status["phase"] == Phase.READY
    assert w.cond("Ready")["reason"] == "RolledBack"
    assert (w.status["revision"], w.status["image"], w.status["schemaVersion"]) == (4, V1, "0003")
    assert w.status["history"][-1]["outcome"] == "RolledBack"
    assert w.step().writes == 0


def _rollback_refused_by_an_irreversible_migration() -> World:
    """V1 -> V2 (migration 0004), then a rollback to revision 1 whose down Job refuses."""
    w = World()
    deployed(w)
    w.change_spec(image=V2)
    w.step()
    w.finish_job("authorization-service-migrate-2", True, ok("0004"))
    w.step()
    w.roll_out()
    w.step()
    w.annotations[r.ANN_ROLLBACK_TO] = "1"
    w.step()
    w.finish_job("authorization-service-rollback-3", False, json.dumps({
        "code": "irreversible",
        "error": "migration 0004_drop is irreversible (drops data); cannot go below 0004"}))
    return w


def test_rollback_across_an_irreversible_migration_is_refused() -> None:
    w = _rollback_refused_by_an_irreversible_migration()
    plan = w.step()
    assert w.status["phase"] == Phase.FAILED
    assert w.cond("Migrated")["reason"] == "RollbackRefused"
    assert "0004_drop is irreversible" in w.cond("Ready")["message"]
    assert "RollbackRefused" in [e.reason for e in plan.events]
    assert w.image() == V2
    assert w.step().writes == 0


def test_unknown_rollback_revision_is_refused() -> None:
    w = World()
    deployed(w)
    w.annotations[r.ANN_ROLLBACK_TO] = "7"
    plan = w.step()
    assert [e.reason for e in plan.events] == ["RollbackRefused"]
    assert w.image() == V1


def test_migrations_disabled_skips_the_job() -> None:
    w = World(body=spec_body(migrations={"enabled": False}))
    plan = w.step()
    assert "Job" not in [a.kind for a in plan.applies]
    assert "Deployment" in [a.kind for a in plan.applies]
    assert w.cond("Migrated")["reason"] == "MigrationsDisabled"


def test_config_change_without_image_change_needs_no_migration() -> None:
    w = World()
    deployed(w)
    w.change_spec(logLevel="debug")
    plan = w.step()
    assert "Job" not in [a.kind for a in plan.applies]
    assert "Deployment" in [a.kind for a in plan.applies]
    w.roll_out()
    w.step()
    assert w.status["revision"] == 2


def test_a_recorded_failure_keeps_its_reason_and_message_on_later_reconciles() -> None:
    """Later reconciles no longer read the pod's message: the record must give the same
    verdict (a reconcile woken by any event used to turn RollbackRefused into RollbackFailed
    and drop the error)."""
    w = _rollback_refused_by_an_irreversible_migration()
    w.step()
    assert w.unrecorded_results() == {}
    for _ in range(2):
        assert w.step().writes == 0
        assert w.cond("Migrated")["reason"] == "RollbackRefused"
        assert "0004_drop is irreversible" in w.cond("Ready")["message"]


def test_a_failure_without_a_message_says_so_every_time() -> None:
    w = World()
    deployed(w)
    w.change_spec(image=V2 + "-badmigration")
    w.step()
    w.finish_job("authorization-service-migrate-2", False, "")
    w.step()
    assert w.cond("Migrated")["message"] == (
        "Job authorization-service-migrate-2 failed: see its pod logs")
    assert w.step().writes == 0


def test_the_operator_decides_by_the_code_not_by_the_words() -> None:
    w = World()
    deployed(w)
    w.change_spec(image="registry.example/authorization-service:1.0.0")
    w.step()
    w.finish_job("authorization-service-migrate-2", False, json.dumps({
        "code": "sql", "error": "relation is newer than expected; irreversible"}))
    w.step()
    assert w.cond("Migrated")["reason"] == "MigrationFailed"
    assert w.status["migration"]["code"] == "sql"


def test_parse_result() -> None:
    assert lc.parse_result(ok("0003")) == lc.MigrateResult(schema_version="0003")
    assert lc.parse_result('{"code": "irreversible", "error": "no"}') == lc.MigrateResult(
        error="no", code="irreversible")
    assert lc.parse_result('{"error": "an older image"}') == lc.MigrateResult(
        error="an older image")
    assert lc.parse_result("panic:\n  at line 1") == lc.MigrateResult(error="panic: at line 1")
    assert lc.parse_result(None) == lc.MigrateResult()
