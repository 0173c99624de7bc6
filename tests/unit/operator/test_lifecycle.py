"""The state machine, as tables of situations."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest

from authz_operator import lifecycle as lc
from authz_operator import resources as r
from authz_operator.diff import Change
from authz_operator.spec import SpecError, parse_spec
from authz_operator.status import Phase

from .samples import OWNER, spec_body

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(minutes=5)
SECRETS = {"authorization-secrets": lc.SecretView("41", frozenset({"database-url",
                                                                    "jwt-secret"}))}


def live(obj: dict[str, Any] | None, **status: Any) -> dict[str, Any] | None:
    """What the API server would return for an applied object."""
    if obj is None:
        return None
    out = copy.deepcopy(obj)
    out["metadata"].update(uid=f"uid-{obj['kind']}", resourceVersion="7", generation=2)
    if obj["kind"] == "Deployment":
        out["spec"].setdefault("replicas", 2)
        out["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
        out["status"] = status or complete(out["spec"]["replicas"])
    return out


def complete(n: int) -> dict[str, Any]:
    return {"observedGeneration": 2, "replicas": n, "updatedReplicas": n, "readyReplicas": n,
            "availableReplicas": n, "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "ok"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}


def children_for(body: dict[str, Any], secrets: Any = SECRETS,
                 **overrides: Any) -> dict[str, Any]:
    spec = parse_spec(body)
    versions = {n: v.resource_version for n, v in secrets.items() if v is not None}
    desired = r.desired_children(spec, OWNER, r.target_from_spec(spec, versions))
    out = {kind: live(obj) for kind, obj in desired.items()}
    out.update(overrides)
    return out


IMAGE = "registry.example/authorization-service:1.4.0"
MIGRATED = {"database": {"schemaVersion": "0003", "image": IMAGE}}


def observed(body: dict[str, Any] | None = None, *, children: dict[str, Any] | None = None,
             status: dict[str, Any] | None = None, secrets: Any = SECRETS,
             generation: int = 1, now: datetime.datetime = NOW,
             jobs: dict[str, Any] | None = None, results: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None,
             pods: list[Any] | None = None) -> lc.Observed:
    body = body if body is not None else spec_body()
    try:
        spec: Any = parse_spec(body)
    except SpecError as exc:
        spec = exc
    return lc.Observed(
        owner=OWNER, generation=generation, spec=spec,
        status=MIGRATED if status is None else status, annotations=annotations or {},
        children=children or {}, secrets=secrets, jobs=jobs or {}, job_results=results or {},
        now=now, pods=pods or [])


def settle(obs: lc.Observed) -> lc.Observed:
    """The next observation, after the plan's status was written."""
    plan = lc.decide(obs)
    return lc.Observed(**{**obs.__dict__, "status": plan.status, "now": LATER})


def test_fresh_resource_creates_every_child_and_rolls_out() -> None:
    plan = lc.decide(observed())
    assert [(a.kind, a.change) for a in plan.applies] == [
        (k, Change.CREATE) for k in r.OWNED_KINDS]
    assert plan.status["phase"] == Phase.ROLLING_OUT
    assert plan.status["observedGeneration"] == 1
    assert plan.status["ready"] == "0/2"
    assert [e.reason for e in plan.events] == ["Created", "RolloutStarted"]
    ready = plan.status["conditions"][0]
    assert ready == {"type": "Ready", "status": "False", "reason": "RollingOut",
                     "message": "rolling out registry.example/authorization-service:1.4.0",
                     "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 1}


def test_complete_rollout_is_ready_records_a_revision_then_writes_nothing() -> None:
    obs = observed(children=children_for(spec_body()))
    plan = lc.decide(obs)
    assert plan.applies == []
    assert plan.deletes == []
    assert plan.status["phase"] == Phase.READY
    assert plan.status["ready"] == "2/2"
    assert plan.status["revision"] == 1
    assert plan.status["image"] == "registry.example/authorization-service:1.4.0"
    assert plan.status["history"][0]["outcome"] == "Deployed"
    assert [e.reason for e in plan.events] == ["RolloutComplete"]
    again = lc.decide(settle(obs))
    assert again.writes == 0
    assert again.status == plan.status       # lastTransitionTime did not move


def test_missing_secret_key_holds_the_deployment_and_names_the_key() -> None:
    secrets = {"authorization-secrets": lc.SecretView("41", frozenset({"database-url"}))}
    plan = lc.decide(observed(secrets=secrets))
    assert "Deployment" not in [a.kind for a in plan.applies]
    assert plan.status["phase"] == Phase.PENDING
    [event] = [e for e in plan.events if e.reason == "SecretMissing"]
    assert event.type == "Warning"
    assert event.message == ("missing key 'jwt-secret' in Secret 'authorization-secrets' "
                             "(for JWT_SECRET)")


def test_a_missing_previous_jwt_secret_is_named_too() -> None:
    body = spec_body(jwt={"previousSecretRef": {"name": "jwt-previous", "key": "jwt-secret"}})
    plan = lc.decide(observed(body, secrets={**SECRETS, "jwt-previous": None}))
    assert "Deployment" not in [a.kind for a in plan.applies]
    [event] = [e for e in plan.events if e.reason == "SecretMissing"]
    assert event.message == "missing Secret 'jwt-previous' (for JWT_SECRET_PREVIOUS)"


def test_missing_secret_with_a_running_deployment_keeps_it_and_is_degraded() -> None:
    body = spec_body()
    children = children_for(body)
    changed = spec_body(logLevel="debug")
    plan = lc.decide(observed(changed, children=children, secrets={"authorization-secrets": None}))
    kinds = [a.kind for a in plan.applies]
    assert "Deployment" not in kinds
    assert "ConfigMap" in kinds
    assert plan.status["phase"] == Phase.DEGRADED
    assert "Secret 'authorization-secrets' (for DATABASE_URL)" in (
        plan.status["conditions"][0]["message"])


def test_paused_writes_no_child() -> None:
    plan = lc.decide(observed(spec_body(paused=True, logLevel="debug"),
                              children=children_for(spec_body())))
    assert plan.applies == []
    assert plan.deletes == []
    assert plan.status["phase"] == Phase.PAUSED
    assert [e.reason for e in plan.events] == ["Paused"]


def test_resume_after_pause_emits_resumed() -> None:
    obs = observed(spec_body(paused=True), children=children_for(spec_body()))
    resumed = lc.Observed(**{**settle(obs).__dict__, "spec": parse_spec(spec_body())})
    assert "Resumed" in [e.reason for e in lc.decide(resumed).events]


@pytest.mark.parametrize(
    ("changes", "deleted"),
    [
        ({"ingress": {"enabled": False}}, [("Ingress", "authorization-service")]),
        ({"autoscaling": {"enabled": False}, "replicas": 1},
         [("HorizontalPodAutoscaler", "authorization-service"),
          ("PodDisruptionBudget", "authorization-service")]),
    ],
)
def test_unwanted_children_are_deleted(changes: dict[str, Any],
                                       deleted: list[tuple[str, str]]) -> None:
    plan = lc.decide(observed(spec_body(**changes), children=children_for(spec_body())))
    assert plan.deletes == deleted
    assert "Deleted" in [e.reason for e in plan.events]


def test_drift_is_corrected() -> None:
    children = children_for(spec_body())
    children["Service"]["spec"]["ports"][0]["port"] = 9999
    children["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"
    plan = lc.decide(observed(children=children))
    assert [(a.kind, a.change) for a in plan.applies] == [
        ("Service", Change.DRIFT), ("Deployment", Change.DRIFT)]
    assert [e.reason for e in plan.events] == ["DriftCorrected"]


def test_deleted_child_of_a_reconciled_generation_counts_as_drift() -> None:
    obs = observed(children=children_for(spec_body()))
    after = settle(obs)
    children = dict(after.children)
    children["Service"] = None
    plan = lc.decide(lc.Observed(**{**after.__dict__, "children": children}))
    assert [(a.kind, a.change) for a in plan.applies] == [("Service", Change.CREATE)]
    assert [e.reason for e in plan.events] == ["DriftCorrected"]


def test_spec_change_updates_children_and_is_not_ready_for_the_new_generation() -> None:
    obs = settle(observed(children=children_for(spec_body())))
    changed = lc.Observed(**{**obs.__dict__, "spec": parse_spec(spec_body(logLevel="debug")),
                             "generation": 2})
    plan = lc.decide(changed)
    assert [(a.kind, a.change) for a in plan.applies] == [
        ("ConfigMap", Change.UPDATE), ("Deployment", Change.UPDATE)]
    assert plan.status["phase"] == Phase.ROLLING_OUT
    assert plan.status["observedGeneration"] == 2
    ready = plan.status["conditions"][0]
    assert (ready["status"], ready["observedGeneration"]) == ("False", 2)
    assert ready["lastTransitionTime"] == "2026-01-02T03:09:05Z"
    assert [e.reason for e in plan.events] == ["Updated", "RolloutStarted"]


@pytest.mark.parametrize(
    ("dep_status", "phase", "reason"),
    [
        ({"observedGeneration": 1}, Phase.ROLLING_OUT, "RollingOut"),
        ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1}, Phase.ROLLING_OUT,
         "RollingOut"),
        ({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
          "availableReplicas": 2, "conditions": [{
              "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
              "message": "ReplicaSet x has timed out progressing."}]},
         Phase.DEGRADED, "RolloutFailed"),
    ],
)
def test_rollout_states(dep_status: dict[str, Any], phase: Phase, reason: str) -> None:
    body = spec_body()
    children = children_for(body)
    children["Deployment"]["status"] = dep_status
    plan = lc.decide(observed(children=children))
    assert plan.status["phase"] == phase
    assert plan.status["conditions"][0]["reason"] == reason


@pytest.mark.parametrize(
    ("available", "replicas", "phase", "events"),
    [
        (0, 2, Phase.DEGRADED, ["Unavailable"]),   # nothing serves any more
        (1, 3, Phase.READY, []),                   # the HPA scales up: not a rollout
        (1, 2, Phase.READY, []),                   # a pod is being replaced
    ],
)
def test_after_a_complete_rollout_only_losing_every_pod_is_degraded(
        available: int, replicas: int, phase: Phase, events: list[str]) -> None:
    obs = settle(observed(children=children_for(spec_body())))
    children = dict(obs.children)
    dep = copy.deepcopy(children["Deployment"])
    assert dep is not None
    dep["spec"]["replicas"] = replicas
    dep["status"].update(availableReplicas=available, replicas=replicas,
                         updatedReplicas=replicas)
    children["Deployment"] = dep
    plan = lc.decide(lc.Observed(**{**obs.__dict__, "children": children}))
    assert plan.status["phase"] == phase
    assert [e.reason for e in plan.events] == events


def test_child_owned_by_someone_else_is_left_alone() -> None:
    children = children_for(spec_body())
    children["Service"]["metadata"]["ownerReferences"] = []
    children["Service"]["spec"]["ports"][0]["port"] = 1
    plan = lc.decide(observed(children=children))
    assert "Service" not in [a.kind for a in plan.applies]
    assert plan.status["phase"] == Phase.DEGRADED
    assert plan.status["conditions"][0]["reason"] == "ChildConflict"


def test_invalid_spec_fails_permanently() -> None:
    plan = lc.decide(observed(spec_body(kafka={"brokers": []})))
    assert plan.applies == []
    assert plan.status["phase"] == Phase.FAILED
    assert plan.permanent_error is not None
    assert plan.permanent_error.startswith("spec.kafka.brokers")
    assert [e.reason for e in plan.events] == ["InvalidSpec"]


def test_history_is_bounded() -> None:
    status: dict[str, Any] = {**MIGRATED,
                              "history": [{"revision": i, "image": "x:1"} for i in range(1, 4)]}
    body = spec_body(rollout={"revisionHistoryLimit": 2})
    plan = lc.decide(observed(body, children=children_for(body), status=status))
    assert [h["revision"] for h in plan.status["history"]] == [3, 4]
    assert plan.status["revision"] == 4
