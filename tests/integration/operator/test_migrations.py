"""Migrations, revisions and rollbacks with the service's real code: pods and Job pods of
`registry.example/authorization-service:<tag>` are containers on the real node, against a
database of the test's own (tag suffixes inject failures, docs/development.md)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from authz_operator.kube import Kube
from tests.conftest import DevEnv

from .conftest import measured, wait_for
from .helpers import NAME, condition, cr, reasons, secret, status
from .inprocess import Operator

pytestmark = [pytest.mark.cluster, pytest.mark.servers]

V1 = "registry.example/authorization-service:1.4.0"
# A newer image whose extra migration moves the schema (hack/images/1.5.0/migrations).
V2 = "registry.example/authorization-service:1.5.0"
JOB_PODS = f"app.kubernetes.io/instance={NAME},rwadurian.io/migration"
SERVICE_PODS = f"app.kubernetes.io/instance={NAME},!rwadurian.io/migration"


def schema(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        if not exists or exists[0] is None:
            return []
        return [r[0] for r in conn.execute(
            "SELECT version FROM schema_migrations ORDER BY version").fetchall()]


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}


def service_cr(devenv: DevEnv, namespace: str, image: str, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": image,
        "redis": {"host": devenv.redis_host, "port": devenv.redis_port},
        "kafka": {"brokers": devenv.kafka_brokers.split(",")},
        "autoscaling": {"enabled": False}, "replicas": 1, "ingress": {"enabled": False},
        "rollout": {"progressDeadlineSeconds": 15, "autoRollback": True,
                    "revisionHistoryLimit": 10},
        "migrations": {"enabled": True, "backoffLimit": 0, "activeDeadlineSeconds": 120},
    }
    return cr(namespace, **{**spec, **extra})


def deploy(kube: Kube, devenv: DevEnv, namespace: str, database: str, image: str = V1,
           **extra: Any) -> dict[str, Any]:
    kube.apply(secret(namespace, data={"database-url": database, "jwt-secret": "e2e-secret"}))
    kube.apply(service_cr(devenv, namespace, image, **extra))
    return wait_for("Ready", lambda: _ready(kube, namespace, image), timeout=120)


def _ready(kube: Kube, namespace: str, image: str) -> dict[str, Any] | None:
    st = status(kube, namespace)
    return st if st.get("phase") == "Ready" and st.get("image") == image else None


def change_image(kube: Kube, devenv: DevEnv, namespace: str, image: str,
                 **extra: Any) -> None:
    kube.apply(service_cr(devenv, namespace, image, **extra))


def test_create_runs_the_job_then_the_deployment(
        operator: Operator, kube: Kube, devenv: DevEnv, namespace: str, database: str) -> None:
    started = time.monotonic()
    st = deploy(kube, devenv, namespace, database)
    measured("apply -> Ready with a real migration and a real pod", time.monotonic() - started,
             "s")
    assert schema(database) == ["0001", "0002", "0003"]
    assert {"outbox"} <= tables(database)
    assert (st["schemaVersion"], st["revision"]) == ("0003", 1)
    assert condition(st, "Migrated")["status"] == "True"
    [job] = kube.list("Job", namespace, JOB_PODS)
    assert job["metadata"]["name"] == f"{NAME}-migrate-1"
    # the Deployment was created only after the Job had succeeded
    dep = kube.get("Deployment", namespace, NAME)
    assert dep is not None
    job_done = job["status"]["completionTime"]
    assert dep["metadata"]["creationTimestamp"] >= job_done
    assert {"MigrationStarted", "MigrationSucceeded", "RolloutStarted"} <= set(
        reasons(kube, namespace))


def test_bad_migration_leaves_schema_and_deployment_untouched(
        operator: Operator, kube: Kube, devenv: DevEnv, namespace: str, database: str) -> None:
    deploy(kube, devenv, namespace, database)
    before = kube.get("Deployment", namespace, NAME)
    assert before is not None
    change_image(kube, devenv, namespace, V1.replace("1.4.0", "1.4.1-badmigration"))

    def failed() -> dict[str, Any] | None:
        st = status(kube, namespace)
        return st if st.get("phase") == "Failed" else None
    st = wait_for("phase Failed", failed, timeout=90)
    migrated = condition(st, "Migrated")
    assert (migrated["status"], migrated["reason"]) == ("False", "MigrationFailed")
    assert "9999" in migrated["message"]
    assert schema(database) == ["0001", "0002", "0003"]
    assert "injected_failure_marker" not in tables(database)
    after = kube.get("Deployment", namespace, NAME)
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert "MigrationFailed" in reasons(kube, namespace)

    # No retry loop: one Job for the failed revision, until someone asks.
    jobs = {j["metadata"]["name"] for j in kube.list("Job", namespace, JOB_PODS)}
    assert jobs == {f"{NAME}-migrate-1", f"{NAME}-migrate-2"}
    body = service_cr(devenv, namespace, V1.replace("1.4.0", "1.4.1-badmigration"))
    body["metadata"]["annotations"] = {"rwadurian.io/retry": "1"}
    kube.apply(body)
    wait_for("a retry Job", lambda: kube.get("Job", namespace, f"{NAME}-migrate-3"))


def test_unready_rollout_is_rolled_back(
        operator: Operator, kube: Kube, devenv: DevEnv, namespace: str, database: str) -> None:
    deploy(kube, devenv, namespace, database)
    change_image(kube, devenv, namespace, V1.replace("1.4.0", "1.4.0-unready"))
    wait_for("the unready rollout", lambda: status(kube, namespace).get("phase") == "RollingOut")
    started = time.monotonic()

    def rolled_back() -> dict[str, Any] | None:
        st = status(kube, namespace)
        ok = st.get("phase") == "Degraded" and condition(st, "Degraded").get(
            "reason") == "RolledBack"
        return st if ok else None
    st = wait_for("rolled back", rolled_back, timeout=120)
    measured("unready rollout -> rolled back (progressDeadlineSeconds 15)",
             time.monotonic() - started, "s")
    assert (st["revision"], st["image"]) == (1, V1)
    assert st["history"][-1]["outcome"] == "Failed"
    dep = kube.get("Deployment", namespace, NAME)
    assert dep is not None
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == V1
    assert {"RolloutFailed", "RollingBack", "RolledBack"} <= set(reasons(kube, namespace))


def test_crashing_rollout_is_rolled_back(
        operator: Operator, kube: Kube, devenv: DevEnv, namespace: str, database: str) -> None:
    deploy(kube, devenv, namespace, database, rollout={
        "progressDeadlineSeconds": 600, "autoRollback": True, "revisionHistoryLimit": 10})
    started = time.monotonic()
    change_image(kube, devenv, namespace, V1.replace("1.4.0", "1.4.0-crash"), rollout={
        "progressDeadlineSeconds": 600, "autoRollback": True, "revisionHistoryLimit": 10})

    def rolled_back() -> dict[str, Any] | None:
        st = status(kube, namespace)
        ok = condition(st, "Degraded").get("reason") == "RolledBack"
        return st if ok else None
    st = wait_for("rolled back without waiting for the deadline", rolled_back, timeout=120)
    measured("crashing rollout -> rolled back", time.monotonic() - started, "s")
    assert "crashes" in st["history"][-1]["message"]


def test_manual_rollback_to_an_older_revision(
        operator: Operator, kube: Kube, devenv: DevEnv, namespace: str, database: str) -> None:
    deploy(kube, devenv, namespace, database)
    kube.apply(service_cr(devenv, namespace, V1, logLevel="debug"))
    wait_for("revision 2", lambda: (s := _ready(kube, namespace, V1)) and s["revision"] == 2)
    body = service_cr(devenv, namespace, V1, logLevel="debug")
    body["metadata"]["annotations"] = {"rwadurian.io/rollback-to": "1"}
    kube.apply(body)

    def back() -> dict[str, Any] | None:
        st = status(kube, namespace)
        ok = (st.get("phase") == "Ready" and condition(st, "Ready").get("reason") == "RolledBack"
              and st.get("revision") == 3)
        return st if ok else None
    st = wait_for("rolled back to revision 1's configuration", back, timeout=120)
    assert st["history"][-1]["outcome"] == "RolledBack"
    cm = kube.get("ConfigMap", namespace, f"{NAME}-config") or {}
    assert cm["data"]["log-level"] == "info"


def test_operator_killed_while_the_job_runs_starts_no_second_job(
        operator: Operator, kube: Kube, devenv: DevEnv, namespace: str, database: str) -> None:
    # The Job waits for the database lock we hold, so it is surely running when we kill.
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (0x617574687A,))
        kube.apply(secret(namespace, data={"database-url": database, "jwt-secret": "x"}))
        kube.apply(service_cr(devenv, namespace, V1))
        wait_for("the Job", lambda: kube.get("Job", namespace, f"{NAME}-migrate-1"))
        operator.stop()
        operator.start()
        wait_for("the restarted operator to see the running Job", lambda: status(
            kube, namespace).get("phase") == "Migrating")
        conn.execute("SELECT pg_advisory_unlock(%s)", (0x617574687A,))
    wait_for("Ready", lambda: _ready(kube, namespace, V1), timeout=120)
    assert [j["metadata"]["name"] for j in kube.list("Job", namespace, JOB_PODS)] == [
        f"{NAME}-migrate-1"]


def test_new_image_advances_the_schema_and_its_rollback_takes_it_down(
        operator: Operator, kube: Kube, devenv: DevEnv, namespace: str, database: str) -> None:
    deploy(kube, devenv, namespace, database)
    change_image(kube, devenv, namespace, V2)
    st = wait_for("Ready on 1.5.0", lambda: _ready(kube, namespace, V2), timeout=120)
    assert st["schemaVersion"] == "0004"
    assert schema(database)[-1] == "0004"

    change_image(kube, devenv, namespace, V2.replace("1.5.0", "1.5.0-unready"))
    # 1.5.0-unready has the same migrations as 1.5.0: the schema stays at 0004, rollback to
    # revision 2 needs no down-migration. Roll back by hand to revision 1 instead:
    wait_for("rolled back", lambda: condition(status(kube, namespace), "Degraded").get(
        "reason") == "RolledBack", timeout=120)
    body = service_cr(devenv, namespace, V2.replace("1.5.0", "1.5.0-unready"))
    body["metadata"]["annotations"] = {"rwadurian.io/rollback-to": "1"}
    kube.apply(body)
    wait_for("serving 1.4.0 again", lambda: _ready(kube, namespace, V1), timeout=120)
    assert schema(database)[-1] == "0003"
    down = [j for j in kube.list("Job", namespace, JOB_PODS)
            if j["metadata"]["labels"]["rwadurian.io/migration"] == "down"]
    assert [j["spec"]["template"]["spec"]["containers"][0]["image"] for j in down] == [
        V2.replace("1.5.0", "1.5.0-unready")]


def test_automatic_rollback_of_a_schema_change_takes_the_schema_down(
        operator: Operator, kube: Kube, devenv: DevEnv, namespace: str, database: str) -> None:
    deploy(kube, devenv, namespace, database)
    assert schema(database)[-1] == "0003"
    unready = V2.replace("1.5.0", "1.5.0-unready")
    # 1.5.0's migration 0004 runs, its pods never become ready: the operator must run 0004's
    # down with the newer image, then serve 1.4.0 again.
    change_image(kube, devenv, namespace, unready)

    def rolled_back() -> dict[str, Any] | None:
        st = status(kube, namespace)
        degraded = condition(st, "Degraded")
        done = degraded.get("reason") == "RolledBack" and st.get("image") == V1
        return st if done else None

    st = wait_for("rolled back to 1.4.0", rolled_back, timeout=120)
    assert st["phase"] == "Degraded"
    assert schema(database)[-1] == "0003"
    assert st["schemaVersion"] == "0003"
    down = [j for j in kube.list("Job", namespace, JOB_PODS)
            if j["metadata"]["labels"]["rwadurian.io/migration"] == "down"]
    assert [j["spec"]["template"]["spec"]["containers"][0]["image"] for j in down] == [unready]
    outcomes = [(h["image"], h["outcome"]) for h in st["history"]]
    assert outcomes == [(V1, "Deployed"), (unready, "Failed")]


V3 = "registry.example/authorization-service:1.6.0"


def migrated_because(kube: Kube, namespace: str, reason: str) -> dict[str, Any] | None:
    """The Migrated condition, once it has `reason`."""
    migrated = condition(status(kube, namespace), "Migrated")
    return migrated if migrated.get("reason") == reason else None


def test_manual_rollback_across_an_irreversible_migration_is_refused(
        operator: Operator, kube: Kube, devenv: DevEnv, namespace: str, database: str) -> None:
    deploy(kube, devenv, namespace, database)
    change_image(kube, devenv, namespace, V3)
    wait_for("Ready on 1.6.0", lambda: _ready(kube, namespace, V3), timeout=120)
    assert schema(database)[-2:] == ["0004", "0005"]
    body = service_cr(devenv, namespace, V3)
    body["metadata"]["annotations"] = {"rwadurian.io/rollback-to": "1"}
    kube.apply(body)

    migrated = wait_for("rollback refused",
                        lambda: migrated_because(kube, namespace, "RollbackRefused"), timeout=120)
    assert "0005" in migrated["message"]
    assert "irreversible" in migrated["message"]
    # Nothing was undone: the schema and the serving image stay where they were.
    assert schema(database)[-1] == "0005"
    assert status(kube, namespace)["image"] == V3
    assert "RollbackRefused" in reasons(kube, namespace)


def test_an_image_older_than_the_schema_is_refused(
        operator: Operator, kube: Kube, devenv: DevEnv, namespace: str, database: str) -> None:
    deploy(kube, devenv, namespace, database, image=V2)
    assert schema(database)[-1] == "0004"
    change_image(kube, devenv, namespace, V1)  # 1.4.0 knows migrations up to 0003 only

    migrated = wait_for("old image refused",
                        lambda: migrated_because(kube, namespace, "SchemaNewerThanImage"),
                        timeout=120)
    assert "0004" in migrated["message"]
    assert "0003" in migrated["message"]
    assert schema(database)[-1] == "0004"
    dep = kube.get("Deployment", namespace, NAME)
    assert dep is not None
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == V2
