"""The plugin's pure parts: the status tree, the history table, choosing a rollback target."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from authz_operator import plugin
from authz_operator.plugin import Child, PluginError

NOW = datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=datetime.UTC)


def body(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "rwadurian.io/v1alpha1", "kind": "AuthorizationService",
        "metadata": {"name": "authz", "namespace": "team-a", "generation": 3},
        "spec": {"image": "r/authorization-service:1.5.0"},
        "status": status,
    }


HISTORY = [
    {"revision": 1, "image": "r/authorization-service:1.4.0", "schemaVersion": "0003",
     "configHash": "aaaaaaaaaaaaaaaa", "outcome": "Deployed", "deployedAt": "2026-11-26T10:00:00Z"},
    {"revision": 2, "image": "r/authorization-service:1.5.0", "schemaVersion": "0004",
     "configHash": "bbbbbbbbbbbbbbbb", "outcome": "MigrationFailed",
     "deployedAt": "2026-11-26T11:00:00Z", "message": "Job failed: relation exists"},
    {"revision": 3, "image": "r/authorization-service:1.4.1", "schemaVersion": "0003",
     "configHash": "cccccccccccccccc", "outcome": "Deployed", "deployedAt": "2026-11-26T11:30:00Z"},
]


def test_status_tree() -> None:
    b = body(phase="Degraded", ready="1/2", revision=3, schemaVersion="0003",
             image="r/authorization-service:1.4.1", observedGeneration=3, conditions=[
                 {"type": "Ready", "status": "False", "reason": "RolloutFailed",
                  "message": "progress deadline exceeded", "lastTransitionTime":
                  "2026-11-26T11:55:00Z"},
                 {"type": "Degraded", "status": "True", "reason": "RolloutFailed",
                  "message": "1 of 2 available", "lastTransitionTime": "2026-11-26T10:00:00Z"},
             ])
    children = [
        Child("ConfigMap", "authz-config", {"data": {"a": "1", "b": "2"}}),
        Child("Deployment", "authz", {
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"image": "r/authorization-service:1.4.1"}]}}},
            "status": {"readyReplicas": 1, "updatedReplicas": 2}}),
        Child("Service", "authz", None),
        Child("Job", "authz-migrate-2", {"status": {"conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"}]}}),
    ]
    events = [
        {"type": "Warning", "reason": "MigrationFailed", "message": "relation exists",
         "involvedObject": {"kind": "AuthorizationService"},
         "lastTimestamp": "2026-11-26T11:00:00Z"},
        {"type": "Normal", "reason": "RolloutStarted", "message": "rolling out 1.4.1",
         "involvedObject": {"kind": "AuthorizationService"},
         "lastTimestamp": "2026-11-26T11:58:30Z"},
    ]
    assert plugin.format_status(b, children, events, NOW) == "\n".join([
        "AuthorizationService team-a/authz",
        "├─ Phase: Degraded   Ready: 1/2   Revision: 3   Schema: 0003",
        "├─ Image: r/authorization-service:1.4.1 (spec: r/authorization-service:1.5.0)",
        "├─ Conditions",
        "│  ├─ [x] Ready=False RolloutFailed: progress deadline exceeded (5m ago)",
        "│  └─ [x] Degraded=True RolloutFailed: 1 of 2 available (2h ago)",
        "├─ Children",
        "│  ├─ [+] ConfigMap authz-config: 2 keys",
        "│  ├─ [x] Deployment authz: 1/2 ready, 2 updated, r/authorization-service:1.4.1",
        "│  ├─ [x] Service authz: missing",
        "│  └─ [x] Job authz-migrate-2: failed: BackoffLimitExceeded Job has reached the "
        "specified backoff limit",
        "└─ Events (last 10)",
        "   ├─   1h Warning MigrationFailed (AuthorizationService): relation exists",
        "   └─   1m Normal  RolloutStarted (AuthorizationService): rolling out 1.4.1",
    ])


def test_status_of_a_new_paused_resource() -> None:
    b = body()
    b["spec"]["paused"] = True
    out = plugin.format_status(b, [], [], NOW)
    assert out.splitlines() == [
        "AuthorizationService team-a/authz",
        "├─ Phase: -   Ready: -   Revision: -   Schema: -",
        "├─ Image: - (spec: r/authorization-service:1.5.0)",
        "├─ Paused: spec.paused is true, children are left as they are",
        "├─ Conditions",
        "│  └─ none reported yet",
        "├─ Children",
        "│  └─ none",
        "└─ Events (last 10)",
        "   └─ none",
    ]


def test_only_the_last_ten_events_oldest_first() -> None:
    events = [{"type": "Normal", "reason": f"R{i:02d}", "message": "",
               "involvedObject": {"kind": "Job"},
               "lastTimestamp": f"2026-11-26T11:{i:02d}:00Z"} for i in range(15)]
    lines = plugin.format_status(body(), [], list(reversed(events)), NOW).splitlines()
    shown = [line.split()[3] for line in lines[-10:]]
    assert shown == [f"R{i:02d}" for i in range(5, 15)]


@pytest.mark.parametrize(("kind", "obj", "healthy", "text"), [
    ("Deployment", {"spec": {"replicas": 3, "template": {"spec": {"containers": [
        {"image": "i:1"}]}}}, "status": {"readyReplicas": 3, "updatedReplicas": 3}},
     True, "3/3 ready, 3 updated, i:1"),
    ("Job", {"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
     True, "complete"),
    ("Job", {"status": {"active": 1}}, True, "running (1 active, 0 failed)"),
    ("HorizontalPodAutoscaler", {"spec": {"minReplicas": 2, "maxReplicas": 10},
                                 "status": {"currentReplicas": 2}},
     True, "2 replicas (min 2, max 10)"),
    ("Service", {"spec": {"type": "ClusterIP", "clusterIP": "10.0.0.5",
                          "ports": [{"port": 3002}]}}, True, "ClusterIP 10.0.0.5:3002"),
    ("PodDisruptionBudget", {"status": {"disruptionsAllowed": 1}}, True,
     "1 disruption(s) allowed"),
    ("Ingress", {"spec": {"rules": [{"host": "api.rwadurian.com"}]}}, True, "api.rwadurian.com"),
    ("ServiceAccount", {}, True, "present"),
    ("Deployment", None, False, "missing"),
])
def test_child_health(kind: str, obj: dict[str, Any] | None, healthy: bool, text: str) -> None:
    assert plugin.child_health(kind, obj) == (healthy, text)


def test_history_table_marks_the_serving_revision() -> None:
    out = plugin.format_history(body(revision=3, history=HISTORY))
    assert out.splitlines() == [
        "   REVISION  IMAGE                          SCHEMA  CONFIG    OUTCOME          "
        "DEPLOYED              MESSAGE",
        "   1         r/authorization-service:1.4.0  0003    aaaaaaaa  Deployed         "
        "2026-11-26T10:00:00Z",
        "   2         r/authorization-service:1.5.0  0004    bbbbbbbb  MigrationFailed  "
        "2026-11-26T11:00:00Z  Job failed: relation exists",
        "*  3         r/authorization-service:1.4.1  0003    cccccccc  Deployed         "
        "2026-11-26T11:30:00Z",
    ]


def test_history_when_empty() -> None:
    assert plugin.format_history(body()) == "authz: no revisions recorded yet"


def test_rollback_defaults_to_newest_deployed_before_serving() -> None:
    assert plugin.rollback_revision(body(revision=3, history=HISTORY), None) == 1


@pytest.mark.parametrize(("to", "message"), [
    (9, "authz: revision 9 is not recorded (recorded: 1, 2, 3)"),
    (3, "authz: revision 3 is the one serving now"),
    (2, "authz: revision 2 never deployed successfully (outcome MigrationFailed)"),
])
def test_rollback_refuses_what_cannot_be_rolled_back_to(to: int, message: str) -> None:
    with pytest.raises(PluginError) as err:
        plugin.rollback_revision(body(revision=3, history=HISTORY), to)
    assert str(err.value) == message


def test_rollback_explicit_revision() -> None:
    assert plugin.rollback_revision(body(revision=3, history=HISTORY), 1) == 1


def test_rollback_with_nothing_earlier() -> None:
    with pytest.raises(PluginError, match="no earlier deployed revision"):
        plugin.rollback_revision(body(revision=1, history=HISTORY[:1]), None)


def test_patches() -> None:
    assert plugin.annotation_patch("rwadurian.io/retry", "x") == {
        "metadata": {"annotations": {"rwadurian.io/retry": "x"}}}
    assert plugin.paused_patch(True) == {"spec": {"paused": True}}


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        plugin.main(["rollback"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("kubectl-authz: error:")
