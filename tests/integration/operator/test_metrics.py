"""The operator's metrics endpoint, scraped over HTTP while a real journey runs: migration Jobs
of the service's real code (a good one, a `-badmigration` one), a crashing rollout rolled back,
then the resource deleted."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from authz_operator.kube import Kube
from tests.conftest import DevEnv

from .conftest import Recorder, measured, wait_for
from .helpers import NAME, status
from .inprocess import Operator
from .test_migrations import V1, change_image, deploy

pytestmark = [pytest.mark.cluster, pytest.mark.servers]

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
ROLLOUT = {"progressDeadlineSeconds": 600, "autoRollback": True, "revisionHistoryLimit": 10}


class Scraper:
    def __init__(self, port: int, namespace: str) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.namespace = namespace
        self.size = 0

    def scrape(self) -> Series:
        """Every sample of this test's namespace (or with no namespace label)."""
        with urllib.request.urlopen(self.url, timeout=5) as resp:
            text = resp.read().decode()
        self.size = len(text)
        out: Series = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.labels.get("namespace", self.namespace) == self.namespace:
                    out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    def value(self, metric: str, **labels: str) -> float:
        """The sum of the series `metric` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.scrape().items() if n == metric and want <= ls)

    def has(self, metric: str, **labels: str) -> bool:
        want = set(labels.items())
        return any(n == metric and want <= ls for n, ls in self.scrape())


@pytest.fixture
def metrics(crd: None, kube: Kube, namespace: str, recorder: Recorder,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Scraper]:
    """The real operator with its metrics port on (AUTHZ_METRICS_PORT, read at start-up)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    monkeypatch.setenv("AUTHZ_METRICS_PORT", str(port))
    op = Operator(namespace)
    op.start()
    scraper = Scraper(port, namespace)

    def up() -> bool:
        try:
            scraper.scrape()
        except (urllib.error.URLError, ConnectionError):
            return False
        return True
    wait_for("the metrics endpoint", up)
    yield scraper
    op.stop()


def until(what: str, probe: Callable[[], bool], timeout: float = 120) -> None:
    wait_for(what, probe, timeout=timeout)


def test_metrics_follow_migrations_rollbacks_and_deletion(
        metrics: Scraper, kube: Kube, devenv: DevEnv, namespace: str, database: str) -> None:
    m = metrics
    res = {"namespace": namespace, "name": NAME}
    up_ok = {**res, "direction": "up", "outcome": "succeeded"}
    up_failed = {**res, "direction": "up", "outcome": "failed"}

    def job_events() -> float:
        """Job events handled: each one starts a reconcile or joins one already scheduled
        (wakeups.py: the burst's reconcile carries the handler of its first event)."""
        return (m.value("authz_operator_reconciles_total", **res, handler="child-jobs")
                + m.value("authz_operator_coalesced_total", **res, handler="child-jobs"))

    def condition(type_: str, status_: str) -> Callable[[], bool]:
        return lambda: (m.value("authz_operator_condition", **res, type=type_,
                                status=status_) == 1)

    # 1. create: one migration up succeeded, Ready=True (and the other statuses 0)
    assert not m.has("authz_operator_migrations_total", **res)
    deploy(kube, devenv, namespace, database, rollout=ROLLOUT)
    until("a succeeded migration counted", lambda: m.value(
        "authz_operator_migrations_total", **up_ok) == 1)
    until("Ready=True on the gauge", condition("Ready", "True"))
    assert m.value("authz_operator_condition", **res, type="Ready", status="False") == 0
    assert m.value("authz_operator_condition", **res, type="Ready", status="Unknown") == 0
    assert m.value("authz_operator_migration_duration_seconds_count", **up_ok) == 1
    first_job = m.value("authz_operator_migration_duration_seconds_sum", **up_ok)
    reconciles = m.value("authz_operator_reconcile_duration_seconds_count", **res)
    assert reconciles >= 2   # at least the create and the one that saw the Job finish
    assert m.value("authz_operator_reconciles_total", **res, handler="reconcile",
                   result="ok") >= 1
    assert job_events() >= 1
    assert m.value("authz_operator_reconciles_total", **res, result="error") == 0

    # 2. a bad migration: counted failed once, however many reconciles see the failed Job
    change_image(kube, devenv, namespace, V1.replace("1.4.0", "1.4.1-badmigration"),
                 rollout=ROLLOUT)
    until("phase Failed", lambda: status(kube, namespace).get("phase") == "Failed")
    until("a failed migration counted", lambda: m.value(
        "authz_operator_migrations_total", **up_failed) == 1)
    until("Ready=False on the gauge", condition("Ready", "False"))
    assert m.value("authz_operator_condition", **res, type="Ready", status="True") == 0
    assert m.value("authz_operator_condition", **res, type="Migrated", status="False") == 1
    assert m.value("authz_operator_migration_duration_seconds_count", **up_failed) == 1
    after_failure = m.value("authz_operator_reconcile_duration_seconds_count", **res)
    assert after_failure > reconciles
    # wake more reconciles with events of the failed Job: nothing is counted again
    job = f"{NAME}-migrate-2"
    for i in range(3):
        seen_events = job_events()
        seen_reconciles = m.value("authz_operator_reconcile_duration_seconds_count", **res)
        kube._call("PATCH", f"/apis/batch/v1/namespaces/{namespace}/jobs/{job}",
                   body={"metadata": {"annotations": {"example.com/poke": str(i)}}},
                   content_type="application/merge-patch+json")

        def handled(seen: float = seen_events) -> bool:
            return job_events() > seen

        def reconciled(seen: float = seen_reconciles) -> bool:
            return m.value("authz_operator_reconcile_duration_seconds_count", **res) > seen
        until(f"the Job's event handled after poke {i}", handled)
        until(f"a reconcile after poke {i}", reconciled)
    assert m.value("authz_operator_migrations_total", **up_failed) == 1
    assert m.value("authz_operator_migrations_total", **up_ok) == 1
    assert m.value("authz_operator_migration_duration_seconds_sum", **up_ok) == first_job

    # 3. a crashing rollout (its migration succeeds) is rolled back: one rollback succeeded
    assert m.value("authz_operator_rollbacks_total", **res) == 0
    change_image(kube, devenv, namespace, V1.replace("1.4.0", "1.4.0-crash"), rollout=ROLLOUT)
    until("a rollback counted", lambda: m.value(
        "authz_operator_rollbacks_total", **res, outcome="succeeded") == 1)
    until("Degraded=True on the gauge", condition("Degraded", "True"))
    assert m.value("authz_operator_migrations_total", **up_ok) == 2
    assert m.value("authz_operator_rollbacks_total", **res, outcome="failed") == 0
    assert m.value("authz_operator_reconciles_total", **res, result="error") == 0

    count = m.value("authz_operator_reconcile_duration_seconds_count", **res)
    total = m.value("authz_operator_reconcile_duration_seconds_sum", **res)
    measured("metrics endpoint size during the journey", m.size, "bytes")
    measured("reconciles in the journey", count, "reconciles")
    measured("mean reconcile duration", 1000 * total / count, "ms")
    measured("mean migration Job duration (up, succeeded)", m.value(
        "authz_operator_migration_duration_seconds_sum", **up_ok) / 2, "s")

    # 4. deleted: the resource's series go (counters included: bounded cardinality)
    kube.delete("AuthorizationService", namespace, NAME)
    until("the resource's series removed", lambda: not m.has("authz_operator_condition", **res)
          and not m.has("authz_operator_reconciles_total", **res), timeout=60)

