"""One reading of Job and Deployment status for the lifecycle, the plugin and the metrics."""

from __future__ import annotations

from typing import Any

import pytest

from authz_operator import metrics, plugin
from authz_operator.workload import JobState, Replicas, job_state, rollout_state, serving


def job(*conditions: tuple[str, str]) -> dict[str, Any]:
    return {"status": {"startTime": "2026-01-02T00:00:00Z", "conditions": [
        {"type": t, "status": s, "reason": "R", "message": "m",
         "lastTransitionTime": "2026-01-02T00:00:10Z"} for t, s in conditions]}}


@pytest.mark.parametrize(("conditions", "state"), [
    ((), JobState.RUNNING),
    ((("Complete", "False"),), JobState.RUNNING),
    ((("SuccessCriteriaMet", "True"),), JobState.SUCCEEDED),
    ((("Complete", "True"),), JobState.SUCCEEDED),
    ((("FailureTarget", "True"),), JobState.FAILED),
    ((("FailureTarget", "True"), ("Failed", "True")), JobState.FAILED),
])
def test_job_state_and_everyone_agrees(conditions: tuple[tuple[str, str], ...],
                                       state: JobState) -> None:
    obj = job(*conditions)
    assert job_state(obj) is state
    healthy, text = plugin.child_health("Job", obj)
    assert healthy is (state is not JobState.FAILED)
    assert text.startswith({JobState.RUNNING: "running", JobState.SUCCEEDED: "complete",
                            JobState.FAILED: "failed: R m"}[state])
    assert (metrics.job_seconds(obj) is None) is (state is JobState.RUNNING)


def test_replicas_and_serving() -> None:
    dep = {"spec": {"replicas": 3}, "metadata": {"generation": 2}, "status": {
        "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 2,
        "availableReplicas": 2}}
    assert Replicas.of(dep) == Replicas(wanted=3, total=3, updated=3, ready=2, available=2)
    assert serving(dep)
    assert rollout_state(dep).message == "2 of 3 updated replicas available"
    assert rollout_state(dep, min_replicas=4).message == "3 of 4 replicas updated"
