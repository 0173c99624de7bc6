"""`hack/up`: everything a newcomer needs, idempotent.

On the host's network: build or reuse the binaries and images (they need the registries),
make the environment's network namespace. Then, inside it: PostgreSQL, Redis, Kafka, the
control plane, the real node with CoreDNS and metrics-server, the stand-ins for other teams'
services, the operator installed from `manifests/` as a user installs it (it runs as a pod of
the image built from Dockerfile.operator), the sample with a Secret of local values; wait until
the sample is Ready and write `.local/env.sh`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from devenv import addons, build, cluster, imagebuild, netns, node, paths, procs, servers
from devenv.state import State

SAMPLE_NAMESPACE = "rwadurian"
SAMPLE_SECRET = "authorization-secrets"
SAMPLE_DATABASE = "authorization"
OPERATOR_NAMESPACE = "authz-system"
# manifests/ plus one setting: the operator leaves the tests' namespaces (t-*) to the
# operators those tests run themselves (docs/development.md).
OPERATOR_INSTALL = paths.REPO / "hack" / "cluster" / "operator"


def _say(msg: str) -> None:
    print(f"[up] {msg}", file=sys.stderr, flush=True)


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.REPO / "hack"),
                                                      env.get("PYTHONPATH")]))
    env["KUBECONFIG"] = str(paths.RUN / "kubeconfig")
    return env


def code_stamp(*folders: Path) -> str:
    """A hash of the Python sources a long-running process was started from."""
    digest = hashlib.sha256()
    for folder in folders:
        for f in sorted(folder.rglob("*.py")):
            digest.update(str(f).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def _fresh(st: State, name: str, stamp: str) -> bool:
    """True when `name` runs the current code; stops it when it runs older code, so that
    `hack/up` after an edit runs what is in the checkout."""
    pid = st.pids.get(name)
    if procs.alive(pid) and st.stamps.get(name) == stamp:
        return True
    if procs.alive(pid):
        _say(f"restarting {name}: its code changed")
        procs.stop(pid)
    st.stamps[name] = stamp
    return False


def start_servers(st: State) -> None:
    started = time.monotonic()
    servers.start_postgres(st)
    _say(f"PostgreSQL 15 on {netns.NODE_IP}:{st.ports['postgres']}")
    servers.start_redis(st)
    _say(f"Redis on {netns.NODE_IP}:{st.ports['redis']}")
    servers.start_kafka(st)
    _say(f"Kafka {build.kafka_version()} (KRaft) on {st.kafka_brokers}; pods also: "
         f"{servers.KAFKA_POD_LISTENER}")
    st.write_env_sh()
    _say(f"servers ready in {time.monotonic() - started:.1f}s")


def start_cluster(st: State) -> None:
    started = time.monotonic()
    cluster.start(st)
    st.write_env_sh()
    _say(f"Kubernetes {build.k8s_version()} API server on 127.0.0.1:"
         f"{st.ports['kube-apiserver']} ready in {time.monotonic() - started:.1f}s")


def start_stubs(st: State) -> None:
    """The referral and statistics stand-ins (other teams' services)."""
    if _fresh(st, "stubs", code_stamp(paths.REPO / "hack" / "devenv")):
        return
    port = procs.sticky_port(st.ports, "stubs")
    procs.start(st, "stubs", [sys.executable, "-m", "devenv.stubs", "--port", str(port),
                              "--host", "0.0.0.0"],  # noqa: S104 - inside our namespace
                paths.RUN, env=_python_env(), ready=lambda: procs.port_open(port))


def externals(st: State) -> list[addons.External]:
    """The servers under the DNS names the seed gives them, and the other teams' services
    under the short names the sample uses (in the sample's namespace)."""
    kafka = servers.KAFKA_POD_PORT
    return [addons.External("postgres", "postgres", 5432, st.ports["postgres"]),
            addons.External("redis", "redis-master", 6379, st.ports["redis"]),
            addons.External("kafka", "kafka-0", kafka, kafka),
            addons.External("kafka", "kafka-1", kafka, kafka),   # the sample names two
            *(addons.External(SAMPLE_NAMESPACE, name, port, st.ports["stubs"])
              for name, port in (("identity-service", 3001), ("referral-service", 3003),
                                 ("statistics-service", 3004)))]


def start_node(st: State) -> imagebuild.ImageSet:
    started = time.monotonic()
    # What the host's step built (no registry in here), even if the tree changed since.
    built = imagebuild.from_state(st.images)
    node.start(st, built.pause.ref)
    node.import_images(st, built)
    addons.start(st, externals(st))
    node.wait_ready(st)
    _say(f"node {node.NAME} Ready (containerd, kubelet, kube-proxy; CoreDNS, metrics-server) "
         f"in {time.monotonic() - started:.1f}s")
    return built


def install_crds(st: State) -> None:
    for crd in sorted((paths.REPO / "crds").glob("*.yaml")):
        cluster.kubectl(st, "apply", "--server-side", "--force-conflicts", "-f", str(crd))
    cluster.kubectl(st, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")


def install_operator(st: State, built: imagebuild.ImageSet) -> None:
    """`kubectl apply -k` of manifests/ (through the one-setting overlay); a new image under
    the same tag restarts its pods."""
    started = time.monotonic()
    # The field manager of an install (tests/e2e dry-run the same objects under it).
    apply = ("apply", "--server-side", "--force-conflicts", "--field-manager=authz-install",
             "-k", str(OPERATOR_INSTALL))
    try:
        cluster.kubectl(st, *apply)
    except RuntimeError as exc:
        # One apply both defines kopf's peering kinds and creates a peering object: the first
        # time the kind is not served yet. Wait for the definitions, then apply again.
        if "no matches for kind" not in str(exc):
            raise
        cluster.kubectl(st, "wait", "--for=condition=Established", "--timeout=60s",
                        "crd/clusterkopfpeerings.kopf.dev", "crd/kopfpeerings.kopf.dev")
        cluster.kubectl(st, *apply)
    if st.stamps.get("operator-image") not in (None, built.operator.ref):
        _say("restarting the operator: its image changed")
        cluster.kubectl(st, "rollout", "restart", "-n", OPERATOR_NAMESPACE,
                        "deployment/authz-operator")
    st.stamps["operator-image"] = built.operator.ref
    st.save()
    cluster.kubectl(st, "rollout", "status", "-n", OPERATOR_NAMESPACE,
                    "deployment/authz-operator", "--timeout=180s")
    _say(f"operator running in the cluster ({OPERATOR_NAMESPACE}, image "
         f"{built.operator.ref}) in {time.monotonic() - started:.1f}s")


def sample_objects(st: State) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The sample resource(s) from manifests/samples/ as they are (their Redis, Kafka and
    other services' names resolve in the cluster), and a Secret with local values in place
    of the example's placeholders."""
    if not st.jwt_secret:
        st.jwt_secret = secrets.token_urlsafe(32)
        st.save()
    db_url = f"postgresql://postgres@postgres.postgres.svc.cluster.local:5432/{SAMPLE_DATABASE}"
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": SAMPLE_SECRET, "namespace": SAMPLE_NAMESPACE},
        "stringData": {"database-url": db_url + "?connection_limit=20&pool_timeout=30",
                       "jwt-secret": st.jwt_secret, "redis-password": ""},
    }
    resources: list[dict[str, Any]] = []
    for f in sorted((paths.REPO / "manifests" / "samples").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc.get("kind") == "AuthorizationService":
                doc.setdefault("metadata", {})["namespace"] = SAMPLE_NAMESPACE
                resources.append(doc)
    return resources, secret


def apply_sample(st: State) -> str:
    resources, secret = sample_objects(st)
    import psycopg

    with psycopg.connect(st.database_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (SAMPLE_DATABASE,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{SAMPLE_DATABASE}"')
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SAMPLE_NAMESPACE}}
    cluster.kubectl(st, "apply", "-f", "-", input=yaml.safe_dump_all([ns, secret, *resources]))
    name: str = resources[0]["metadata"]["name"]
    return name


def wait_ready(st: State, name: str, timeout: int = 240) -> None:
    # The phase too: after an operator restart the old Ready condition stands while the
    # operator re-checks the migration.
    for condition in ("jsonpath={.status.phase}=Ready", "condition=Ready"):
        cluster.kubectl(st, "wait", "-n", SAMPLE_NAMESPACE, f"--for={condition}",
                        f"--timeout={timeout}s", f"authorizationservice/{name}")


def find_authz_url(st: State, name: str) -> str:
    """The sample's Service (its ClusterIP: reachable from inside the namespace)."""
    out = cluster.kubectl(st, "get", "service", name, "-n", SAMPLE_NAMESPACE, "-o",
                          "jsonpath={.spec.clusterIP} {.spec.ports[0].port}").stdout
    ip, port = out.split()
    return f"http://{ip}:{port}"


def up(st: State) -> None:
    """Builds on the host's network (the registries), then does the rest inside the
    environment's network namespace."""
    t0 = time.monotonic()
    if not netns.inside():
        build.all_binaries()
        st.images = imagebuild.to_state(imagebuild.build_all())
        st.save()
        netns.ensure()
        netns.reexec_inside(["up"])
    start_servers(st)
    start_cluster(st)
    start_stubs(st)
    built = start_node(st)
    install_crds(st)
    install_operator(st, built)
    name = apply_sample(st)
    _say(f"waiting for {SAMPLE_NAMESPACE}/{name} to be Ready")
    wait_ready(st, name)
    st.authz_url = find_authz_url(st, name)
    st.save()
    st.write_env_sh()
    _say(f"done in {time.monotonic() - t0:.0f}s")
    print(next_steps(st))


def next_steps(st: State) -> str:
    return "\n".join([
        "", "The local environment is up, inside the network namespace authz-dev. Next:",
        "  ./hack/shell                  # a shell in it, with .local/env.sh sourced:",
        "    kubectl get authorizationservices -A",
        '    curl "$AUTHZ_URL/health"   # the sample service, answering HTTP',
        "    kubectl top pods -n rwadurian",
        "  ./hack/test                   # the whole suite, reusing this environment",
        "  ./hack/down                   # stop everything",
        f"Logs: {paths.RUN}/*.log (pods: ./hack/shell kubectl logs ...)"])
