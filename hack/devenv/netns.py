"""The network namespace the whole environment lives in.

Everything `hack/up` starts (etcd, the control plane, the node, PostgreSQL, Redis, Kafka, the
operator) and every test runs inside one network namespace that the project creates, so the
host's interfaces, routes, iptables and kernel settings stay exactly as they were: the only
things we change are inside it. It has a loopback and one bridge, `cni0`, whose address is the
node's IP (pods reach the servers there); it has no default route, so nothing leaves it.

Created with `ip netns add` (a bind mount under /run/netns that `hack/down` removes) and
entered with `nsenter --net=...`, never `ip netns exec` (which also makes a private mount
namespace and would hide the node's volume mounts from containerd).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

NAME = "authz-dev"
PATH = Path("/run/netns") / NAME
BRIDGE = "cni0"
NODE_IP = "10.244.0.1"          # the bridge's address: the node's IP, the servers' address
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"    # the `kubernetes` Service's ClusterIP
DNS_SERVICE_IP = "10.96.0.10"   # kube-dns


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, text=True)


def _ns(*argv: str) -> list[str]:
    return ["nsenter", f"--net={PATH}", "--", *argv]


def exists() -> bool:
    return PATH.exists()


def inside() -> bool:
    """True when this process already runs in the environment's namespace."""
    if not exists():
        return False
    return os.stat("/proc/self/ns/net").st_ino == os.stat(PATH).st_ino


def ensure() -> None:
    """Create the namespace with its loopback and bridge (idempotent). Needs root."""
    if not exists():
        _run("ip", "netns", "add", NAME)
    _run(*_ns("ip", "link", "set", "lo", "up"))
    links = subprocess.run(_ns("ip", "-o", "link", "show"), check=True, capture_output=True,
                           text=True).stdout
    if f" {BRIDGE}:" not in links:
        _run(*_ns("ip", "link", "add", BRIDGE, "type", "bridge"))
    addrs = subprocess.run(_ns("ip", "-o", "-4", "addr", "show", "dev", BRIDGE), check=True,
                           capture_output=True, text=True).stdout
    if f" {NODE_IP}/" not in addrs:
        _run(*_ns("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE))
    _run(*_ns("ip", "link", "set", BRIDGE, "up"))
    # Processes of the namespace itself (tests, tools) reach ClusterIPs too: kube-proxy's
    # rules rewrite them, but the kernel first needs a route for the Service range.
    routes = subprocess.run(_ns("ip", "-4", "route", "show", SERVICE_CIDR), check=True,
                            capture_output=True, text=True).stdout
    if not routes.strip():
        _run(*_ns("ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP))
    # Routing between pods and to Services: a setting of this namespace only, never the host's.
    _run(*_ns("sysctl", "-q", "-w", "net.ipv4.ip_forward=1"))


def delete() -> None:
    """Remove the namespace (its interfaces and rules go with it)."""
    if exists():
        subprocess.run(["ip", "netns", "delete", NAME], check=False, capture_output=True)


def reexec_inside(args: list[str]) -> None:
    """Replace this process by `python -m devenv <args>` inside the namespace."""
    if inside():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    argv = _ns(sys.executable, "-m", "devenv", *args)
    os.execvp(argv[0], argv)  # noqa: S606 - our own fixed command
