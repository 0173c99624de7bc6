"""The real node: containerd + runc (Debian), kubelet and kube-proxy (built from the pinned
Kubernetes module), CNI bridge networking, inside the environment's network namespace.

The node's processes share one private mount namespace and one PID namespace, held by a
`catatonit -P` (the node's PID 1) started with `unshare`:

- In that mount namespace `/run`, `/var/lib` and `/var/log` are the node's own (two tmpfs and
  a bind mount of `.local/run/node/log`), so what kubelet, containerd and the CNI plugins write
  there (`/run/containerd`, `/var/lib/kubelet`, `/var/lib/cni`, `/var/log/pods`, ...) never
  lands on the host, and every mount they make (volumes, overlay snapshots, network
  namespaces) disappears with the namespace, even after a SIGKILL.
- kubelet would write six kernel settings (`setupKernelTunables`); the host's must not change,
  so in the node's mount namespace those files under /proc/sys are bind mounts of files that
  already hold the values kubelet wants: it reads them, finds nothing to do.
- Stopping PID 1 makes the kernel end every process of the node (shims and containers too).

Pure parts (the configurations) are functions of their inputs and unit-tested.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from devenv import build, cluster, imagebuild, netns, paths, procs
from devenv.state import State

NAME = "authz-node"
CLUSTER_DOMAIN = "cluster.local"
# kubelet's setupKernelTunables (pkg/kubelet/cm/container_manager_linux.go): what it would
# write; presented to it through bind mounts so the host keeps its own values.
KERNEL_TUNABLES = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
CGROUP_ROOT = "authz-dev"   # every cgroup of the node lives under this one (cgroup v1)
CGROUP_FS = Path("/sys/fs/cgroup")
CNI_BIN = Path("/usr/lib/cni")
# Seconds for containerd to answer: it first cleans up what the last run left (_answers).
CONTAINERD_START = 120


def base() -> Path:
    return paths.RUN / "node"


# -- configurations (pure) -------------------------------------------------------------------

def containerd_config(root: Path, sandbox_image: str) -> str:
    """containerd 1.6's config: every path under `root`, CRI with our CNI config, runc."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join([
        "version = 2",
        f'root = "{root / "root"}"',
        f'state = "{root / "state"}"',
        'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", '
        '"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", '
        '"io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]',
        "[grpc]",
        f'  address = "{root / "containerd.sock"}"',
        "[debug]",
        '  level = "warn"',
        '[plugins."io.containerd.internal.v1.opt"]',
        f'  path = "{root / "opt"}"',
        f"[{cri}]",
        f'  sandbox_image = "{sandbox_image}"',
        # This VM lacks CAP_SYS_RESOURCE: without it every sandbox fails in runc create.
        "  restrict_oom_score_adj = true",
        "  netns_mounts_under_state_dir = true",
        f"[{cri}.cni]",
        f'  bin_dir = "{CNI_BIN}"',
        f'  conf_dir = "{root / "cni"}"',
        f"[{cri}.containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        f"[{cri}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]",
        f'  Root = "{root / "runc"}"',
        "  SystemdCgroup = false",
        "",
    ])


def cni_config() -> dict[str, Any]:
    """One bridge (`cni0`, the node's IP as gateway) with host-local addresses for pods."""
    return {
        "cniVersion": "0.4.0",
        "name": "authz-dev",
        "plugins": [
            {"type": "bridge", "bridge": netns.BRIDGE, "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{
                 "subnet": netns.POD_CIDR, "gateway": netns.NODE_IP,
                 "rangeStart": netns.POD_CIDR.replace("0/24", "10")}]],
                 "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(ca: Path, sock: Path, port: int, healthz_port: int,
                   resolv_conf: Path, pod_logs: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": netns.NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{sock}",
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": True,
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "enforceNodeAllocatable": ["pods"],
        # The host counts as cgroup v1 (hybrid); kubelet 1.35+ refuses that by default.
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDNS": [netns.DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(resolv_conf),
        "podLogsDir": str(pod_logs),
        "serializeImagePulls": False,
        "registerNode": True,
        "maxPods": 110,
        # A dev machine's disk and memory are shared with everything else: evict late, never
        # garbage-collect the imported images (they cannot be pulled again).
        "evictionHard": {"memory.available": "200Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "protectKernelDefaults": False,
    }


def kube_proxy_config(kubeconfig: str, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig},
        "mode": "iptables",
        "clusterCIDR": netns.POD_CIDR,
        "hostnameOverride": NAME,
        "bindAddress": netns.NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        # No br_netfilter module here: masquerading every Service connection makes replies
        # come back through the namespace's stack, so pod -> Service -> pod on the same
        # bridge works.
        "iptables": {"masqueradeAll": True, "syncPeriod": "10s", "minSyncPeriod": "0s"},
        # Leave the host's conntrack settings alone (0: do not change them).
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }


def holder_script(node: Path, tunables: dict[str, str]) -> str:
    """What PID 1 of the node's namespaces runs: the node's own /run, /var/lib and /var/log,
    kubelet's kernel settings presented as files, then `catatonit -P` (reaps, waits)."""
    lines = ["set -e",
             "mount -t tmpfs -o mode=755 node-run /run",
             "mount -t tmpfs -o mode=755 node-var-lib /var/lib",
             f"mount --bind {shlex.quote(str(node / 'log'))} /var/log"]
    for key, value in sorted(tunables.items()):
        f = node / "sysctl" / key.replace("/", ".")
        lines.append(f"printf '%s\\n' {shlex.quote(value)} > {shlex.quote(str(f))}")
        lines.append(f"mount --bind {shlex.quote(str(f))} /proc/sys/{key}")
    lines.append("exec catatonit -P")
    return "\n".join(lines) + "\n"


# -- processes ---------------------------------------------------------------------------------

def _holder_pid(state: State) -> int | None:
    """PID (on the host) of the node's PID 1, the child of the recorded `unshare`."""
    parent = state.pids.get("node")
    if not procs.alive(parent):
        return None
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _in_node(holder: int, argv: list[str]) -> list[str]:
    return ["nsenter", f"--target={holder}", "--mount", "--pid", "--net", "--", *argv]


def _cgroups() -> None:
    """The node's cgroup root in every v1 controller (kubelet checks that it exists)."""
    for ctrl in ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
                 "hugetlb", "systemd"):
        top = CGROUP_FS / ctrl
        if not top.is_dir():
            continue
        path = top / CGROUP_ROOT
        path.mkdir(exist_ok=True)
        if ctrl == "cpuset":   # a new cpuset starts empty: give it the parent's CPUs and memory
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not (path / f).read_text().strip():
                    (path / f).write_text((top / f).read_text())


def remove_cgroups() -> None:
    """Remove the node's (empty, once its processes are gone) cgroups, deepest first."""
    for ctrl in CGROUP_FS.iterdir():
        root = ctrl / CGROUP_ROOT
        if not root.is_dir():
            continue
        for d in sorted((p for p in root.rglob("*") if p.is_dir()),
                        key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def start(state: State, sandbox_image: str) -> None:
    """Start (what is not running of) the node: holder, containerd, kubelet, kube-proxy."""
    node = base()
    bins = build.k8s_node_bin()
    for sub in ("log", "sysctl", "containerd/cni"):
        (node / sub).mkdir(parents=True, exist_ok=True)
    if _holder_pid(state) is None:
        for name in ("kube-proxy", "kubelet", "containerd"):
            procs.stop(state.pids.pop(name, None))
        script = _write(node / "holder.sh", holder_script(node, KERNEL_TUNABLES))
        procs.start(state, "node", [
            "unshare", "--pid", "--fork", "--mount", "--propagation", "private", "--mount-proc",
            "sh", str(script)], paths.RUN, ready=lambda: _holder_pid(state) is not None,
            timeout=10)
    holder = _holder_pid(state)
    assert holder is not None
    _cgroups()

    ctrd = node / "containerd"
    sock = ctrd / "containerd.sock"
    if not procs.alive(state.pids.get("containerd")):
        config = _write(ctrd / "config.toml", containerd_config(ctrd, sandbox_image))
        _write(ctrd / "cni" / "10-authz-dev.conflist", json.dumps(cni_config(), indent=2))
        procs.start(state, "containerd", _in_node(holder, [
            shutil.which("containerd") or "containerd", "--config", str(config)]), paths.RUN,
            ready=lambda: _answers(holder, sock), timeout=CONTAINERD_START)

    if not procs.alive(state.pids.get("kubelet")):
        port = procs.sticky_port(state.ports, "kubelet")
        healthz = procs.sticky_port(state.ports, "kubelet-healthz")
        resolv = _write(node / "resolv.conf", "")   # pods get cluster DNS only: no upstream
        config = _write(node / "kubelet.yaml", yaml.safe_dump(kubelet_config(
            paths.RUN / "pki" / "ca.crt", sock, port, healthz, resolv, node / "pod-logs")))
        procs.start(state, "kubelet", _in_node(holder, [
            str(bins / "kubelet"), f"--config={config}", f"--kubeconfig={state.kubeconfig}",
            f"--hostname-override={NAME}", f"--node-ip={netns.NODE_IP}", "--v=1"]), paths.RUN)

    if not procs.alive(state.pids.get("kube-proxy")):
        healthz = procs.sticky_port(state.ports, "kube-proxy-healthz")
        metrics = procs.sticky_port(state.ports, "kube-proxy-metrics")
        config = _write(node / "kube-proxy.yaml", yaml.safe_dump(
            kube_proxy_config(state.kubeconfig, healthz, metrics)))
        procs.start(state, "kube-proxy", _in_node(holder, [
            str(bins / "kube-proxy"), f"--config={config}", "--v=1"]), paths.RUN)


def _answers(holder: int, sock: Path) -> bool:
    """Whether containerd answers on `sock`. Not whether the socket file exists: the file of
    the last run stays, and a containerd that first cleans up the last run's hundreds of
    dead containers answers only seconds after it started (`./hack/up` failed on it)."""
    try:
        answer = subprocess.run(_ctr_argv(holder, sock, "version"), capture_output=True,
                                check=False, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return answer.returncode == 0


def ctr(state: State, *args: str) -> str:
    """`ctr` against the node's containerd, in the node's namespaces."""
    holder = _holder_pid(state)
    assert holder is not None, "the node is not running"
    sock = base() / "containerd" / "containerd.sock"
    return procs.run(_ctr_argv(holder, sock, "--namespace=k8s.io", *args)).stdout


def _ctr_argv(holder: int, sock: Path, *args: str) -> list[str]:
    return _in_node(holder, ["ctr", f"--address={sock}", *args])


def stop(state: State) -> None:
    """Stop the node: its PID 1 takes every process of the node with it."""
    for name in ("kube-proxy", "kubelet", "containerd"):
        procs.stop(state.pids.pop(name, None))
    procs.stop(state.pids.pop("node", None))
    remove_cgroups()
    state.save()


def import_images(state: State, built: imagebuild.ImageSet) -> None:
    """Import each OCI archive once (by its ref), then point every name pods use at it."""
    present = set(ctr(state, "images", "ls", "-q").split())
    archives = {b.ref: b.archive for b in (built.pause, built.service, built.operator,
                                           *built.tags.values())}
    for ref, archive in sorted(archives.items()):
        if ref not in present:
            ctr(state, "images", "import", str(archive))
    for name, image in sorted(built.tags.items()):
        ctr(state, "images", "tag", "--force", image.ref, name)


def _node_ready(state: State) -> bool:
    out = cluster.kubectl(state, "get", "node", NAME, "-o",
                          "jsonpath={.status.conditions[?(@.type=='Ready')].status}").stdout
    return bool(out.strip() == "True")


def wait_ready(state: State, timeout: float = 90) -> None:
    procs.wait_until(f"node {NAME} Ready", lambda: _node_ready(state), timeout,
                     state.pids.get("kubelet"), paths.RUN / "kubelet.log")
