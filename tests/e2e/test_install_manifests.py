"""The manifests as the real API server sees them: a server-side dry-run apply of
`manifests/` and of the namespaced overlay must be accepted whole (schema, RBAC objects,
Deployment, PDB, peering objects), with kubectl 1.36.3 built by hack/up."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from tests.conftest import DevEnv
from tests.unit.install.manifests import (
    MANIFESTS,
    NAMESPACED,
    Obj,
    dump,
    prerequisites,
    render,
    retarget,
)

pytestmark = pytest.mark.cluster

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def kubectl(cluster: DevEnv) -> Kubectl:
    def run(*args: str, stdin: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([cluster.kubectl, f"--kubeconfig={cluster.kubeconfig}", *args],
                             input=stdin, capture_output=True, text=True, timeout=120,
                             check=False)
        if check:
            assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
        return out
    return run


@pytest.fixture(scope="module")
def installed_prerequisites(kubectl: Kubectl) -> list[Obj]:
    """The CRDs (ours and kopf's peering ones) and the operator's namespace, really applied:
    a dry-run cannot create what the rest of a dry-run needs."""
    base = render(MANIFESTS)
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=authz-install",
            "-f", "-", stdin=dump(prerequisites(base)))
    kubectl("wait", "--for=condition=Established", "--timeout=30s",
            "crd/clusterkopfpeerings.kopf.dev", "crd/kopfpeerings.kopf.dev",
            "crd/authorizationservices.rwadurian.io")
    return base


def _dry_run(kubectl: Kubectl, objs: list[Obj]) -> list[str]:
    # --force-conflicts: the environment's own install of these objects may have other
    # managers; acceptance, not ownership, is what this checks.
    out = kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=authz-install",
                  "--force-conflicts", "-f", "-", stdin=dump(objs), check=False)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line.strip()]


def test_base_is_accepted_by_the_api_server(kubectl: Kubectl,
                                            installed_prerequisites: list[Obj]) -> None:
    lines = _dry_run(kubectl, installed_prerequisites)
    assert len(lines) == len(installed_prerequisites)
    assert all("(server dry run)" in line for line in lines), lines


def test_namespaced_overlay_is_accepted_by_the_api_server(
        kubectl: Kubectl, installed_prerequisites: list[Obj], namespace: str) -> None:
    objs = [*prerequisites(render(NAMESPACED)), *retarget(render(NAMESPACED), namespace)]
    lines = _dry_run(kubectl, objs)
    assert any(line.startswith("role.rbac.authorization.k8s.io/authz-operator") for line in lines)
    assert any(line.startswith("kopfpeering.kopf.dev/default") for line in lines)


def test_a_broken_manifest_is_refused(kubectl: Kubectl, installed_prerequisites: list[Obj],
                                      namespace: str) -> None:
    """The dry-run really validates: a Deployment whose selector misses its pods is refused."""
    objs = retarget(render(MANIFESTS), namespace)
    dep = next(o for o in objs if o["kind"] == "Deployment")
    dep["spec"]["selector"]["matchLabels"] = {"app": "something-else"}
    out = kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=dump([dep]),
                  check=False)
    assert out.returncode != 0
    assert "selector" in out.stderr
