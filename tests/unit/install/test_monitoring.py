"""manifests/monitoring: a ServiceMonitor for the operator and one for the services, the
PrometheusRule alerts the issue asks for, and a Grafana dashboard, all rendering with
kustomize, well-formed, and using only metrics that exist (the service's, read from its
code; the operator's, from the contract in docs/operations.md)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from authz_operator import resources
from authz_operator.resources import Owner
from authz_operator.spec import parse_spec
from tests.unit.install.manifests import MANIFESTS, MONITORING, ROOT, Obj, find, one, render

# The operator's metrics (served on its metrics port; see docs/operations.md "Metrics").
OPERATOR_METRICS = {
    "authz_operator_reconciles_total": {"namespace", "name", "handler", "result"},
    "authz_operator_writes_total": {"namespace", "name"},
    "authz_operator_reconcile_duration_seconds": {"namespace", "name"},
    "authz_operator_handler_errors_total": {"handler"},
    "authz_operator_migrations_total": {"namespace", "name", "direction", "outcome"},
    "authz_operator_migration_duration_seconds": {"namespace", "name", "direction", "outcome"},
    "authz_operator_rollbacks_total": {"namespace", "name", "outcome"},
    "authz_operator_condition": {"namespace", "name", "type", "status"},
}
PROMETHEUS_LABELS = {"namespace", "job", "instance", "pod", "service", "le", "instance_name"}
PROMQL_WORDS = {
    "sum", "by", "without", "rate", "increase", "histogram_quantile", "absent", "up",
    "label_values", "and", "or", "unless", "bool", "on", "ignoring", "max", "min", "avg",
}


def service_metrics() -> dict[str, set[str]]:
    """The service's metric names and labels, read from its source."""
    source = (ROOT / "service" / "authz_service" / "metrics.py").read_text()
    out: dict[str, set[str]] = {}
    for m in re.finditer(r'(Counter|Histogram|Gauge)\(\s*"(\w+)",\s*"[^"]*"(?:,\s*\[([^\]]*)\])?',
                         source):
        out[m[2]] = {w.strip().strip('"') for w in (m[3] or "").split(",") if w.strip()}
    assert "http_requests_total" in out, "the service's metrics moved: update this reader"
    return out


def known_series() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, labels in {**OPERATOR_METRICS, **service_metrics()}.items():
        out[name] = labels
        for suffix in ("_bucket", "_sum", "_count"):   # histograms
            out[name + suffix] = labels | {"le"}
    out["up"] = set()
    return out


def check_promql(expr: str) -> None:
    """Balanced brackets, only known metrics, and label matchers only on labels they have."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for ch in re.sub(r'"[^"]*"', '""', expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            assert stack, f"unbalanced {ch!r} in {expr}"
            assert stack.pop() == pairs[ch], f"unbalanced {ch!r} in {expr}"
    assert not stack, f"unclosed bracket in {expr}"
    series = known_series()
    stripped = re.sub(r'"[^"]*"', '""', expr)
    for m in re.finditer(r"\b([a-z_][a-z0-9_]*)\s*(\{[^}]*\})?", stripped):
        word, matchers = m[1], m[2]
        if word in PROMQL_WORDS or re.fullmatch(r"\d+[smhdw]", word):
            continue
        preceded = stripped[max(0, m.start() - 3):m.start()]
        if "(" in preceded and word not in series and not matchers:
            continue   # a grouping label, e.g. by (result)
        if word in series:
            for label in re.findall(r"(\w+)\s*[=!~]", matchers or ""):
                assert label in series[word] | PROMETHEUS_LABELS, f"{word} has no {label}"
        elif word not in PROMETHEUS_LABELS and not any(word in v for v in series.values()):
            pytest.fail(f"unknown metric or label {word!r} in {expr}")


@pytest.fixture(scope="module")
def monitoring() -> list[Obj]:
    return render(MONITORING)


def test_monitoring_objects(monitoring: list[Obj]) -> None:
    assert sorted((o["kind"], o["metadata"]["name"]) for o in monitoring) == [
        ("ConfigMap", "authz-grafana-dashboard"),
        ("PrometheusRule", "authz-operator"),
        ("ServiceMonitor", "authorization-service"),
        ("ServiceMonitor", "authz-operator"),
    ]
    for obj in monitoring:
        assert obj["metadata"]["namespace"] == "authz-system"
        if obj["kind"] != "ConfigMap":
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"


def test_operator_service_monitor_matches_the_metrics_service(monitoring: list[Obj]) -> None:
    base = render(MANIFESTS)
    svc = one(base, "Service", "authz-operator-metrics")
    sm = one(monitoring, "ServiceMonitor", "authz-operator")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [svc["metadata"]["namespace"]]
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [svc["spec"]["ports"][0]["name"]]


def test_service_monitor_matches_the_services_the_operator_builds(monitoring: list[Obj]) -> None:
    spec = parse_spec({
        "image": "registry.example/authorization-service:1.4.0",
        "database": {"urlSecretRef": {"name": "s", "key": "database-url"}},
        "redis": {"host": "redis"}, "kafka": {"brokers": ["kafka:9092"]},
        "jwt": {"secretRef": {"name": "s", "key": "jwt-secret"}},
    })
    target = resources.target_from_spec(spec, {})
    built = resources.desired_service(spec, Owner("authz", "team-a", "uid-1"), target)
    sm = one(monitoring, "ServiceMonitor", "authorization-service")
    assert sm["spec"]["namespaceSelector"] == {"any": True}
    assert sm["spec"]["selector"]["matchLabels"].items() <= built["metadata"]["labels"].items()
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [
        p["name"] for p in built["spec"]["ports"]]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


def _rules(monitoring: list[Obj]) -> dict[str, dict[str, Any]]:
    rule = one(monitoring, "PrometheusRule")
    out: dict[str, dict[str, Any]] = {}
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            assert r["alert"] not in out, f"duplicate alert {r['alert']}"
            out[r["alert"]] = r
    return out


def test_the_alerts_the_issue_asks_for(monitoring: list[Obj]) -> None:
    alerts = _rules(monitoring)
    migration = alerts["AuthorizationServiceMigrationFailed"]["expr"]
    assert "authz_operator_migrations_total" in migration
    assert 'outcome="failed"' in migration
    assert "authz_operator_rollbacks_total" in alerts["AuthorizationServiceRolledBack"]["expr"]
    not_ready = alerts["AuthorizationServiceNotReady"]
    assert not_ready["for"] == "10m"
    assert 'type="Ready"' in not_ready["expr"]
    assert 'status="True"' in not_ready["expr"]


def test_every_alert_is_well_formed(monitoring: list[Obj]) -> None:
    for name, rule in _rules(monitoring).items():
        assert re.fullmatch(r"[A-Z][A-Za-z]+", name)
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        check_promql(rule["expr"])
        for text in rule["annotations"].values():   # Go templates: {{ ... }} balanced
            assert text.count("{{") == text.count("}}"), name


def test_promql_checker_catches_mistakes() -> None:
    """The checker above must be able to fail."""
    for bad in ("rate(authz_operator_reconciles_total[5m]",
                "authz_operator_reconciles_totl > 0",
                'authz_operator_condition{colour="red"} == 1'):
        with pytest.raises(BaseException):  # noqa: B017, PT011 (assertion or pytest.fail)
            check_promql(bad)


def _dashboard(monitoring: list[Obj]) -> dict[str, Any]:
    cm = one(monitoring, "ConfigMap", "authz-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"   # Grafana's sidecar finds it
    (text,) = cm["data"].values()
    dash: dict[str, Any] = json.loads(text)
    return dash


def test_dashboard_is_the_file_in_the_repo(monitoring: list[Obj]) -> None:
    on_disk = json.loads((MONITORING / "dashboards" / "authz.json").read_text())
    assert _dashboard(monitoring) == on_disk


def test_dashboard_panels(monitoring: list[Obj]) -> None:
    dash = _dashboard(monitoring)
    assert dash["uid"] == "authz-operator"
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "namespace"}
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = {p["title"] for p in panels if p["type"] == "row"}
    assert titles == {"Operator", "Migrations and rollbacks", "Authorization service"}
    cells: set[tuple[int, int]] = set()
    used: set[str] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))
        for t in p.get("targets", []):
            expr = t["expr"].replace("$namespace", "x")
            check_promql(expr)
            used |= set(re.findall(r"\b(authz_operator_\w+?|http_\w+|authz_\w+)"
                                   r"(?:_bucket)?\b", t["expr"]))
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    # the dashboard covers both the operator and the service
    assert {"authz_operator_reconciles_total", "authz_operator_condition",
            "authz_operator_migrations_total", "authz_operator_rollbacks_total",
            "http_requests_total"} <= used


def test_all_operator_metrics_are_documented() -> None:
    doc = (ROOT / "docs" / "operations.md")
    if not doc.exists():
        pytest.fail("docs/operations.md is missing")
    text = doc.read_text()
    for metric, labels in OPERATOR_METRICS.items():
        assert f"`{metric}`" in text, f"{metric} not in docs/operations.md"
        for label in labels:
            assert label in text


def test_nothing_else_in_monitoring_dir() -> None:
    files = {str(p.relative_to(MONITORING)) for p in MONITORING.rglob("*") if p.is_file()}
    kustomization = (MONITORING / "kustomization.yaml").read_text()
    for f in files - {"kustomization.yaml"}:
        assert f.split("/")[-1] in kustomization, f"{f} is not part of the kustomization"
    assert find(render(MONITORING), "ConfigMap")
