"""Pacing a rollout's progress in status: which writes only count progress (pure), and when
one waits (a fake clock, a recorded `later`)."""

from __future__ import annotations

from typing import Any

import pytest

from authz_operator.pacing import StatusPace, progress_only


def status(ready: int, phase: str = "RollingOut", reason: str = "RollingOut",
           revision: int = 1) -> dict[str, Any]:
    message = f"{ready} of 2 replicas available"
    return {
        "phase": phase, "revision": revision, "replicas": 2, "readyReplicas": ready,
        "ready": f"{ready}/2", "observedGeneration": 1,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": reason, "message": message,
             "lastTransitionTime": "2026-01-02T00:00:00Z", "observedGeneration": 1},
            {"type": "Progressing", "status": "True", "reason": reason, "message": message,
             "lastTransitionTime": "2026-01-02T00:00:00Z", "observedGeneration": 1}],
    }


def test_counts_and_the_messages_that_say_them_are_progress() -> None:
    assert progress_only(status(0), status(1))
    assert progress_only(status(1), status(1))
    assert progress_only({"phase": "Ready"}, {"phase": "Ready", "ready": "1/2"})


def test_the_conditions_that_follow_the_deployments_own_are_progress() -> None:
    old = status(0)
    old["conditions"] = [*old["conditions"], {"type": "Available", "status": "False",
                                              "reason": "DeploymentMissing"}]
    new = status(0)
    new["conditions"] = [*new["conditions"], {"type": "Available", "status": "Unknown",
                                              "reason": "Unknown"}]
    new["conditions"][1] = {**new["conditions"][1], "reason": "RolloutStarted"}  # Progressing
    assert progress_only(old, new)


@pytest.mark.parametrize("new", [
    status(1, phase="Ready"),                     # a phase
    status(1, reason="RolloutComplete"),          # the Ready condition's reason
    {**status(1), "observedGeneration": 2},       # a new generation seen
    status(1, revision=2),                        # what the lifecycle remembers
    {**status(1), "conditions": status(1)["conditions"][:1]},     # a condition less
    {**status(1), "conditions": [{**c, "status": "True"} for c in status(1)["conditions"]]},
    {**status(1), "migration": {"phase": "Running"}},
])
def test_every_transition_is_not_progress(new: dict[str, Any]) -> None:
    assert not progress_only(status(0), new)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def paced(scheduled: bool = True) -> tuple[StatusPace, Clock, list[tuple[str, str, float]]]:
    clock, calls = Clock(), []

    def later(namespace: str, name: str, delay: float) -> bool:
        calls.append((namespace, name, delay))
        return scheduled

    pace = StatusPace(interval=2.0, clock=clock)
    pace.later = later
    return pace, clock, calls


def test_progress_waits_for_the_interval_and_a_reconcile_is_scheduled_for_its_end() -> None:
    pace, clock, calls = paced()
    assert not pace.defer("ns", "a", status(0), status(1), [])   # nothing written yet
    pace.wrote("ns", "a")
    clock.now += 0.5
    assert pace.defer("ns", "a", status(0), status(1), [])
    assert calls == [("ns", "a", 1.5)]
    clock.now += 1.5
    assert not pace.defer("ns", "a", status(0), status(1), [])   # the interval is over
    assert not pace.defer("ns", "b", status(0), status(1), [])   # another resource


def test_transitions_events_and_an_unscheduled_reconcile_are_written_at_once() -> None:
    pace, clock, calls = paced()
    pace.wrote("ns", "a")
    assert not pace.defer("ns", "a", status(1), status(2, phase="Ready"), [])
    assert not pace.defer("ns", "a", status(0), status(1), ["an event"])
    assert calls == []
    unscheduled, _, tried = paced(scheduled=False)   # the wakeups stop: never lose a write
    unscheduled.wrote("ns", "a")
    assert not unscheduled.defer("ns", "a", status(0), status(1), [])
    assert len(tried) == 1
    unbound = StatusPace(interval=2.0, clock=clock)   # no wakeups yet
    unbound.wrote("ns", "a")
    assert not unbound.defer("ns", "a", status(0), status(1), [])


def test_a_forgotten_resource_starts_afresh() -> None:
    pace, _, _ = paced()
    pace.wrote("ns", "a")
    pace.forget("ns", "a")
    assert not pace.defer("ns", "a", status(0), status(1), [])
