"""Rendering manifests/ with the kubectl that hack/up built (its kustomize is the one users
get with `kubectl apply -k`), and reading RBAC rules as comparable sets."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from devenv import state as devstate

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "manifests"
NAMESPACED = MANIFESTS / "overlays" / "namespaced"
MONITORING = MANIFESTS / "monitoring"

Obj = dict[str, Any]
Rule = tuple[str, str, str]   # (apiGroup, resource, verb)


def kubectl() -> str:
    """The built kubectl (hack/up), else one on PATH; fails clearly when there is none."""
    built = devstate.load().kubectl_dir
    if built and (Path(built) / "kubectl").exists():
        return str(Path(built) / "kubectl")
    found = shutil.which("kubectl")
    assert found, "no kubectl: run ./hack/up (it builds kubectl 1.36.3)"
    return found


def render(path: Path | str) -> list[Obj]:
    out = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True,
                         check=False, timeout=60, env={**os.environ, "KUBECONFIG": "/dev/null"})
    assert out.returncode == 0, f"kubectl kustomize {path} failed: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(objs: Iterable[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind
            and (name is None or o["metadata"]["name"] == name)]


def one(objs: Iterable[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def rules(role: Mapping[str, Any]) -> set[Rule]:
    """A Role's or ClusterRole's rules flattened to (group, resource, verb) triples."""
    out: set[Rule] = set()
    for rule in role.get("rules") or []:
        assert not rule.get("resourceNames"), "no rule is limited by name here"
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    out.add((group, resource, verb))
    return out


# ---------------------------------------------------------------------------------------------
# for the e2e tests: put the shipped manifests into a test's own namespace


PREREQUISITE_KINDS = ("Namespace", "CustomResourceDefinition")


def prerequisites(objs: Iterable[Obj]) -> list[Obj]:
    """What must exist before a server-side dry-run of the rest can succeed."""
    return [o for o in objs if o["kind"] in PREREQUISITE_KINDS]


def retarget(objs: Iterable[Obj], namespace: str) -> list[Obj]:
    """The manifests as one test installs them, without disturbing others: every namespaced
    object (the operator's and the watched namespace's) in `namespace`, cluster-wide RBAC
    renamed with the namespace as suffix, subjects pointing at the moved ServiceAccount; the
    CRDs, Namespace and cluster-wide peering object (shared by everyone) left out."""
    out: list[Obj] = []
    for src in objs:
        obj = yaml.safe_load(yaml.safe_dump(src))   # a deep copy
        kind, meta = obj["kind"], obj["metadata"]
        if kind in PREREQUISITE_KINDS or kind == "ClusterKopfPeering":
            continue
        if "namespace" in meta:
            meta["namespace"] = namespace
        if kind in ("ClusterRole", "ClusterRoleBinding"):
            meta["name"] = f"{meta['name']}-{namespace}"
        if kind == "ClusterRoleBinding":
            obj["roleRef"]["name"] = f"{obj['roleRef']['name']}-{namespace}"
        for subject in obj.get("subjects") or []:
            subject["namespace"] = namespace
        if kind == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                for env in container.get("env") or []:
                    if env["name"] == "WATCH_NAMESPACES" and env["value"]:
                        env["value"] = namespace
        out.append(obj)
    return out


def dump(objs: Iterable[Obj]) -> str:
    return yaml.safe_dump_all(list(objs), sort_keys=False)
