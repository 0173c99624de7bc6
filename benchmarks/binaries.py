"""The benchmark's Go tools, built once from the pinned wrapper modules in hack/tools/ and
cached under ~/.cache/authz-dev/<name>-<version>/ like the environment's other binaries.
`python -m benchmarks.binaries` builds both and prints their paths."""

from __future__ import annotations

from pathlib import Path

from devenv import build, paths

OPA_MODULE = "github.com/open-policy-agent/opa"
VEGETA_MODULE = "github.com/tsenart/vegeta/v12"


def opa_version() -> str:
    return build._go_required_version(build.TOOLS / "opa", OPA_MODULE)


def vegeta_version() -> str:
    return build._go_required_version(build.TOOLS / "vegeta", VEGETA_MODULE)


def _tool(name: str, module: str, version: str) -> Path:
    """`go build` names each binary after its module (`opa`, `vegeta`), so `name`."""
    out = paths.CACHE / f"{name}-{version}"
    if not (out / name).exists():
        build._go_build(build.TOOLS / name, out, [module])
    return out / name


def opa_bin() -> Path:
    return _tool("opa", OPA_MODULE, opa_version())


def vegeta_bin() -> Path:
    return _tool("vegeta", VEGETA_MODULE, vegeta_version())


if __name__ == "__main__":
    for path in (opa_bin(), vegeta_bin()):
        print(path)
