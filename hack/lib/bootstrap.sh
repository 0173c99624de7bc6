# Sourced by hack/up, hack/down and hack/test: installs what the environment needs from
# package registries (Debian packages, PyPI) and prepares .venv. Prints what it does.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
say() { printf '[bootstrap] %s\n' "$*" >&2; }

need_debs=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_debs+=(postgresql-15)
command -v redis-server >/dev/null || need_debs+=(redis-server)
command -v java >/dev/null || need_debs+=(default-jre-headless)
command -v mvn >/dev/null || need_debs+=(maven)
command -v openssl >/dev/null || need_debs+=(openssl)
# The real node: container runtime, CNI plugins, image builders, the sandbox's init, and the
# network tools that make the environment's namespace.
command -v containerd >/dev/null || need_debs+=(containerd)
command -v runc >/dev/null || need_debs+=(runc)
[ -x /usr/lib/cni/bridge ] || need_debs+=(containernetworking-plugins)
command -v buildah >/dev/null || need_debs+=(buildah)
command -v mmdebstrap >/dev/null || need_debs+=(mmdebstrap)
command -v catatonit >/dev/null || need_debs+=(catatonit)
command -v iptables >/dev/null || need_debs+=(iptables)
command -v ip >/dev/null || need_debs+=(iproute2)
command -v nsenter >/dev/null || need_debs+=(util-linux)
if [ ${#need_debs[@]} -gt 0 ]; then
  say "installing Debian packages: ${need_debs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_debs[@]}" >/dev/null
fi
# The Debian packages start their own servers where an init system lets them; ours run on
# other, free ports, so those are harmless.

# Kubernetes 1.36 needs Go >= 1.26 (Debian's golang-go is older): say so instead of failing
# half-way through a build.
gov=$(go env GOVERSION 2>/dev/null | sed 's/^go//') || gov=""
if [ -z "$gov" ] || [ "$(printf '%s\n1.26\n' "$gov" | sort -V | head -1)" != "1.26" ]; then
  echo "[bootstrap] Go >= 1.26 is needed to build Kubernetes 1.36 (found: ${gov:-none})" >&2
  exit 1
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
  say "installing the project and its dev group into .venv (pip)"
  .venv/bin/python -m pip install -q -U 'pip>=25.1'
  # (setuptools warns about editable installs; nothing to act on)
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q -e . --group dev
  echo "$stamp" > .venv/.installed
fi
export PYTHONPATH="$REPO/hack${PYTHONPATH:+:$PYTHONPATH}"
export GOTOOLCHAIN=local
