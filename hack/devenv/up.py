"""`hack/up`: everything a newcomer needs, idempotent. Builds or reuses the binaries, starts
the servers and the cluster, the pod runner, the stand-ins for other teams' services, the
CRD and the operator, applies the sample with a Secret pointing at the local servers, waits
until the sample is Ready and writes `.local/env.sh`. Parts not built yet are reported as
missing instead of failing the rest."""

from __future__ import annotations

import hashlib
import importlib.util
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


def start_podrunner(st: State) -> None:
    if _fresh(st, "podrunner", code_stamp(paths.REPO / "hack" / "devenv")):
        return
    st.pids["podrunner"] = procs.spawn("podrunner", [sys.executable, "-m", "devenv.podrunner"],
                                       paths.RUN, env=_python_env())
    st.save()


def start_stubs(st: State) -> bool:
    """The referral and statistics stand-ins (other teams' services), when they exist."""
    if importlib.util.find_spec("devenv.stubs") is None:
        _say("MISSING: hack/devenv/stubs.py (referral/statistics stand-ins) - skipped")
        return False
    if not _fresh(st, "stubs", code_stamp(paths.REPO / "hack" / "devenv")):
        port = procs.sticky_port(st.ports, "stubs")
        pid = procs.spawn("stubs", [sys.executable, "-m", "devenv.stubs", "--port", str(port),
                                           "--host", "0.0.0.0"],  # noqa: S104 (our netns)
                          paths.RUN, env=_python_env())
        st.pids["stubs"], st.ports["stubs"] = pid, port
        st.save()
        procs.wait_until("stubs", lambda: procs.port_open(port), 30, pid,
                         paths.RUN / "stubs.log")
    return True


def install_crds(st: State) -> bool:
    crds = sorted((paths.REPO / "crds").glob("*.yaml"))
    if not crds:
        _say("MISSING: crds/*.yaml - the CRD is not written yet; skipped")
        return False
    for crd in crds:
        cluster.kubectl(st, "apply", "--server-side", "--force-conflicts", "-f", str(crd))
    cluster.kubectl(st, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    return True


def start_operator(st: State) -> bool:
    if importlib.util.find_spec("authz_operator.handlers") is None:
        _say("MISSING: authz_operator.handlers - the operator is not written yet; skipped")
        return False
    if not _fresh(st, "operator", code_stamp(paths.REPO / "operator")):
        exe = paths.VENV_BIN / "authz-operator"
        st.pids["operator"] = procs.spawn(
            # Only the sample's namespace: tests run operators of their own in theirs.
            "operator", [str(exe), f"--namespace={SAMPLE_NAMESPACE}", "--liveness=http://"
                         f"127.0.0.1:{_port(st, 'operator-liveness')}/healthz"],
            paths.RUN, env=_python_env())
        st.save()
    return True


def _port(st: State, name: str) -> int:
    port = procs.sticky_port(st.ports, name)
    st.save()
    return port


def sample_objects(st: State) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The sample resource(s) from manifests/samples/, pointed at the local servers, and a
    Secret with local values in place of the example's placeholders."""
    if not st.jwt_secret:
        st.jwt_secret = secrets.token_urlsafe(32)
        st.save()
    db_url = st.database_url.rsplit("/", 1)[0] + f"/{SAMPLE_DATABASE}"
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
                resources.append(_localize(doc, st))
    return resources, secret


def _localize(doc: dict[str, Any], st: State) -> dict[str, Any]:
    spec = doc.setdefault("spec", {})
    doc.setdefault("metadata", {})["namespace"] = SAMPLE_NAMESPACE
    redis_port = st.ports["redis"]
    spec["redis"] = {**spec.get("redis", {}), "host": "127.0.0.1", "port": redis_port}
    spec["kafka"] = {**spec.get("kafka", {}), "brokers": [st.kafka_brokers]}
    if "stubs" in st.ports:
        stub = f"http://127.0.0.1:{st.ports['stubs']}"
        spec["services"] = {**spec.get("services", {}), "referralUrl": stub,
                            "statisticsUrl": stub, "identityUrl": stub}
    return doc


def apply_sample(st: State) -> str | None:
    resources, secret = sample_objects(st)
    if not resources:
        _say("MISSING: manifests/samples/ has no AuthorizationService yet; skipped")
        return None
    import psycopg

    with psycopg.connect(st.database_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (SAMPLE_DATABASE,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{SAMPLE_DATABASE}"')
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SAMPLE_NAMESPACE}}
    docs = [ns, secret, *resources]
    cluster.kubectl(st, "apply", "-f", "-", input=yaml.safe_dump_all(docs))
    name: str = resources[0]["metadata"]["name"]
    return name


def wait_ready(st: State, name: str, timeout: int = 240) -> None:
    # The phase too: after an operator restart the old Ready condition stands while the
    # operator re-checks the migration.
    for condition in ("jsonpath={.status.phase}=Ready", "condition=Ready"):
        cluster.kubectl(st, "wait", "-n", SAMPLE_NAMESPACE, f"--for={condition}",
                        f"--timeout={timeout}s", f"authorizationservice/{name}")


def find_authz_url(st: State, name: str) -> str:
    from devenv import podrunner

    out = cluster.kubectl(st, "get", "pods", "-n", SAMPLE_NAMESPACE, "-l",
                          f"app.kubernetes.io/instance={name}", "-o",
                          "jsonpath={range .items[*]}{.metadata.name}{' '}"
                          "{.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}").stdout
    for line in out.splitlines():
        pod, _, ready = line.partition(" ")
        info = podrunner.endpoint(SAMPLE_NAMESPACE, pod)
        if ready == "True" and info and "port" in info:
            return f"http://127.0.0.1:{info['port']}"
    raise RuntimeError(f"no Ready pod of {name} has a local port yet")


def start_servers(st: State) -> None:
    started = time.monotonic()
    servers.start_postgres(st)
    _say(f"PostgreSQL 15 on 127.0.0.1:{st.ports['postgres']} and {netns.NODE_IP}")
    servers.start_redis(st)
    _say(f"Redis on 127.0.0.1:{st.ports['redis']} and {netns.NODE_IP}")
    servers.start_kafka(st)
    _say(f"Kafka {build.kafka_version()} (KRaft) on {st.kafka_brokers}; pods: "
         f"{servers.KAFKA_POD_LISTENER}")
    st.write_env_sh()
    _say(f"servers ready in {time.monotonic() - started:.1f}s")


def start_cluster(st: State) -> None:
    started = time.monotonic()
    cluster.start(st)
    st.write_env_sh()
    _say(f"Kubernetes {build.k8s_version()} API server on 127.0.0.1:"
         f"{st.ports['kube-apiserver']} ready in {time.monotonic() - started:.1f}s")


def externals(st: State) -> list[addons.External]:
    """The servers under the DNS names the seed gives them, and the other teams' services
    under the short names the sample uses (in the sample's namespace)."""
    out = [addons.External("postgres", "postgres", 5432, st.ports["postgres"]),
           addons.External("redis", "redis-master", 6379, st.ports["redis"]),
           addons.External("kafka", "kafka-0", servers.KAFKA_POD_PORT, servers.KAFKA_POD_PORT)]
    if "stubs" in st.ports:
        out += [addons.External(SAMPLE_NAMESPACE, name, port, st.ports["stubs"])
                for name, port in (("identity-service", 3001), ("referral-service", 3003),
                                   ("statistics-service", 3004))]
    return out


def start_node(st: State) -> None:
    started = time.monotonic()
    built = imagebuild.build_all()
    node.start(st, built.pause.ref)
    node.import_images(st, built)
    addons.start(st, externals(st))
    node.wait_ready(st)
    _say(f"node {node.NAME} Ready (containerd, kubelet, kube-proxy; CoreDNS, metrics-server) "
         f"in {time.monotonic() - started:.1f}s")


def up(st: State) -> None:
    """Builds on the host's network (the registries), then does the rest inside the
    environment's network namespace."""
    t0 = time.monotonic()
    if not netns.inside():
        build.all_binaries()
        imagebuild.build_all()
        netns.ensure()
        netns.reexec_inside(["up"])
    missing: list[str] = []
    start_servers(st)
    start_cluster(st)
    start_podrunner(st)
    _say("pod runner started (runs pods of image authorization-service:* on kwok's nodes)")
    if not start_stubs(st):
        missing.append("referral/statistics stand-ins")
    start_node(st)
    crd_ok = install_crds(st)
    op_ok = crd_ok and start_operator(st)
    if not crd_ok:
        missing.append("CRD")
    if not op_ok:
        missing.append("operator")
    name = apply_sample(st) if crd_ok else None
    if name and op_ok:
        _say(f"waiting for {SAMPLE_NAMESPACE}/{name} to be Ready")
        wait_ready(st, name)
        st.authz_url = find_authz_url(st, name)
        st.save()
    elif crd_ok:
        missing.append("a Ready sample (needs the operator and the sample)")
    st.write_env_sh()
    _say(f"done in {time.monotonic() - t0:.0f}s")
    print(next_steps(st, missing))


def next_steps(st: State, missing: list[str]) -> str:
    lines = ["", "The local environment is up. Next:",
             "  ./hack/shell                  # a shell inside its network namespace, with",
             "  source .local/env.sh          # KUBECONFIG, PATH (kubectl), DATABASE_URL, ...",
             "  kubectl get authorizationservices -A",
             "  ./hack/test                   # the whole suite, reusing this environment",
             "  ./hack/down                   # stop everything"]
    if st.authz_url:
        lines.insert(3, '  curl "$AUTHZ_URL/health"     # the sample service, answering HTTP')
    if missing:
        lines += ["", "Not built yet, so not started: " + ", ".join(missing) + "."]
    lines.append(f"Logs: {paths.RUN}/*.log")
    return "\n".join(lines)
