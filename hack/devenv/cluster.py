"""A real Kubernetes control plane inside the environment's network namespace: etcd,
kube-apiserver (RBAC and Pod Security admission on), kube-controller-manager, kube-scheduler,
and kwok for fake nodes (tainted: for scale tests only). Pods run on the real node
(`devenv.node`)."""

from __future__ import annotations

import json
import secrets
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from devenv import build, netns, paths, procs
from devenv.state import State

FAKE_NODES = ("kwok-node-0", "kwok-node-1")
# kwok's fake nodes serve scale tests only: nothing lands there unless it tolerates this.
FAKE_NODE_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
ON_FAKE_NODES = {"tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                 "nodeSelector": {"type": "kwok"}}


# The API server is reached on loopback (tools and tests), on the node's IP (kubelet, the
# servers' clients) and through the `kubernetes` Service (pods).
API_SANS = ("IP:127.0.0.1,IP:10.244.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
            "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
            "DNS:kubernetes.default.svc.cluster.local")


def _cert(pki: Path, name: str, subject: str, ca: str = "ca", ext: str | None = None) -> None:
    """A key and a certificate signed by `ca`, with optional x509 extensions."""
    procs.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
               str(pki / f"{name}.key"), "-out", str(pki / f"{name}.csr"), "-subj", subject])
    args = ["openssl", "x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA",
            str(pki / f"{ca}.crt"), "-CAkey", str(pki / f"{ca}.key"), "-CAcreateserial",
            "-days", "3650", "-out", str(pki / f"{name}.crt")]
    if ext is not None:
        (pki / f"{name}.ext").write_text(ext + "\n")
        args += ["-extfile", str(pki / f"{name}.ext")]
    procs.run(args)


def _pki(pki: Path) -> None:
    """A CA and the API server's serving certificate; a client certificate the API server
    shows kubelets; a front-proxy CA and client for the aggregation layer (metrics-server);
    the service-account signing key. Made again when the SANs they were made for changed."""
    marker = pki / "sans"
    if (pki / "apiserver.crt").exists() and marker.exists() and marker.read_text() == API_SANS:
        return
    pki.mkdir(parents=True, exist_ok=True)
    for ca, cn in (("ca", "authz-dev-ca"), ("front-proxy-ca", "authz-dev-front-proxy-ca")):
        procs.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                   "-keyout", str(pki / f"{ca}.key"), "-out", str(pki / f"{ca}.crt"),
                   "-subj", f"/CN={cn}"])
    _cert(pki, "apiserver", "/CN=kube-apiserver", ext=f"subjectAltName={API_SANS}")
    _cert(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client")
    _cert(pki, "front-proxy-client", "/CN=front-proxy-client", ca="front-proxy-ca")
    procs.run(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"])
    procs.run(["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out",
               str(pki / "sa.pub")])
    marker.write_text(API_SANS)


def _kubeconfig(path: Path, port: int, token: str, ca: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": f"https://127.0.0.1:{port}", "certificate-authority": str(ca)}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))


def _healthy(url: str, ca: Path | None = None, token: str | None = None) -> bool:
    """GET `url` over TLS: verified with `ca` and a bearer token for the API server; unverified
    for the controllers' self-signed health endpoints (loopback only)."""
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback https only
    with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:  # noqa: S310
        return bool(resp.status == 200)


# ---------------------------------------------------------------------------------------------
# kwok: a migration Job's pod on a fake node ends the way `authz-service migrate up` ends

# The operator learns a migration's result from the migrate container's termination message
# (docs/service.md, "Termination message"); kwok's fake pods run nothing and write none. This
# stage finishes an up-migration Job's pod with the message the real command writes on a
# fresh database (every migration of this checkout applied), so on kwok the operator reads
# the same contract as on the real node, with no special case in the operator. kwok's own
# pod-complete stage keeps every other Job's pod (down-migrations included: the operator
# takes their schema from the Job's `--to`, not the message).
MIGRATE_CONTAINER = "migrate"                 # authz_operator.resources.MIGRATE_CONTAINER
MIGRATION_LABEL = "rwadurian.io/migration"    # authz_operator.resources.LABEL_MIGRATION
_MIGRATION_KEY = f'.metadata.labels["{MIGRATION_LABEL}"]'
MIGRATIONS = paths.REPO / "migrations"


def migrate_up_message(migrations: Path = MIGRATIONS) -> str:
    """What `authz-service migrate up` writes as its termination message when it applied
    every migration in `migrations` (`NNNN_name.up.sql` files) to an empty database."""
    versions = sorted({f.name[:4] for f in migrations.glob("[0-9][0-9][0-9][0-9]_*.up.sql")})
    return json.dumps({"schemaVersion": versions[-1] if versions else "0000",
                       "applied": versions})


def migrate_up_stage(pod_complete: dict[str, Any], message: str) -> dict[str, Any]:
    """kwok's pod-complete stage narrowed to our up-migration Jobs' pods, whose migrate
    container ends with `message` (Completed, exit 0, as the real one)."""
    if "`" in message:
        raise ValueError("the message goes into a Go raw string: no backquotes")
    selector = json.loads(json.dumps(pod_complete["spec"]["selector"]))
    selector["matchExpressions"].append(
        {"key": _MIGRATION_KEY, "operator": "In", "values": ["up"]})
    template = "\n".join([
        "{{ $now := Now }}",
        "containerStatuses:",
        "{{ range $index, $item := .spec.containers }}",
        "- image: {{ $item.image | Quote }}",
        "  name: {{ $item.name | Quote }}",
        "  ready: false",
        "  restartCount: 0",
        "  started: false",
        "  state:",
        "    terminated:",
        "      exitCode: 0",
        "      finishedAt: {{ $now | Quote }}",
        "      reason: Completed",
        "      startedAt: {{ $now | Quote }}",
        f'      {{{{ if eq $item.name "{MIGRATE_CONTAINER}" }}}}'
        f"message: {{{{ `{message}` | Quote }}}}{{{{ end }}}}",
        "{{ end }}",
        "phase: Succeeded",
        ""])
    return {"apiVersion": pod_complete["apiVersion"], "kind": "Stage",
            "metadata": {"name": "authz-migrate-up-complete"},
            "spec": {"resourceRef": pod_complete["spec"]["resourceRef"], "selector": selector,
                     "next": {"statusTemplate": template}}}


def other_jobs_complete_stage(pod_complete: dict[str, Any]) -> dict[str, Any]:
    """kwok's pod-complete stage for every Job's pod but ours above (two stages matching
    one pod would be picked at random)."""
    stage: dict[str, Any] = json.loads(json.dumps(pod_complete))
    stage["spec"]["selector"]["matchExpressions"].append(
        {"key": _MIGRATION_KEY, "operator": "NotIn", "values": ["up"]})
    return stage


def stage_yaml(stage: dict[str, Any]) -> str:
    """A stage as YAML, its templates as literal blocks (readable in .local/run)."""

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value,
                                       style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump(stage, Dumper=Dumper, sort_keys=False)


def _kwok_stages(run: Path) -> list[Path]:
    """kwok's standard stages: nodes Ready with leases; pods Running, Jobs completed (our
    up-migration Jobs with the migrate command's termination message)."""
    src = build.kwok_stages_dir()
    out = run / "kwok-stages"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for rel in ("node/fast/node-initialize.yaml",
                "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
                "pod/fast/pod-ready.yaml", "pod/fast/pod-delete.yaml"):
        target = out / Path(rel).name
        target.write_text((src / rel).read_text())
        files.append(target)
    pod_complete = yaml.safe_load((src / "pod/fast/pod-complete.yaml").read_text())
    for name, stage in (("pod-complete.yaml", other_jobs_complete_stage(pod_complete)),
                        ("pod-migrate-up-complete.yaml",
                         migrate_up_stage(pod_complete, migrate_up_message()))):
        target = out / name
        target.write_text(stage_yaml(stage))
        files.append(target)
    return files


# ---------------------------------------------------------------------------------------------
# the API server's audit log

AUDIT_POLICY = "audit-policy.yaml"
AUDIT_DIR = "audit"
AUDIT_LOG = "audit.log"   # JSON lines; rotated files sit beside it (audit-<time>.log)
AUDIT_MAX_MB, AUDIT_BACKUPS = 100, 5   # at most 600 MB on disk


def audit_policy() -> dict[str, Any]:
    """What the API server records (first matching rule wins), at Metadata level (who, verb,
    resource, namespace, name, response code, timestamps; never a body), a request when its
    response completes (a watch also when it starts):
    - every request of a ServiceAccount, reads and watches included: operators run as one
      (in the cluster, in the RBAC tests, in the scale benchmark), and the benchmark counts
      their requests by user, verb and resource (benchmarks/operator_scale.py);
    - nothing for heartbeats and chatter: leases, events, node status, the API server's own
      loopback client, health and discovery endpoints;
    - nothing for other reads (the admin token that the controllers, the kubelet, kwok and
      the tests use reads all the time);
    - every other write, so any change can be traced to who made it.
    """
    return {
        "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
            {"level": "None", "users": ["system:apiserver"]},
            {"level": "None", "resources": [
                {"group": "coordination.k8s.io", "resources": ["leases"]},
                {"group": "", "resources": ["events", "nodes", "nodes/status"]},
                {"group": "events.k8s.io", "resources": ["events"]}]},
            {"level": "None", "nonResourceURLs": [
                "/healthz*", "/livez*", "/readyz*", "/version", "/metrics", "/openapi/*",
                "/api", "/api/*", "/apis", "/apis/*"]},
            {"level": "None", "verbs": ["get", "list", "watch"]},
            {"level": "Metadata"},
        ],
    }


def audit_args(run: Path) -> list[str]:
    """The API server's flags for `audit_policy`, logging JSON lines under `run`/audit,
    rotated by size so the log cannot fill the disk."""
    policy = run / AUDIT_POLICY
    (run / AUDIT_DIR).mkdir(parents=True, exist_ok=True)
    policy.write_text(yaml.safe_dump(audit_policy(), sort_keys=False))
    return [f"--audit-policy-file={policy}", f"--audit-log-path={run / AUDIT_DIR / AUDIT_LOG}",
            "--audit-log-format=json", f"--audit-log-maxsize={AUDIT_MAX_MB}",
            f"--audit-log-maxbackup={AUDIT_BACKUPS}"]


# The controllers' client rate limits. The defaults (controller-manager 20 requests/s with
# bursts of 30, scheduler 50/100) are made for a shared production API server; at 1,000
# resources with two pods and a Job each (3,000 pods to create, bind and track, plus
# ReplicaSets, EndpointSlices and status updates) they alone would take minutes, for kubectl
# applies and operator alike. Both talk as the admin (exempt from priority and fairness), so
# the API server's own capacity on this machine is then what both sides wait on.
CONTROLLER_QPS, CONTROLLER_BURST = 500, 1000


def start(state: State) -> None:
    """etcd, the API server, controller-manager, scheduler, kwok, in that order (each only when
    it is not running). Longer than 60 lines because the API server's flags are one list that
    reads best whole."""
    run = paths.RUN
    bins = build.k8s_bin()
    etcd = build.etcd_bin()
    kwok = build.kwok_bin()
    pki = run / "pki"
    _pki(pki)
    log = run

    if not procs.alive(state.pids.get("etcd")):
        client = procs.sticky_port(state.ports, "etcd")
        peer = procs.sticky_port(state.ports, "etcd-peer")
        procs.start(state, "etcd", [
            str(etcd), "--name=default", f"--data-dir={run / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync", "--quota-backend-bytes=4294967296",
            "--listen-metrics-urls=", "--log-level=warn"], log,
            ready=lambda: procs.port_open(client))

    token_file = pki / "tokens.csv"
    if not token_file.exists():
        token_file.write_text(f'{secrets.token_hex(16)},admin,admin,"system:masters"\n')
    token = token_file.read_text().split(",", 1)[0]
    kubeconfig = run / "kubeconfig"

    if not procs.alive(state.pids.get("kube-apiserver")):
        port = procs.sticky_port(state.ports, "kube-apiserver")
        _kubeconfig(kubeconfig, port, token, pki / "ca.crt")
        procs.start(state, "kube-apiserver", [
            str(bins / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{state.ports['etcd']}",
            # Inside the environment's network namespace: all its addresses are ours.
            "--bind-address=0.0.0.0", f"--secure-port={port}",
            f"--advertise-address={netns.NODE_IP}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            # The aggregation layer, for metrics.k8s.io (metrics-server).
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--enable-aggregator-routing=true",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}", f"--token-auth-file={token_file}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={netns.SERVICE_CIDR}", "--allow-privileged=true",
            "--enable-admission-plugins=PodSecurity,ServiceAccount,NamespaceLifecycle",
            *audit_args(run), "--profiling=false", "--v=1"], log,
            ready=lambda: _healthy(f"https://127.0.0.1:{port}/readyz", pki / "ca.crt", token),
            timeout=120)
    state.kubeconfig = str(kubeconfig)
    state.kubectl_dir = str(bins)
    state.save()

    _start_controller(state, bins, "kube-controller-manager", [
        "--controllers=*", f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        # Tests wait for these; the defaults are tuned for big clusters.
        "--concurrent-gc-syncs=5", "--horizontal-pod-autoscaler-sync-period=5s",
        # An HPA scales down 5 minutes after load ends by default; tests watch it happen.
        "--horizontal-pod-autoscaler-downscale-stabilization=15s",
        f"--kube-api-qps={CONTROLLER_QPS}", f"--kube-api-burst={CONTROLLER_BURST}"])
    _start_controller(state, bins, "kube-scheduler", [
        f"--kube-api-qps={CONTROLLER_QPS}", f"--kube-api-burst={CONTROLLER_BURST}"])

    if not procs.alive(state.pids.get("kwok")):
        stage_args = [f"--config={f}" for f in _kwok_stages(run)]
        port = procs.free_port()
        state.ports["kwok"] = port
        procs.start(state, "kwok", [
            str(kwok), f"--kubeconfig={kubeconfig}", *stage_args,
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=10.0.0.1", "--cidr=10.0.0.0/24", "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{port}"], log)
    _ensure_nodes(state)


def _start_controller(state: State, bins: Path, name: str, extra: list[str]) -> None:
    """kube-controller-manager or kube-scheduler: talks to the API server with the admin
    kubeconfig, serves its health endpoint on a free loopback port."""
    if procs.alive(state.pids.get(name)):
        return
    kubeconfig = state.kubeconfig
    port = procs.free_port()
    state.ports[name] = port
    procs.start(state, name, [
        str(bins / name), f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={port}",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics", "--v=1",
        *extra], paths.RUN, ready=lambda: _healthy(f"https://127.0.0.1:{port}/healthz"),
        timeout=60)


def _ensure_nodes(state: State) -> None:
    """Fake nodes that kwok keeps Ready, tainted: only pods that ask for them land there."""
    nodes = {
        "apiVersion": "v1", "kind": "List",
        "items": [{
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name,
                         "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"type": "kwok", "kubernetes.io/hostname": name,
                                    "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                    "topology.kubernetes.io/zone": f"zone-{i}"}},
            "spec": {"taints": [FAKE_NODE_TAINT]},
        } for i, name in enumerate(FAKE_NODES)],
    }
    kubectl(state, "apply", "-f", "-", input=yaml.safe_dump(nodes))
    procs.wait_until(
        "fake nodes Ready",
        lambda: kubectl(state, "get", "nodes", "-l", "type=kwok", "-o",
                        "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}"
                        ).stdout.split() == ["True"] * len(FAKE_NODES),
        60, state.pids["kwok"], paths.RUN / "kwok.log")


def kubectl(state: State, *args: str, input: str | None = None) -> Any:
    return procs.run([str(Path(state.kubectl_dir) / "kubectl"), f"--kubeconfig={state.kubeconfig}",
                      *args], input=input)


def stop(state: State) -> None:
    for name in ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        procs.stop(state.pids.pop(name, None))
    state.save()


