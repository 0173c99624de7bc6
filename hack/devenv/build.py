"""Builds (once) and finds the binaries the environment runs. Versions come from the pinned
files in hack/tools/; results are cached under ~/.cache/authz-dev keyed by version, never in
the repo."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from devenv import paths

TOOLS = paths.REPO / "hack" / "tools"
K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
K8S_NODE_COMMANDS = ("kubelet", "kube-proxy")


class NodeBinaries(NamedTuple):
    """What a real node runs, besides containerd and runc (Debian packages)."""

    kubelet: Path
    kube_proxy: Path
    coredns: Path
    metrics_server: Path


def _say(msg: str) -> None:
    print(f"[build] {msg}", file=sys.stderr, flush=True)


def _go_required_version(module_dir: Path, module: str) -> str:
    text = (module_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.M)
    if not match:
        raise RuntimeError(f"{module_dir}/go.mod does not require {module}")
    return match.group(1)


def k8s_version() -> str:
    return _go_required_version(TOOLS / "k8s", "k8s.io/kubernetes")


def etcd_version() -> str:
    return _go_required_version(TOOLS / "etcd", "go.etcd.io/etcd/server/v3")


def kwok_version() -> str:
    return _go_required_version(TOOLS / "kwok", "sigs.k8s.io/kwok")


def coredns_version() -> str:
    return _go_required_version(TOOLS / "coredns", "github.com/coredns/coredns")


def metrics_server_version() -> str:
    return _go_required_version(TOOLS / "metrics-server", "sigs.k8s.io/metrics-server")


def kafka_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)<", (TOOLS / "kafka" / "pom.xml").read_text())
    if not match:
        raise RuntimeError("hack/tools/kafka/pom.xml has no kafka.version")
    return match.group(1)


def _go_build(module_dir: Path, out: Path, packages: list[str], ldflags: str = "-s -w") -> None:
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=mod")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _say(f"go build {' '.join(p.rsplit('/', 1)[-1] for p in packages)} -> {out} "
         "(first time: several minutes)")
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    subprocess.run(["go", "build", "-trimpath", "-ldflags", ldflags, "-o", f"{tmp}/", *packages],
                   cwd=module_dir, env=env, check=True)
    for built in tmp.iterdir():
        built.replace(out / built.name)
    tmp.rmdir()
    _say(f"built in {time.monotonic() - started:.0f}s")


def _k8s_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    ldflags = "-s -w"
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        ldflags += (f" -X {pkg}.gitVersion={version} -X {pkg}.gitMajor={major}"
                    f" -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean")
    return ldflags


def _k8s_build(commands: tuple[str, ...], folder: str) -> Path:
    version = k8s_version()
    out = paths.CACHE / f"{folder}-{version}"
    if not all((out / c).exists() for c in commands):
        _go_build(TOOLS / "k8s", out, [f"k8s.io/kubernetes/cmd/{c}" for c in commands],
                  _k8s_ldflags(version))
    return out


def k8s_bin() -> Path:
    return _k8s_build(K8S_COMMANDS, "k8s")


def k8s_node_bin() -> Path:
    """kubelet (unmodified) and kube-proxy, in a folder of their own so that the control
    plane's cache stays valid."""
    return _k8s_build(K8S_NODE_COMMANDS, "k8s-node")


def etcd_bin() -> Path:
    out = paths.CACHE / f"etcd-{etcd_version()}"
    if not (out / "etcd").exists():
        # `go build` names the binary after the last non-version path element: "server".
        _go_build(TOOLS / "etcd", out, ["go.etcd.io/etcd/server/v3"])
        (out / "server").replace(out / "etcd")
    return out / "etcd"


def kwok_bin() -> Path:
    out = paths.CACHE / f"kwok-{kwok_version()}"
    if not (out / "kwok").exists():
        _go_build(TOOLS / "kwok", out, ["sigs.k8s.io/kwok/cmd/kwok"])
    return out / "kwok"


def coredns_bin() -> Path:
    # Keyed by the plugin list too: adding a plugin to main.go must rebuild.
    plugins = hashlib.sha256((TOOLS / "coredns" / "main.go").read_bytes()).hexdigest()[:8]
    out = paths.CACHE / f"coredns-{coredns_version()}-{plugins}"
    if not (out / "coredns").exists():
        # The wrapper's own main package; `go build` names it after the module: "corednsbin".
        _go_build(TOOLS / "coredns", out, ["."])
        (out / "corednsbin").replace(out / "coredns")
    return out / "coredns"


def metrics_server_bin() -> Path:
    version = metrics_server_version()
    out = paths.CACHE / f"metrics-server-{version}"
    if not (out / "metrics-server").exists():
        # As metrics-server's Makefile does: its version is client-go's.
        pkg = "k8s.io/client-go/pkg/version"
        _go_build(TOOLS / "metrics-server", out, ["sigs.k8s.io/metrics-server/cmd/metrics-server"],
                  f"-s -w -X {pkg}.gitVersion={version} -X {pkg}.gitTreeState=clean")
    return out / "metrics-server"


def node_binaries() -> NodeBinaries:
    """Build or reuse what a real node runs; returns the binaries' paths."""
    node = k8s_node_bin()
    return NodeBinaries(kubelet=node / "kubelet", kube_proxy=node / "kube-proxy",
                        coredns=coredns_bin(), metrics_server=metrics_server_bin())


def kwok_stages_dir() -> Path:
    """kwok's own stage definitions, from the module cache (they ship in the module)."""
    gomodcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True,
                                check=True).stdout.strip()
    stage = Path(gomodcache) / f"sigs.k8s.io/kwok@{kwok_version()}" / "kustomize" / "stage"
    if not stage.exists():
        subprocess.run(["go", "mod", "download", f"sigs.k8s.io/kwok@{kwok_version()}"],
                       cwd=TOOLS / "kwok", env=dict(os.environ, GOTOOLCHAIN="local"), check=True)
    return stage


def kafka_libs() -> Path:
    version = kafka_version()
    out = paths.CACHE / f"kafka-{version}" / "libs"
    if (out / f"kafka_2.13-{version}.jar").exists():
        return out
    _say(f"resolving Apache Kafka {version} jars from Maven Central -> {out}")
    tmp = out.with_name("libs.partial")
    subprocess.run(["mvn", "-q", "-B", "-f", str(TOOLS / "kafka" / "pom.xml"),
                    "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies",
                    "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"], check=True)
    tmp.replace(out)
    return out


def all_binaries() -> None:
    """Build or reuse everything; prints what it builds."""
    k8s_bin()
    etcd_bin()
    kwok_bin()
    node_binaries()
    kafka_libs()
