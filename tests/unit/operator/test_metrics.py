"""The operator's metrics: what a reconcile's status change counts (pure), and the helpers the
reconciler calls (against the module's own registry, with a namespace per test)."""

from __future__ import annotations

import re
import secrets
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from authz_operator import metrics
from authz_operator.metrics import MigrationFinished, condition_values, finished_migration

ROOT = Path(__file__).resolve().parents[3]


def job(name: str, uid: str, direction: str = "up", start: str | None = "2026-01-02T00:00:00Z",
        completion: str | None = None, failed_at: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if start:
        status["startTime"] = start
    if completion:
        status["completionTime"] = completion
        status["conditions"] = [{"type": "Complete", "status": "True",
                                 "lastTransitionTime": completion}]
    if failed_at:
        status["conditions"] = [
            {"type": "FailureTarget", "status": "True", "lastTransitionTime": failed_at},
            {"type": "Failed", "status": "True", "lastTransitionTime": "2026-01-02T00:09:59Z"}]
    return {"metadata": {"name": name, "uid": uid,
                         "labels": {"rwadurian.io/migration": direction}},
            "status": status}


def mig(job_name: str, phase: str, direction: str = "up") -> dict[str, Any]:
    return {"migration": {"job": job_name, "phase": phase, "direction": direction,
                          "revision": 2}}


# ---------------------------------------------------------------------------------------------
# pure


@pytest.mark.parametrize(("job_obj", "seconds"), [
    (job("j", "u", completion="2026-01-02T00:00:42Z"), 42.0),
    # a failed Job has no completionTime: the first condition that ended it counts
    (job("j", "u", failed_at="2026-01-02T00:01:00Z"), 60.0),
    (job("j", "u", start=None, completion="2026-01-02T00:00:42Z"), None),
    (job("j", "u"), None),                                         # still running
    ({"status": {"startTime": "garbage", "completionTime": "2026-01-02T00:00:42Z"}}, None),
])
def test_job_seconds(job_obj: Mapping[str, Any], seconds: float | None) -> None:
    assert metrics.job_seconds(job_obj) == seconds


def test_a_migration_is_finished_once_when_the_status_first_records_it() -> None:
    jobs = {"a-migrate-2": job("a-migrate-2", "uid-2", completion="2026-01-02T00:00:05Z")}
    running = mig("a-migrate-2", "Running")
    succeeded = mig("a-migrate-2", "Succeeded")
    assert finished_migration(running, succeeded, jobs) == MigrationFinished(
        "a-migrate-2", "uid-2", "up", "succeeded", 5.0)
    assert finished_migration(succeeded, succeeded, jobs) is None      # already recorded
    assert finished_migration({}, running, jobs) is None               # not finished
    assert finished_migration({}, {}, jobs) is None
    # an operator adopting a finished Job it never saw running still counts it once
    assert finished_migration({}, succeeded, jobs) is not None


def test_a_failed_down_migration_and_a_new_job_after_a_recorded_one() -> None:
    jobs = {"a-rollback-3": job("a-rollback-3", "uid-3", "down",
                                failed_at="2026-01-02T00:00:07Z")}
    before = mig("a-migrate-2", "Succeeded")
    after = mig("a-rollback-3", "Failed", direction="down")
    assert finished_migration(before, after, jobs) == MigrationFinished(
        "a-rollback-3", "uid-3", "down", "failed", 7.0)


def test_a_job_already_gone_counts_without_a_duration() -> None:
    done = finished_migration({}, mig("a-migrate-2", "Failed"), {})
    assert done == MigrationFinished("a-migrate-2", "a-migrate-2", "up", "failed", None)


@pytest.mark.parametrize(("events", "migration", "outcome"), [
    (["RolloutFailed", "RollingBack"], None, None),
    (["RolledBack"], None, "succeeded"),
    ([], MigrationFinished("j", "u", "down", "failed", 1.0), "failed"),
    (["RollbackFailed"], MigrationFinished("j", "u", "down", "failed", 1.0), "failed"),
    ([], MigrationFinished("j", "u", "down", "succeeded", 1.0), None),  # not over yet
    ([], MigrationFinished("j", "u", "up", "failed", 1.0), None),       # not a rollback
])
def test_finished_rollback(events: list[str], migration: MigrationFinished | None,
                           outcome: str | None) -> None:
    assert metrics.finished_rollback(events, migration) == outcome


def test_condition_values_one_for_the_current_status_zero_for_the_others() -> None:
    assert condition_values([{"type": "Ready", "status": "False"},
                             {"type": "Available"}]) == {
        ("Ready", "True"): 0.0, ("Ready", "False"): 1.0, ("Ready", "Unknown"): 0.0,
        ("Available", "True"): 0.0, ("Available", "False"): 0.0,
        ("Available", "Unknown"): 1.0}
    assert condition_values(None) == {}


# ---------------------------------------------------------------------------------------------
# the helpers, on the registry


@pytest.fixture
def ns() -> str:
    return f"ns-{secrets.token_hex(4)}"


def series(metric: str, **labels: str) -> float:
    return metrics.value(metric, labels)


def test_reconciled_counts_a_migration_once_per_job(ns: str) -> None:
    jobs = {"a-migrate-1": job("a-migrate-1", f"uid-{ns}", completion="2026-01-02T00:00:03Z")}
    old, new = mig("a-migrate-1", "Running"), {
        **mig("a-migrate-1", "Succeeded"),
        "conditions": [{"type": "Ready", "status": "False"}]}
    metrics.reconciled(ns, "a", "child-jobs", 0.02, 3, old, new, jobs, ["MigrationSucceeded"])
    # the same transition again (e.g. a status write that raced): the Job's uid was counted
    metrics.reconciled(ns, "a", "child-jobs", 0.02, 0, old, new, jobs, [])
    up = {"namespace": ns, "name": "a", "direction": "up", "outcome": "succeeded"}
    assert series("authz_operator_migrations_total", **up) == 1
    assert series("authz_operator_migration_duration_seconds_count", **up) == 1
    assert series("authz_operator_migration_duration_seconds_sum", **up) == 3.0
    assert series("authz_operator_reconciles_total", namespace=ns, handler="child-jobs",
                  result="ok") == 2
    assert series("authz_operator_reconcile_duration_seconds_count", namespace=ns) == 2
    assert series("authz_operator_writes_total", namespace=ns) == 3
    assert series("authz_operator_condition", namespace=ns, type="Ready", status="False") == 1
    assert series("authz_operator_condition", namespace=ns, type="Ready", status="True") == 0


def test_condition_gauge_follows_the_status_and_is_dropped_with_the_resource(ns: str) -> None:
    def report(status: str) -> None:
        metrics.reconciled(ns, "a", "reconcile", 0.01, 0, {},
                           {"conditions": [{"type": "Ready", "status": status}]}, {}, [])

    report("False")
    report("True")
    ready = {"namespace": ns, "type": "Ready"}
    assert series("authz_operator_condition", status="True", **ready) == 1
    assert series("authz_operator_condition", status="False", **ready) == 0
    metrics.reconcile_failed(ns, "a", "reconcile", 0.5)
    metrics.reconcile_failed(ns, "b", "reconcile", 0.5)
    assert series("authz_operator_reconciles_total", namespace=ns, result="error") == 2

    metrics.forget(ns, "a")
    text = metrics.generate().decode()
    assert f'namespace="{ns}",type="Ready"' not in text
    assert f'name="a",namespace="{ns}"' not in text
    assert f'handler="reconcile",name="b",namespace="{ns}"' in text   # other resources stay


def test_counting_errors_counts_and_reraises() -> None:
    handler = f"h-{secrets.token_hex(4)}"
    with pytest.raises(ValueError, match="boom"), metrics.counting_errors(handler):
        raise ValueError("boom")
    with metrics.counting_errors(handler):
        pass
    assert series("authz_operator_handler_errors_total", handler=handler) == 1


def test_the_endpoint_serves_the_registry() -> None:
    server = metrics.Server(0, addr="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics",
                                    timeout=5) as resp:
            text = resp.read().decode()
    finally:
        server.stop()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"authz_operator_reconciles", "authz_operator_condition",
            "process_cpu_seconds"} <= names


def test_the_documented_metrics_are_the_ones_defined() -> None:
    """docs/operations.md's metrics table (which the monitoring tests check the alerts
    against) lists exactly the metrics and labels this module defines."""
    text = (ROOT / "docs" / "operations.md").read_text()
    table = text[text.index("| metric | type | labels |"):]
    documented: dict[str, set[str]] = {}
    for row in re.finditer(r"^\| `(authz_operator_\w+)` \| \w+ \| ([^|]*) \|", table, re.M):
        documented[row[1]] = set(re.findall(r"\b(namespace|name|[a-z]+)\b(?![`)])",
                                            re.sub(r"\([^)]*\)", "", row[2])))
    defined = {m.name + ("_total" if m.kind == "counter" else ""): set(m.labelnames)
               for m in (*metrics.PER_RESOURCE, metrics.HANDLER_ERRORS, metrics.NOT_NEWS)}
    assert documented == defined


def test_the_handler_label_names_handlers_kopf_runs() -> None:
    """The `handler` label values are the ids of handlers registered with kopf."""
    import kopf

    from authz_operator import handlers

    registry: Any = kopf.get_default_registry()
    ids = {str(h.id) for reg in (registry._watching, registry._changing)
           for h in reg.get_all_handlers()}
    assert ids == {handlers.RECONCILE, handlers.SECRET_CHANGED, handlers.GONE} | {
        handlers.child_handler(plural) for _, _, plural in handlers.CHILD_RESOURCES}
