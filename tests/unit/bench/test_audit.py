"""Reading the API server's audit log: one user's requests in a window, by verb and resource."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from benchmarks import audit

OPERATOR = "system:serviceaccount:scale-abc-op:authz-operator"
T0 = audit.timestamp("2026-12-04T17:20:00.000000Z")


def line(audit_id: str, verb: str, resource: str | None, *, user: str = OPERATOR,
         at: float = 0.0, stage: str = "ResponseComplete", sub: str | None = None,
         code: int = 200, uri: str = "/apis/x") -> str:
    received = datetime.datetime.fromtimestamp(T0 + at, datetime.UTC)
    event: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": audit_id, "stage": stage, "requestURI": uri, "verb": verb,
        "user": {"username": user, "groups": ["system:serviceaccounts"]},
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": received.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "stageTimestamp": received.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if resource is not None:
        event["objectRef"] = {"resource": resource, "namespace": "scale-abc-n1-a-0",
                              "name": "svc-0", "apiVersion": "v1"}
        if sub:
            event["objectRef"]["subresource"] = sub
    return json.dumps(event)


def test_a_line_becomes_a_request() -> None:
    req = audit.parse(line("a", "patch", "authorizationservices", sub="status", at=1.5))
    assert req == audit.Request(audit_id="a", user=OPERATOR, verb="patch",
                                resource="authorizationservices/status",
                                namespace="scale-abc-n1-a-0", name="svc-0", code=200,
                                received=T0 + 1.5)
    assert req.write


def test_a_non_resource_request_is_named_by_its_path() -> None:
    req = audit.parse(line("a", "get", None, uri="/apis/rwadurian.io/v1alpha1?timeout=32s"))
    assert req is not None
    assert (req.resource, req.write) == ("/apis/rwadurian.io/v1alpha1", False)


def test_junk_and_other_stages_are_no_requests() -> None:
    assert audit.parse("") is None
    assert audit.parse('{"kind": "Event", "stage": "Resp') is None      # torn last line
    assert audit.parse(line("a", "get", "pods", stage="RequestReceived")) is None


def test_only_the_users_requests_received_in_the_window_each_once() -> None:
    lines = [
        line("before", "get", "deployments", at=-0.5),
        line("w", "watch", "pods", at=1, stage="ResponseStarted", code=0),
        line("g", "get", "deployments", at=2),
        line("other", "patch", "deployments", at=2, user="admin"),
        line("p", "patch", "deployments", at=3),
        line("w", "watch", "pods", at=1),                # the same watch, ended
        line("s", "patch", "authorizationservices", sub="status", at=10),
        line("after", "patch", "deployments", at=10.5),
        "not json",
    ]
    reqs = audit.requests(lines, OPERATOR, T0, T0 + 10)
    assert [r.audit_id for r in reqs] == ["w", "g", "p", "s"]
    assert audit.by_verb(reqs) == {"watch": 1, "get": 1, "patch": 2}
    assert audit.by_verb_and_resource(reqs) == {
        ("watch", "pods"): 1, ("get", "deployments"): 1, ("patch", "deployments"): 1,
        ("patch", "authorizationservices/status"): 1}
    assert [r.audit_id for r in audit.writes(reqs)] == ["p", "s"]


def test_a_user_whose_name_starts_another_is_not_counted() -> None:
    longer = OPERATOR + "-2"
    assert audit.requests([line("x", "patch", "pods", user=longer)], OPERATOR, T0 - 1,
                          T0 + 1) == []


def test_rotated_logs_are_read_oldest_first(tmp_path: Path) -> None:
    (tmp_path / "audit-2026-12-04T17-00-00.000.log").write_text(line("1", "get", "pods") + "\n")
    (tmp_path / "audit-2026-12-04T16-00-00.000.log").write_text(line("0", "get", "pods") + "\n")
    (tmp_path / "audit.log").write_text(line("2", "get", "pods") + "\n")
    (tmp_path / "audit-policy.yaml").write_text("not a log")
    assert [p.name for p in audit.log_files(tmp_path)] == [
        "audit-2026-12-04T16-00-00.000.log", "audit-2026-12-04T17-00-00.000.log", "audit.log"]
    assert [r.audit_id for r in audit.requests(audit.read_lines(tmp_path), OPERATOR,
                                               T0 - 1, T0 + 1)] == ["0", "1", "2"]
    assert audit.log_files(tmp_path / "missing") == []


def test_one_pass_splits_the_log_into_windows() -> None:
    lines = [line("a", "get", "pods", at=1), line("b", "patch", "pods", at=5),
             line("c", "list", "pods", at=9)]
    first, second = audit.windows(lines, OPERATOR, [(T0, T0 + 2), (T0 + 4, T0 + 10)])
    assert [r.audit_id for r in first] == ["a"]
    assert [r.audit_id for r in second] == ["b", "c"]
