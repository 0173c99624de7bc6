"""The harness's container runtime for our image: real processes, real environment wiring
from ConfigMaps and Secrets, readiness from a real probe, Job outcomes from exit codes and
termination messages from the file the process wrote."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from devenv import podrunner, procs
from tests.conftest import DevEnv
from tests.support.kube import api_client, condition, watch_until

pytestmark = pytest.mark.cluster

# A tiny server standing in for the service: answers /ready, and /env with its environment.
SERVER = """
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(dict(os.environ)).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""

WRITE_MESSAGE = """
import os, sys
with open(os.environ["TERMINATION_MESSAGE_PATH"], "w") as f:
    f.write(os.environ["GREETING"] + ":" + os.environ["TOKEN"])
sys.exit(int(os.environ.get("EXIT", "0")))
"""


@pytest.fixture
def api(cluster: DevEnv) -> Iterator[Any]:
    c = api_client(cluster.kubeconfig)
    yield c
    c.close()


def _env() -> list[dict[str, Any]]:
    return [
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
        {"name": "PORT", "value": "3002"},
    ]


def _config(api: Any, namespace: str, secret: bool = True) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"},
                                                  "data": {"greeting": "hello"}})
    if secret:
        core.create_namespaced_secret(namespace, {"metadata": {"name": "sec"},
                                                  "stringData": {"token": "s3cret"}})


def _job(name: str, exit_code: int) -> dict[str, Any]:
    env = [*_env(), {"name": "EXIT", "value": str(exit_code)}]
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "migrate", "image": "registry.example/authorization-service:0.0.1-test",
             "command": ["python", "-c", WRITE_MESSAGE], "env": env}]}}},
    }


def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = pod["status"]["containerStatuses"][0]["state"]
    return dict(state["terminated"])


@pytest.mark.parametrize(("exit_code", "phase", "job_condition"),
                         [(0, "Succeeded", "Complete"), (3, "Failed", "Failed")])
def test_job_pod_outcome_and_termination_message(
    api: Any, namespace: str, exit_code: int, phase: str, job_condition: str,
) -> None:
    _config(api, namespace)
    client.BatchV1Api(api).create_namespaced_job(namespace, _job("mig", exit_code))
    pods = watch_until(client.CoreV1Api(api).list_namespaced_pod,
                       lambda ps: any(p["status"].get("phase") == phase for p in ps),
                       namespace, label_selector="job-name=mig", timeout=60)
    terminated = _terminated(pods[0])
    assert terminated["exitCode"] == exit_code
    assert terminated["message"] == "hello:s3cret"
    watch_until(client.BatchV1Api(api).list_namespaced_job,
                lambda js: condition(js[0], job_condition) == "True", namespace, timeout=60)


def _deployment(tag: str) -> dict[str, Any]:
    labels = {"app": "svc"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "svc"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{
                "name": "authorization-service",
                "image": f"registry.example/authorization-service:{tag}",
                "command": ["python", "-c", SERVER], "env": _env(),
                "ports": [{"name": "http", "containerPort": 3002}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}}}]}}},
    }


def test_serving_pod_is_ready_only_when_it_answers_and_gets_its_env(
    api: Any, namespace: str,
) -> None:
    _config(api, namespace)
    client.AppsV1Api(api).create_namespaced_deployment(namespace, _deployment("0.0.1-test"))
    pods = watch_until(client.CoreV1Api(api).list_namespaced_pod,
                       lambda ps: len(ps) == 1 and condition(ps[0], "Ready") == "True",
                       namespace, label_selector="app=svc", timeout=60)
    where = podrunner.endpoint(namespace, pods[0]["metadata"]["name"])
    assert where is not None
    assert where["containerPort"] == 3002
    with urllib.request.urlopen(f"http://127.0.0.1:{where['port']}/env", timeout=5) as resp:
        env = json.load(resp)
    assert (env["GREETING"], env["TOKEN"], env["PORT"]) == ("hello", "s3cret", str(where["port"]))
    assert "DATABASE_URL" not in env, "the host's environment leaked into the pod"


def test_unready_tag_runs_but_never_becomes_ready(api: Any, namespace: str) -> None:
    _config(api, namespace)
    client.AppsV1Api(api).create_namespaced_deployment(namespace,
                                                       _deployment("0.0.1-unready"))

    def running(ps: list[dict[str, Any]]) -> bool:
        assert all(condition(p, "Ready") != "True" for p in ps), "an -unready pod became Ready"
        return any(p["status"].get("phase") == "Running"
                   and podrunner.endpoint(namespace, p["metadata"]["name"]) for p in ps)

    pods = watch_until(client.CoreV1Api(api).list_namespaced_pod, running, namespace,
                       label_selector="app=svc", timeout=60)
    where = podrunner.endpoint(namespace, pods[0]["metadata"]["name"])
    assert where is not None
    assert procs.alive(where["pid"]), "the injected process should keep running"
    assert not procs.port_open(where["port"]), "nothing may answer the probe"
    assert condition(pods[0], "Ready") == "False"


def test_missing_secret_waits_then_recovers(api: Any, namespace: str) -> None:
    _config(api, namespace, secret=False)
    core = client.CoreV1Api(api)
    client.AppsV1Api(api).create_namespaced_deployment(namespace, _deployment("0.0.1-test"))

    def waiting_reason(ps: list[dict[str, Any]]) -> str:
        for p in ps:
            for cs in (p.get("status") or {}).get("containerStatuses") or []:
                waiting = cs["state"].get("waiting") or {}
                return f"{waiting.get('reason')}: {waiting.get('message')}"
        return ""

    pods = watch_until(core.list_namespaced_pod,
                       lambda ps: waiting_reason(ps).startswith("CreateContainerConfigError"),
                       namespace, label_selector="app=svc", timeout=60)
    assert '"sec"' in waiting_reason(pods)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "sec"},
                                              "stringData": {"token": "s3cret"}})
    watch_until(core.list_namespaced_pod,
                lambda ps: len(ps) == 1 and condition(ps[0], "Ready") == "True",
                namespace, label_selector="app=svc", timeout=60)


def test_failing_liveness_probe_restarts_the_container(api: Any, namespace: str) -> None:
    _config(api, namespace)
    deployment = _deployment("0.0.1-test")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    # Nothing listens on port 1: every liveness check fails.
    container["livenessProbe"] = {"tcpSocket": {"port": 1}, "initialDelaySeconds": 0,
                                  "periodSeconds": 1, "failureThreshold": 2}
    client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment)

    def restarted(ps: list[dict[str, Any]]) -> bool:
        statuses = [cs for p in ps for cs in (p.get("status") or {}).get(
            "containerStatuses") or []]
        return any(cs["restartCount"] >= 1 for cs in statuses)

    pods = watch_until(client.CoreV1Api(api).list_namespaced_pod, restarted, namespace,
                       label_selector="app=svc", timeout=60)
    last = pods[0]["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert (last["exitCode"], last["message"]) == (137, "liveness probe failed")
