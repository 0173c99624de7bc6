"""The local API server's audit log, read (the policy: hack/devenv/cluster.py audit_policy).

Which requests one user sent in a time window, by verb and resource: how the scale
benchmark attributes API traffic to the operator's own identity instead of guessing it from
totals. Pure, but for `read_lines`.
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
# A request is logged when its response completes; a watch (long-running) also when its
# response starts. RequestReceived is left out by the policy; Panic ends a request too.
_STAGES = frozenset({"ResponseStarted", "ResponseComplete", "Panic"})


@dataclass(frozen=True)
class Request:
    audit_id: str
    user: str
    verb: str          # get, list, watch, create, patch, update, delete, ...
    resource: str      # "deployments", "authorizationservices/status"; a path if no resource
    namespace: str
    name: str
    code: int          # the response's status code (0 while a watch is still open)
    received: float    # when the API server received it, seconds since the epoch

    @property
    def write(self) -> bool:
        return self.verb in WRITE_VERBS


def timestamp(value: str) -> float:
    """An audit timestamp (RFC 3339 with microseconds, UTC) as seconds since the epoch."""
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def parse(line: str) -> Request | None:
    """One line of the log as a Request; None for anything else (a torn last line, a stage
    that does not end a request)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("stage") not in _STAGES:
        return None
    ref = event.get("objectRef") or {}
    resource = ref.get("resource") or str(event.get("requestURI", "")).split("?", 1)[0]
    if ref.get("subresource"):
        resource = f"{resource}/{ref['subresource']}"
    return Request(
        audit_id=str(event.get("auditID", "")),
        user=str((event.get("user") or {}).get("username", "")),
        verb=str(event.get("verb", "")),
        resource=resource,
        namespace=str(ref.get("namespace", "")),
        name=str(ref.get("name", "")),
        code=int((event.get("responseStatus") or {}).get("code", 0)),
        received=timestamp(str(event["requestReceivedTimestamp"])),
    )


def windows(lines: Iterable[str], user: str,
            spans: Sequence[tuple[float, float]]) -> list[list[Request]]:
    """For each (start, end) of `spans`: each request `user` sent that the API server
    received within it, once (a watch is logged when its response starts and again when it
    ends). One pass over the log, however many spans."""
    needle = json.dumps(user)   # cheap filter before parsing: the line names the user
    seen: set[str] = set()
    out: list[list[Request]] = [[] for _ in spans]
    for line in lines:
        if needle not in line:
            continue
        req = parse(line)
        if req is None or req.user != user or req.audit_id in seen:
            continue
        for i, (start, end) in enumerate(spans):
            if start <= req.received <= end:
                seen.add(req.audit_id)
                out[i].append(req)
    return out


def requests(lines: Iterable[str], user: str, start: float, end: float) -> list[Request]:
    """Each request `user` sent that the API server received within [start, end], once."""
    return windows(lines, user, [(start, end)])[0]


def by_verb(reqs: Iterable[Request]) -> Counter[str]:
    return Counter(r.verb for r in reqs)


def by_verb_and_resource(reqs: Iterable[Request]) -> Counter[tuple[str, str]]:
    return Counter((r.verb, r.resource) for r in reqs)


def writes(reqs: Iterable[Request]) -> list[Request]:
    return [r for r in reqs if r.write]


def log_files(folder: Path) -> list[Path]:
    """The current log and the rotated ones beside it (audit-<time>.log), oldest first."""
    current = folder / "audit.log"
    rotated = sorted(p for p in folder.glob("audit-*.log"))
    return [*rotated, *([current] if current.exists() else [])]


def read_lines(folder: Path) -> Iterator[str]:
    for path in log_files(folder):
        with path.open(encoding="utf-8", errors="replace") as f:
            yield from f
