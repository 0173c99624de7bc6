"""What a Job's or a Deployment's status says, in one place. Pure.

The lifecycle, the plugin's health column and the metrics all read Jobs and Deployments
through these functions, so they agree on when a Job has ended and how it ended.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class JobState(enum.StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


# The Job conditions that end it, when True (SuccessCriteriaMet and FailureTarget come first
# on newer clusters, Complete and Failed once the pods are gone).
_ENDS: dict[str, JobState] = {
    "Complete": JobState.SUCCEEDED, "SuccessCriteriaMet": JobState.SUCCEEDED,
    "Failed": JobState.FAILED, "FailureTarget": JobState.FAILED,
}


def job_endings(job: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The Job's True conditions that end it, in the order the Job lists them."""
    return [c for c in (job.get("status") or {}).get("conditions") or []
            if c.get("status") == "True" and c.get("type") in _ENDS]


def job_state(job: Mapping[str, Any]) -> JobState:
    """Running, Succeeded or Failed, from the first condition that ended the Job."""
    endings = job_endings(job)
    return _ENDS[str(endings[0]["type"])] if endings else JobState.RUNNING


@dataclass(frozen=True)
class Replicas:
    """A Deployment's replica counts: wanted by its spec, and reported by its status."""

    wanted: int
    total: int
    updated: int
    ready: int
    available: int

    @classmethod
    def of(cls, dep: Mapping[str, Any]) -> Replicas:
        st = dep.get("status") or {}
        return cls(wanted=int((dep.get("spec") or {}).get("replicas", 1)),
                   total=int(st.get("replicas", 0)), updated=int(st.get("updatedReplicas", 0)),
                   ready=int(st.get("readyReplicas", 0)),
                   available=int(st.get("availableReplicas", 0)))


@dataclass(frozen=True)
class RolloutState:
    complete: bool
    failed: bool
    message: str


def rollout_state(dep: Mapping[str, Any], min_replicas: int = 0) -> RolloutState:
    """`kubectl rollout status` semantics for a live Deployment, also waiting for
    `min_replicas` (an HPA's minimum: a fresh Deployment starts with one pod)."""
    meta, st = dep.get("metadata", {}), dep.get("status") or {}
    n = Replicas.of(dep)
    want = max(n.wanted, min_replicas)
    if int(st.get("observedGeneration", 0)) < int(meta.get("generation", 1)):
        return RolloutState(False, False, "waiting for the Deployment controller")
    for c in st.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return RolloutState(False, True, str(c.get("message") or "progress deadline"))
    if n.updated < want:
        return RolloutState(False, False, f"{n.updated} of {want} replicas updated")
    if n.total > n.updated:
        return RolloutState(False, False, f"{n.total - n.updated} old replicas terminating")
    if n.available < n.updated:
        return RolloutState(False, False,
                            f"{n.available} of {n.updated} updated replicas available")
    return RolloutState(True, False, f"{n.available} of {want} replicas available")


def serving(dep: Mapping[str, Any]) -> bool:
    """Some pods of the current template are available and no old-template pods are left."""
    n = Replicas.of(dep)
    return n.available > 0 and n.total == n.updated
