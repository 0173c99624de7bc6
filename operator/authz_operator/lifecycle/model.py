"""What the lifecycle is given (`Observed`) and what it returns (`Plan`)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from authz_operator import resources as r
from authz_operator.diff import Change
from authz_operator.spec import Spec, SpecError
from authz_operator.status import Event

Obj = dict[str, Any]


@dataclass(frozen=True)
class SecretView:
    """What the operator may know about a Secret: its version and key names, never values."""

    resource_version: str
    keys: frozenset[str]


@dataclass(frozen=True)
class Observed:
    owner: r.Owner
    generation: int
    spec: Spec | SpecError
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    children: Mapping[str, Obj | None]          # by kind, live objects (None: absent)
    secrets: Mapping[str, SecretView | None]    # by name (None: absent)
    jobs: Mapping[str, Obj]                     # migration Jobs of this resource, by name
    job_results: Mapping[str, str]              # Job name -> termination message of its pod
    now: datetime.datetime
    pods: Sequence[Obj] = ()                    # the Deployment's pods, while it rolls out
    replica_sets: Sequence[Obj] = ()            # this resource's (by labels)


@dataclass(frozen=True)
class Apply:
    obj: Obj
    change: Change
    handover_replicas: bool = False   # hand spec.replicas to a second manager (an HPA's)

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


@dataclass
class Plan:
    applies: list[Apply] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)    # (kind, name)
    orphans: list[tuple[str, str]] = field(default_factory=list)    # deleted, dependents kept
    status: Obj = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    status_changed: bool = False
    permanent_error: str | None = None
    again: bool = False          # state moved on: reconcile again with a fresh observation

    @property
    def writes(self) -> int:
        return (len(self.applies) + len(self.deletes) + len(self.orphans) + len(self.events)
                + sum(1 for a in self.applies if a.handover_replicas)
                + (1 if self.status_changed else 0))
