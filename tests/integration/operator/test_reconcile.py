"""The real operator against the local API server (controller-manager, scheduler, kwok)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from authz_operator import metrics
from authz_operator.kube import Kube
from tests.conftest import SHARED_DATABASE_URL

from .conftest import Recorder, measured, stays, wait_for
from .helpers import IMAGE, NAME, condition, cr, ready_at_generation, reasons, secret, status
from .inprocess import Operator

pytestmark = pytest.mark.cluster

SERVICE_PODS = f"app.kubernetes.io/instance={NAME},!rwadurian.io/migration"
CHILDREN = [
    ("ServiceAccount", NAME), ("ConfigMap", f"{NAME}-config"), ("Service", NAME),
    ("Deployment", NAME), ("HorizontalPodAutoscaler", NAME), ("PodDisruptionBudget", NAME),
    ("Ingress", NAME),
]


def create(kube: Kube, namespace: str, **spec: Any) -> None:
    kube.apply(secret(namespace))
    kube.apply(cr(namespace, **spec))


def test_create_builds_children_and_honest_status(
        operator: Operator, kube: Kube, namespace: str,
        kubectl: Callable[..., Any]) -> None:
    started = time.monotonic()
    create(kube, namespace)
    st = wait_for("Ready", lambda: ready_at_generation(kube, namespace, 1), timeout=90)
    measured("apply -> Ready (2 pods)", time.monotonic() - started, "s")

    owner = kube.get("AuthorizationService", namespace, NAME)
    assert owner is not None
    assert not owner["metadata"].get("finalizers")
    # kopf remembers what it handled in memory (diffbase.py): it never writes the resource
    assert not [k for k in owner["metadata"].get("annotations") or {}
                if k.startswith("authz.rwadurian.io/")]
    assert "kopf" not in {m["manager"] for m in owner["metadata"]["managedFields"]}
    for kind, name in CHILDREN:
        obj = kube.get(kind, namespace, name)
        assert obj is not None, f"{kind} {name} missing"
        meta = obj["metadata"]
        assert meta["labels"] == {
            "app.kubernetes.io/name": "authorization-service",
            "app.kubernetes.io/instance": NAME,
            "app.kubernetes.io/managed-by": "authz-operator",
            "app.kubernetes.io/version": "1.4.0",
        }
        [ref] = meta["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "AuthorizationService", NAME, owner["metadata"]["uid"], True)
        managers = {m["manager"] for m in meta.get("managedFields") or []
                    if m["operation"] == "Apply"}
        assert managers == {"authz-operator"}

    dep = kube.get("Deployment", namespace, NAME)
    assert dep is not None
    [container] = dep["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "authorization-service"
    assert container["command"] == ["authz-service", "serve"]
    env = {e["name"]: e.get("valueFrom") for e in container["env"]}
    assert env["JWT_SECRET"] == {"secretKeyRef": {"name": "authorization-secrets",
                                                  "key": "jwt-secret"}}
    assert env["PORT"]["configMapKeyRef"]["name"] == f"{NAME}-config"

    assert st["ready"] == "2/2"          # the HPA's minReplicas
    assert st["image"] == IMAGE
    assert st["revision"] == 1
    assert [h["revision"] for h in st["history"]] == [1]
    for type_ in ("Ready", "Available", "Progressing", "Degraded"):
        c = condition(st, type_)
        assert c["lastTransitionTime"]
        assert c["observedGeneration"] == 1
    assert condition(st, "Degraded")["status"] == "False"
    assert {"Created", "RolloutStarted", "RolloutComplete"} <= set(reasons(kube, namespace))
    kubectl("wait", "-n", namespace, "--for=condition=Ready", "--timeout=10s",
            f"authsvc/{NAME}")
    printed = kubectl("get", "authsvc", "-n", namespace).stdout.split("\n")
    assert printed[0].split() == ["NAME", "READY", "PHASE", "IMAGE", "SCHEMA", "REVISION", "AGE"]
    # the migration Job really ran the image's migrations: the schema column is filled
    assert printed[1].split()[:6] == [NAME, "2/2", "Ready", IMAGE, "0003", "1"]


def _spec_change_cases() -> list[Any]:
    def configmap_log_level(kube: Kube, ns: str) -> bool:
        cm = kube.get("ConfigMap", ns, f"{NAME}-config") or {}
        return bool(cm.get("data", {}).get("log-level") == "debug")

    def ingress_gone(kube: Kube, ns: str) -> bool:
        return kube.get("Ingress", ns, NAME) is None

    def fixed_replicas(kube: Kube, ns: str) -> bool:
        dep = kube.get("Deployment", ns, NAME) or {}
        return (kube.get("HorizontalPodAutoscaler", ns, NAME) is None
                and kube.get("PodDisruptionBudget", ns, NAME) is None
                and dep.get("spec", {}).get("replicas") == 1)

    def service_port(kube: Kube, ns: str) -> bool:
        svc = kube.get("Service", ns, NAME) or {}
        return bool(svc.get("spec", {}).get("ports", [{}])[0].get("port") == 8080)

    return [
        pytest.param({"logLevel": "debug"}, configmap_log_level, id="config"),
        pytest.param({"ingress": {"enabled": False}}, ingress_gone, id="ingress-off"),
        pytest.param({"autoscaling": {"enabled": False}, "replicas": 1}, fixed_replicas,
                     id="autoscaling-off"),
        pytest.param({"port": 8080}, service_port, id="port"),
    ]


@pytest.mark.parametrize(("change", "check"), _spec_change_cases())
def test_spec_change_changes_the_right_child(
        operator: Operator, kube: Kube, namespace: str, change: dict[str, Any],
        check: Callable[[Kube, str], bool]) -> None:
    create(kube, namespace)
    wait_for("Ready", lambda: ready_at_generation(kube, namespace, 1), timeout=90)
    before = kube.get("Deployment", namespace, NAME)
    assert before is not None
    kube.apply(cr(namespace, **change))
    wait_for("the child change", lambda: check(kube, namespace))
    st = wait_for("Ready at generation 2", lambda: ready_at_generation(kube, namespace, 2),
                  timeout=90)
    assert st["observedGeneration"] == 2
    assert "Updated" in reasons(kube, namespace) or "Deleted" in reasons(kube, namespace)


def _template_annotation(kube: Kube, namespace: str, key: str) -> str | None:
    dep = kube.get("Deployment", namespace, NAME) or {}
    anns = dep.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
    value = anns.get(key)
    return None if value is None else str(value)


def test_secret_change_rolls_the_pods(operator: Operator, kube: Kube, namespace: str) -> None:
    create(kube, namespace)
    wait_for("Ready", lambda: ready_at_generation(kube, namespace, 1), timeout=90)
    old_hash = _template_annotation(kube, namespace, "rwadurian.io/secrets-hash")
    old_pods = {p["metadata"]["name"] for p in kube.list(
        "Pod", namespace, SERVICE_PODS)}
    assert old_pods

    # A new value (the pods must still reach a real database to become ready again).
    kube.apply(secret(namespace, data={"database-url": SHARED_DATABASE_URL + "?application_name=x",
                                       "jwt-secret": "rotated"}))
    wait_for("a new secrets hash on the pod template", lambda: _template_annotation(
        kube, namespace, "rwadurian.io/secrets-hash") not in (None, old_hash))

    def rolled() -> bool:
        pods = kube.list("Pod", namespace, SERVICE_PODS)
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        return bool(live) and not ({p["metadata"]["name"] for p in live} & old_pods) and all(
            any(c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions") or []) for p in live)
    wait_for("every pod replaced by a ready new one", rolled, timeout=90)
    st = wait_for("Ready with revision 2", lambda: (
        (s := ready_at_generation(kube, namespace, 1)) and s.get("revision") == 2 and s))
    assert [h["revision"] for h in st["history"]] == [1, 2]


def test_previous_jwt_secret_is_wired_and_its_secret_watched(
        operator: Operator, kube: Kube, namespace: str) -> None:
    """spec.jwt.previousSecretRef (a JWT rotation): the pods read JWT_SECRET_PREVIOUS from
    that Secret key; its Secret appearing and changing each wake a reconcile through the
    Secret watch (the `secret_changed` handler), not through some other event."""
    previous = {"name": "jwt-previous", "key": "jwt-secret"}
    kube.apply(cr(namespace, jwt={"secretRef": {"name": "authorization-secrets",
                                                "key": "jwt-secret"},
                                  "previousSecretRef": previous}))

    def missing() -> str | None:
        ready = condition(status(kube, namespace), "Ready")
        return str(ready.get("message")) if ready.get("reason") == "SecretMissing" else None

    def woken_by_the_secret_watch() -> float:
        # A reconcile it ran, or one not yet started that it was folded into (real pods make
        # many events; the pending reconcile reads the Secret as it is when it starts).
        labels = {"namespace": namespace, "name": NAME, "handler": "secret_changed"}
        return (metrics.value("authz_operator_reconciles_total", labels)
                + metrics.value("authz_operator_coalesced_total", labels))

    assert "Secret 'jwt-previous' (for JWT_SECRET_PREVIOUS)" in wait_for("SecretMissing", missing)
    kube.apply(secret(namespace))
    wait_for("a reconcile woken by the first Secret", lambda: woken_by_the_secret_watch() > 0)
    assert wait_for("only the previous secret missing", lambda: (
        (m := missing()) and "authorization-secrets" not in m and m)) == (
        "missing Secret 'jwt-previous' (for JWT_SECRET_PREVIOUS)")
    assert kube.get("Deployment", namespace, NAME) is None

    woken = woken_by_the_secret_watch()
    kube.apply(secret(namespace, name="jwt-previous", data={"jwt-secret": "the-old-one"}))
    wait_for("a reconcile woken by the previous secret appearing",
             lambda: woken_by_the_secret_watch() > woken)
    wait_for("Ready once the previous secret exists",
             lambda: ready_at_generation(kube, namespace, 1), timeout=90)
    dep = kube.get("Deployment", namespace, NAME) or {}
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "JWT_SECRET_PREVIOUS", "valueFrom": {"secretKeyRef": previous}} in env
    old_hash = _template_annotation(kube, namespace, "rwadurian.io/secrets-hash")

    woken = woken_by_the_secret_watch()
    kube.apply(secret(namespace, name="jwt-previous", data={"jwt-secret": "an-older-one"}))
    wait_for("a reconcile woken by the previous secret changing",
             lambda: woken_by_the_secret_watch() > woken)
    wait_for("a new secrets hash after the previous secret changed", lambda: (
        _template_annotation(kube, namespace, "rwadurian.io/secrets-hash")
        not in (None, old_hash)))


def test_drift_is_restored(operator: Operator, kube: Kube, namespace: str,
                           kubectl: Callable[..., Any]) -> None:
    create(kube, namespace, autoscaling={"enabled": False}, replicas=2)
    wait_for("Ready", lambda: ready_at_generation(kube, namespace, 1), timeout=90)
    kubectl("scale", "-n", namespace, f"deployment/{NAME}", "--replicas=5")
    kubectl("patch", "-n", namespace, f"service/{NAME}", "--type=merge",
            "-p", '{"spec":{"ports":[{"name":"http","port":1234,"targetPort":"http"}]}}')
    kubectl("delete", "-n", namespace, f"configmap/{NAME}-config")

    def restored() -> bool:
        dep = kube.get("Deployment", namespace, NAME) or {}
        svc = kube.get("Service", namespace, NAME) or {}
        cm = kube.get("ConfigMap", namespace, f"{NAME}-config")
        return (dep.get("spec", {}).get("replicas") == 2 and cm is not None
                and svc.get("spec", {}).get("ports", [{}])[0].get("port") == 3002)
    wait_for("drift restored", restored)
    # The reconcile posts its events after its applies (and patches status last): seeing
    # the children restored does not mean the event is there yet.
    wait_for("a DriftCorrected event", lambda: "DriftCorrected" in reasons(kube, namespace))


def test_a_child_that_lost_our_label_gets_it_back(operator: Operator, kube: Kube,
                                                   namespace: str,
                                                   kubectl: Callable[..., Any]) -> None:
    """kopf watches children by our label (server-side): one that lost it leaves the watch,
    which wakes its owner; the reconcile finds it by the GET that guards a create and puts
    the label back (not a second Service, not a conflict)."""
    create(kube, namespace, autoscaling={"enabled": False})
    wait_for("Ready", lambda: ready_at_generation(kube, namespace, 1), timeout=90)
    uid = (kube.get("Service", namespace, NAME) or {})["metadata"]["uid"]
    kubectl("label", "-n", namespace, f"service/{NAME}", "app.kubernetes.io/managed-by-")

    def relabelled() -> bool:
        meta = (kube.get("Service", namespace, NAME) or {}).get("metadata") or {}
        return (meta.get("labels") or {}).get("app.kubernetes.io/managed-by") == \
            "authz-operator"
    wait_for("the label back", relabelled)
    assert (kube.get("Service", namespace, NAME) or {})["metadata"]["uid"] == uid
    wait_for("a DriftCorrected event", lambda: "DriftCorrected" in reasons(kube, namespace))


def test_a_child_status_no_reconcile_reads_wakes_none(
        operator: Operator, kube: Kube, namespace: str,
        kubectl: Callable[..., Any]) -> None:
    """The disruption controller writes the PodDisruptionBudget's status as pods come and go;
    no reconcile reads it (news.py), so such an event wakes no reconcile: it is counted as
    not news, and the resource's reconciles woken by PDB events stay as they were."""
    handler = "child-poddisruptionbudgets"
    create(kube, namespace, autoscaling={"enabled": False})
    wait_for("Ready", lambda: ready_at_generation(kube, namespace, 1), timeout=90)

    def woken() -> float:
        labels = {"namespace": namespace, "name": NAME, "handler": handler}
        return (metrics.value("authz_operator_reconciles_total", labels)
                + metrics.value("authz_operator_coalesced_total", labels))

    def not_news() -> float:
        return metrics.value("authz_operator_events_not_news_total", {"handler": handler})

    before, quiet = woken(), not_news()
    kubectl("patch", "-n", namespace, f"poddisruptionbudget/{NAME}", "--subresource=status",
            "--type=merge", "-p", '{"status":{"disruptionsAllowed":7}}')
    wait_for("the status event counted as not news", lambda: not_news() > quiet)
    # a wake would start its reconcile 0.3 s later (wakeups.DEBOUNCE_SECONDS)
    stays("no reconcile woken by a PDB event", lambda: woken() == before, 2)


def test_missing_secret_then_missing_key_then_recovery(
        operator: Operator, kube: Kube, namespace: str) -> None:
    kube.apply(cr(namespace))

    def pending_with(text: str) -> dict[str, Any] | None:
        st = status(kube, namespace)
        ready = condition(st, "Ready")
        ok = (st.get("phase") == "Pending" and ready.get("reason") == "SecretMissing"
              and text in ready.get("message", ""))
        return st if ok else None
    wait_for("SecretMissing naming the Secret",
             lambda: pending_with("Secret 'authorization-secrets' (for DATABASE_URL)"))
    assert kube.get("Deployment", namespace, NAME) is None
    assert "SecretMissing" in reasons(kube, namespace)

    kube.apply(secret(namespace, data={"database-url": "postgresql://x"}))
    wait_for("SecretMissing naming the key", lambda: pending_with(
        "key 'jwt-secret' in Secret 'authorization-secrets' (for JWT_SECRET)"))
    assert kube.get("Deployment", namespace, NAME) is None

    kube.apply(secret(namespace))
    wait_for("Ready after the key appeared",
             lambda: ready_at_generation(kube, namespace, 1), timeout=90)
    assert "SecretsFound" in reasons(kube, namespace)
    for e in kube._call("GET", f"/api/v1/namespaces/{namespace}/events")["items"]:
        assert "s3cr3t" not in e.get("message", "")
    assert "s3cr3t" not in str(status(kube, namespace))


def test_pause_freezes_children(operator: Operator, kube: Kube, namespace: str) -> None:
    create(kube, namespace)
    wait_for("Ready", lambda: ready_at_generation(kube, namespace, 1), timeout=90)
    kube.apply(cr(namespace, paused=True, logLevel="debug"))
    wait_for("Paused", lambda: status(kube, namespace).get("phase") == "Paused"
             and status(kube, namespace).get("observedGeneration") == 2)
    cm = kube.get("ConfigMap", namespace, f"{NAME}-config") or {}
    assert cm["data"]["log-level"] == "info"
    assert "Paused" in reasons(kube, namespace)

    kube.apply(cr(namespace, paused=False, logLevel="debug"))
    wait_for("Ready after resuming", lambda: ready_at_generation(kube, namespace, 3),
             timeout=90)
    cm = kube.get("ConfigMap", namespace, f"{NAME}-config") or {}
    assert cm["data"]["log-level"] == "debug"
    assert "Resumed" in reasons(kube, namespace)


def test_delete_removes_children(operator: Operator, kube: Kube, namespace: str) -> None:
    create(kube, namespace)
    wait_for("Ready", lambda: ready_at_generation(kube, namespace, 1), timeout=90)
    kube.delete("AuthorizationService", namespace, NAME)
    wait_for("the resource gone",
             lambda: kube.get("AuthorizationService", namespace, NAME) is None)
    wait_for("every child gone (garbage collector)", lambda: all(
        kube.get(kind, namespace, name) is None for kind, name in CHILDREN), timeout=90)


def test_zero_writes_when_nothing_changed(
        operator: Operator, kube: Kube, namespace: str, recorder: Recorder,
        kubectl: Callable[..., Any]) -> None:
    create(kube, namespace)
    wait_for("Ready", lambda: ready_at_generation(kube, namespace, 1), timeout=90)

    def finished() -> float:
        return metrics.value("authz_operator_reconciles_total",
                             {"namespace": namespace, "name": NAME, "result": "ok"})

    # Let the burst of child events after Ready drain: a settled operator sends nothing.
    def settled() -> bool:
        mark, count = recorder.mark(), finished()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if finished() != count or recorder.writes_since(mark):
                return False
            time.sleep(0.2)
        return True
    wait_for("the operator to settle", settled)

    # 1. a child event that changes nothing we own: someone annotates the Service.
    mark, count = recorder.mark(), finished()
    kubectl("annotate", "-n", namespace, f"service/{NAME}", "example.com/note=hello")
    wait_for("a reconcile after the annotation", lambda: finished() > count)
    assert recorder.writes_since(mark) == []
    measured("requests of one idle reconcile (all reads)", len(recorder.calls) - mark,
             "requests")

    # 2. the operator restarts: resume reconciles everything, writes nothing.
    operator.stop()
    mark, count = recorder.mark(), finished()
    operator.start()
    wait_for("a reconcile after the restart", lambda: finished() > count)
    assert recorder.writes_since(mark) == []
    measured("requests of an idle restart (kopf watches + one reconcile)",
             len(recorder.calls) - mark, "requests")
