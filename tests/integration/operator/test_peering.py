"""Two operator replicas (the console script, as the Deployment runs it) never both act."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz_operator.kube import Kube
from tests.conftest import DevEnv

from .conftest import wait_for
from .helpers import NAME, cr, ready_at_generation, secret

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[3]
PEERING_CRDS = REPO / "manifests" / "base" / "kopf" / "peering-crds.yaml"
OPERATOR = REPO / ".venv" / "bin" / "authz-operator"


class Replica:
    def __init__(self, namespace: str, priority: int, log: Path, kubeconfig: str) -> None:
        self.log = log
        env = {**os.environ, "KUBECONFIG": kubeconfig, "WATCH_NAMESPACES": namespace}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(OPERATOR), "--peering=default", f"--priority={priority}"],
                env=env, stdout=out, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def replicas(crd: None, cluster: DevEnv, namespace: str, kube: Kube, tmp_path: Path,
             kubectl: Callable[..., Any]) -> Iterator[tuple[Replica, Replica]]:
    kubectl("apply", "--server-side", "-f", str(PEERING_CRDS))
    kubectl("wait", "--for=condition=Established", "--timeout=30s",
            "crd/kopfpeerings.kopf.dev")
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "default"}}))
    high = Replica(namespace, 200, tmp_path / "high.log", cluster.kubeconfig)
    low = Replica(namespace, 100, tmp_path / "low.log", cluster.kubeconfig)
    yield high, low
    high.stop()
    low.stop()


def _peers(kube: Kube, namespace: str) -> int:
    peering = kube._call("GET", f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/default")
    return len((peering or {}).get("status") or {})


def test_only_the_highest_priority_replica_acts_and_the_other_takes_over(
        replicas: tuple[Replica, Replica], kube: Kube, namespace: str) -> None:
    high, low = replicas
    # Both replicas have announced themselves. (The low one may never log "Pausing": when it
    # sees the other at start-up it simply stays in kopf's initial pause.)
    wait_for("both replicas in the peering object", lambda: _peers(kube, namespace) == 2)
    kube.apply(secret(namespace))
    kube.apply(cr(namespace))
    wait_for("Ready", lambda: ready_at_generation(kube, namespace, 1), timeout=90)
    assert f"{namespace}/{NAME}: create Deployment" in high.text()
    assert f"{namespace}/{NAME}:" not in low.text()

    resumed = low.text().count("Resuming operations")
    high.stop()
    wait_for("the other replica to resume",
             lambda: low.text().count("Resuming operations") > resumed, timeout=90)
    kube.apply(cr(namespace, logLevel="debug"))
    wait_for("Ready at generation 2 (by the remaining replica)",
             lambda: ready_at_generation(kube, namespace, 2), timeout=90)
    assert f"{namespace}/{NAME}: update ConfigMap" in low.text()
