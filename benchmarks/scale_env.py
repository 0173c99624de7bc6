"""What the operator scale benchmark depends on, checked and printed with its numbers (the
environment's state, the in-cluster operator's namespaces, the installed CRD, versions), and
its plot."""

from __future__ import annotations

import contextlib
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from authz_operator.spec import API_VERSION, PLURAL
from benchmarks.scale_model import SizeResult
from devenv import build
from devenv import state as devstate


class Cluster(Protocol):
    """What these checks ask of the benchmark's cluster client."""

    def call(self, method: str, path: str, body: Any = None,
             content_type: str = "application/json") -> dict[str, Any]: ...
    def run(self, *args: str, stdin: str | None = None, timeout: float = 1800) -> str: ...



def load_state(run_dir: Path) -> devstate.State:
    """The environment's state from `run_dir` (by default this checkout's .local/run)."""
    raw = json.loads((run_dir / "state.json").read_text())
    known = set(devstate.State.__dataclass_fields__)
    return devstate.State(**{k: v for k, v in raw.items() if k in known})


def cmdline(pid: int | None) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def flag_of(pid: int | None, flag: str) -> str:
    """A process's command-line flag value (how the running control plane was started)."""
    args = cmdline(pid)
    if not args:
        return "?"
    return next((a.split("=", 1)[1] for a in args if a.startswith(f"{flag}=")), "default")


def in_cluster_operator_serves(bench: Cluster, namespace: str) -> bool:
    """Whether the operator installed by hack/up would also serve `namespace` (its
    WATCH_NAMESPACES pattern): then two operators act on side A."""
    from kopf._cogs.structs.references import match_namespace

    with contextlib.suppress(RuntimeError):
        dep = bench.call("GET", "/apis/apps/v1/namespaces/authz-system/deployments/"
                                "authz-operator")
        for container in dep["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value", "") for e in container.get("env") or []}
            pattern = env.get("WATCH_NAMESPACES", "")
            return not pattern or match_namespace(namespace, pattern)  # type: ignore[arg-type]
    return False


def crd_places_pods(bench: Cluster) -> bool:
    """Whether the installed CRD knows spec.tolerations (an older one prunes the placement,
    and the pods would go to the real node)."""
    crd = bench.call("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                            f"{PLURAL}.{API_VERSION.split('/')[0]}")
    [version] = crd["spec"]["versions"]
    return "tolerations" in version["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]


def versions(bench: Cluster) -> str:
    from importlib.metadata import version

    server = json.loads(bench.run("version", "-o", "json")).get("serverVersion", {})
    return (f"Python {platform.python_version()}, kopf {version('kopf')}, Kubernetes "
            f"{server.get('gitVersion', '?')}, kwok {build.kwok_version()}")


GOAL_MIB = 300e6 / 2**20   # issue 11's 300 MB, on the plot's MiB axis


def plot(results: Sequence[SizeResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r.n for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(ns, [r.a_ready for r in results], "o-", label="operator: apply -> all Ready")
    left.plot(ns, [r.b_ready for r in results], "s--", label="kubectl apply of the children")
    left.set(xscale="log", yscale="log", xlabel="resources", ylabel="seconds",
             title="time to converge")
    left.legend()
    right.plot(ns, [r.rss_peak for r in results], "o-", label="peak")
    right.plot(ns, [r.rss_end for r in results], "s--", label="end")
    right.axhline(GOAL_MIB, color="grey", linestyle=":", label="goal 300 MB (286 MiB)")
    right.set(xscale="log", xlabel="resources", ylabel="MiB", title="operator RSS")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
