"""Two operator replicas (the console script, run as the Deployment runs it: no
`--peering`, so kopf's own default would be to act before it has seen the other) never
both act."""

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

from .conftest import stays, wait_for
from .helpers import NAME, cr, ready_at_generation, secret

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[3]
PEERING_CRDS = REPO / "manifests" / "base" / "kopf" / "peering-crds.yaml"
OPERATOR = REPO / ".venv" / "bin" / "authz-operator"


class Replica:
    def __init__(self, watch: str, priority: int, log: Path, kubeconfig: str,
                 args: tuple[str, ...] = ()) -> None:
        self.log = log
        env = {**os.environ, "KUBECONFIG": kubeconfig, "WATCH_NAMESPACES": watch}
        with log.open("wb") as out:
            self.proc = subprocess.Popen([str(OPERATOR), f"--priority={priority}", *args],
                                         env=env, stdout=out, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def freeze(self) -> None:
        """Stopped, not gone: its peering record stays live until its lifetime passes."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.thaw()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


Start = Callable[[str, int], Replica]


def install_peering_crds(kubectl: Callable[..., Any]) -> None:
    """kopf's two peering kinds (./hack/up installs them too), served before returning."""
    kubectl("apply", "--server-side", "-f", str(PEERING_CRDS))
    kubectl("wait", "--for=condition=Established", "--timeout=30s",
            "crd/kopfpeerings.kopf.dev", "crd/clusterkopfpeerings.kopf.dev")


@pytest.fixture
def start(crd: None, cluster: DevEnv, shared_database: str, namespace: str, tmp_path: Path,
          kubectl: Callable[..., Any]) -> Iterator[Start]:
    """Starts replicas (name, priority) watching the test's namespace, with its peering
    object in place (the namespaced overlay installs one per watched namespace) and the
    database the resource's Secret names."""
    install_peering_crds(kubectl)
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "default"}}))
    started: list[Replica] = []

    def replica(name: str, priority: int) -> Replica:
        started.append(Replica(namespace, priority, tmp_path / f"{name}.log",
                               cluster.kubeconfig))
        return started[-1]

    yield replica
    for one in started:
        one.stop()


def _peers(kube: Kube, namespace: str) -> int:
    peering = kube._call("GET", f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/default")
    return len((peering or {}).get("status") or {})


def log_level(kube: Kube, namespace: str) -> str | None:
    data = (kube.get("ConfigMap", namespace, f"{NAME}-config") or {}).get("data") or {}
    return data.get("log-level")


def test_only_the_highest_priority_replica_acts_and_the_other_takes_over(
        start: Start, kube: Kube, namespace: str) -> None:
    high, low = start("high", 200), start("low", 100)
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


def test_a_replica_started_beside_an_acting_one_does_nothing_before_it_has_seen_it(
        start: Start, kube: Kube, namespace: str) -> None:
    """As in every rollout of the operator's Deployment: a new replica starts while the
    other serves. Here the serving one is frozen (its peering record still live) and the
    resource changed, so a replica that acted before reading the peering object would
    carry the change out (it did, within 2 s of starting, before kopf's peering was made
    mandatory); it must wait, and the serving one, thawed, carries it out."""
    high = start("high", 200)
    kube.apply(secret(namespace))
    kube.apply(cr(namespace))
    wait_for("Ready", lambda: ready_at_generation(kube, namespace, 1), timeout=90)
    before = log_level(kube, namespace)
    assert before not in (None, "debug")
    high.freeze()
    kube.apply(cr(namespace, logLevel="debug"))
    low = start("low", 100)
    wait_for("the new replica in the peering object", lambda: _peers(kube, namespace) == 2)
    stays("the ConfigMap as it was while only the new replica runs",
          lambda: log_level(kube, namespace) == before, seconds=8)
    high.thaw()
    wait_for("Ready at generation 2 (by the replica that was serving)",
             lambda: ready_at_generation(kube, namespace, 2), timeout=90)
    assert log_level(kube, namespace) == "debug"
    assert f"{namespace}/{NAME}: update ConfigMap" in high.text()
    assert f"{namespace}/{NAME}:" not in low.text()


def test_a_replica_without_its_peering_object_says_so_and_acts_once_it_exists(
        start: Start, kube: Kube, namespace: str, kubectl: Callable[..., Any]) -> None:
    """The peering object is part of the install; without it a replica must not act (it
    cannot know whether another does) and must say why, and it must act as soon as the
    object is there again, without a restart."""
    kubectl("delete", "-n", namespace, "kopfpeering", "default")
    kube.apply(secret(namespace))
    kube.apply(cr(namespace))
    lone = start("lone", 100)
    path = f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/default"
    wait_for("the error naming the missing peering object",
             lambda: f"kopf's peering object {path} does not exist" in lone.text())
    stays("the resource untouched while the peering object is missing",
          lambda: not kube.get("ConfigMap", namespace, f"{NAME}-config"), seconds=5)
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "default"}}))
    wait_for("Ready once the peering object exists",
             lambda: ready_at_generation(kube, namespace, 1), timeout=90)


def test_a_namespace_deleted_while_paused_does_not_stop_the_replica_once_it_acts(
        crd: None, cluster: DevEnv, shared_database: str, namespace: str, kube: Kube,
        tmp_path: Path, kubectl: Callable[..., Any]) -> None:
    """With a namespace pattern kopf watches each matching namespace; a namespace deleted
    while the replica waits for its peering object ended that namespace's watchers before
    they listed, and kopf (1.45) then ran no handler at all, for any resource, until a
    restart (indexgate.py): in CI a replica resumed and left a resource Migrating for three
    minutes. Here the replica serves the pattern `<namespace>*` through a cluster-wide
    peering object of its own, absent at first (so it waits); a matching namespace comes
    and goes; the object is made; the resource must become Ready."""
    install_peering_crds(kubectl)
    peering_name = f"{namespace}-peering"
    gone = f"{namespace}-gone"
    kube.apply(secret(namespace))
    kube.apply(cr(namespace))
    replica = Replica(f"{namespace}*", 100, tmp_path / "replica.log", cluster.kubeconfig,
                      (f"--peering={peering_name}",))
    try:
        wait_for("the replica waiting for its peering object",
                 lambda: f"clusterkopfpeerings/{peering_name} does not exist" in replica.text())
        kubectl("create", "namespace", gone)
        # kopf starts the new namespace's (paused) watchers on its watch event, within
        # milliseconds; nothing outside the process shows it, so give it a few seconds.
        stays("the resource untouched while the replica waits",
              lambda: not kube.get("ConfigMap", namespace, f"{NAME}-config"), seconds=3)
        kubectl("delete", "namespace", gone, "--wait=true", "--timeout=60s")
        kubectl("apply", "-f", "-", input=yaml.safe_dump(
            {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
             "metadata": {"name": peering_name}}))
        wait_for("Ready once the replica acts",
                 lambda: ready_at_generation(kube, namespace, 1), timeout=90)
    finally:
        replica.stop()
        kubectl("delete", "clusterkopfpeering", peering_name, "--ignore-not-found")
        kubectl("delete", "namespace", gone, "--ignore-not-found", "--wait=false")
