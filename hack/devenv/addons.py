"""What a cluster has besides its control plane and nodes: cluster DNS (CoreDNS),
metrics-server behind the aggregation layer, and Services that give the environment's servers
the DNS names the seed uses (`redis-master.redis.svc.cluster.local`, ...).

CoreDNS and metrics-server run as processes of the environment's network namespace, not as
pods (their images would be the same binaries in an empty image; as processes they start
before the node and need no image). They reach the API server like any client, and pods reach
them through ordinary Services without selectors whose EndpointSlices point at the node's IP.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from typing import Any

import yaml

from devenv import build, cluster, netns, paths, procs
from devenv.state import State

DNS_PORT = 53
METRICS_API = "v1beta1.metrics.k8s.io"


@dataclass(frozen=True)
class External:
    """A server of the environment under a cluster DNS name: `name.namespace.svc`."""

    namespace: str
    name: str
    port: int           # the Service's port (what clients dial)
    target: int         # where the server listens on the node's IP
    protocols: tuple[str, ...] = ("TCP",)


def service_objects(ext: External) -> list[dict[str, Any]]:
    """A Service without a selector and its EndpointSlice pointing at the node's IP."""
    ports = [{"name": f"{p.lower()}-{ext.port}", "port": ext.port, "targetPort": ext.target,
              "protocol": p} for p in ext.protocols]
    service: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": ext.name, "namespace": ext.namespace,
                     "labels": {"authz-dev/external": "true"}},
        "spec": {"ports": ports},
    }
    if ext.namespace == "kube-system" and ext.name == "kube-dns":
        service["spec"]["clusterIP"] = netns.DNS_SERVICE_IP
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{ext.name}-node", "namespace": ext.namespace,
                     "labels": {"kubernetes.io/service-name": ext.name,
                                "endpointslice.kubernetes.io/managed-by": "authz-dev"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [netns.NODE_IP], "conditions": {"ready": True}}],
        "ports": [{"name": p["name"], "port": ext.target, "protocol": p["protocol"]}
                  for p in ports],
    }
    return [service, endpoints]


def corefile(kubeconfig: str, health_port: int, ready_port: int) -> str:
    return "\n".join([
        f".:{DNS_PORT} {{",
        f"    bind {netns.NODE_IP}",
        "    errors",
        f"    health 127.0.0.1:{health_port}",
        f"    ready 127.0.0.1:{ready_port}",
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {",
        f"        kubeconfig {kubeconfig}",
        "        pods insecure",
        "        fallthrough in-addr.arpa ip6.arpa",
        "    }",
        "    cache 5",
        "    loadbalance",
        "}",
        "",
    ])


def metrics_objects(port: int) -> list[dict[str, Any]]:
    """The APIService that makes the API server proxy metrics.k8s.io to metrics-server."""
    return [
        *service_objects(External("kube-system", "metrics-server", 443, port)),
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": METRICS_API},
         "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                  "service": {"name": "metrics-server", "namespace": "kube-system",
                              "port": 443},
                  # metrics-server serves a self-signed certificate of its own.
                  "insecureSkipTLSVerify": True,
                  "groupPriorityMinimum": 100, "versionPriority": 100}},
    ]


def start(state: State, externals: list[External]) -> None:
    """CoreDNS, metrics-server, and the Services for them and for the servers."""
    bins = build.node_binaries()
    if not procs.alive(state.pids.get("coredns")):
        health = procs.sticky_port(state.ports, "coredns-health")
        ready = procs.sticky_port(state.ports, "coredns-ready")
        conf = paths.RUN / "Corefile"
        conf.write_text(corefile(state.kubeconfig, health, ready))
        procs.start(state, "coredns", [str(bins.coredns), "-conf", str(conf)], paths.RUN)
    if not procs.alive(state.pids.get("metrics-server")):
        port = procs.sticky_port(state.ports, "metrics-server")
        kc = state.kubeconfig
        procs.start(state, "metrics-server", [
            str(bins.metrics_server), f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            f"--bind-address={netns.NODE_IP}", f"--secure-port={port}",
            f"--cert-dir={paths.RUN / 'metrics-server'}",
            "--kubelet-insecure-tls", "--kubelet-preferred-address-types=InternalIP",
            "--kubelet-use-node-status-port", "--metric-resolution=10s",
            "--kubelet-request-timeout=5s"], paths.RUN)
    docs: list[dict[str, Any]] = []
    namespaces = sorted({e.namespace for e in externals} | {"kube-system"})
    docs += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
             for n in namespaces]
    docs += service_objects(External("kube-system", "kube-dns", DNS_PORT, DNS_PORT,
                                     ("UDP", "TCP")))
    for ext in externals:
        docs += service_objects(ext)
    docs += metrics_objects(state.ports["metrics-server"])
    cluster.kubectl(state, "apply", "--server-side", "--force-conflicts", "-f", "-",
                    input=yaml.safe_dump_all(docs))
    procs.wait_until("CoreDNS ready", lambda: _http_ok(state.ports["coredns-ready"], "/ready"),
                     30, state.pids["coredns"], paths.RUN / "coredns.log")
    procs.wait_until(f"APIService {METRICS_API} Available", lambda: cluster.kubectl(
        state, "get", "apiservice", METRICS_API, "-o",
        "jsonpath={.status.conditions[?(@.type=='Available')].status}").stdout == "True",
        60, state.pids["metrics-server"], paths.RUN / "metrics-server.log")


def _http_ok(port: int, path: str) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
        return bool(resp.status == 200)


def stop(state: State) -> None:
    for name in ("metrics-server", "coredns"):
        procs.stop(state.pids.pop(name, None))
    state.save()
