"""What one request of each kind costs the local kube-apiserver in CPU (issue 11).

Side A of `operator-scale` costs the API server more CPU than side B; this says which of
the operator's requests that CPU goes to. Against the running environment (`./hack/up`),
one request at a time, `--requests` of each kind, the kube-apiserver's and etcd's CPU
time read from /proc before and after, less what they spend idle over as long:

- the AuthorizationService's own writes and reads (a status merge patch as the operator
  sends it, a metadata merge patch as kopf sent its bookkeeping, a server-side apply, a
  create) on a copy of the installed CRD under a benchmark group, so that no operator
  watches or reconciles it: three copies, as shipped, without its CEL rules, and with
  spec and status unvalidated (`x-kubernetes-preserve-unknown-fields`), to show what
  validation adds;
- an Event, a GET of a Deployment, a Deployment's server-side apply (create, no-op).

The resource is the benchmark's (`scale_model.resource_spec`) with the status of the
sample resource `./hack/up` made (`rwadurian/authorization-service`). Removes its
namespace and CRDs at the end, also on failure. Prints the machine.

Usage (inside the environment's network namespace; `./hack/bench api-cost` does it):
    .venv/bin/python -m benchmarks.api_cost [--requests 300]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authz_operator.resources import FIELD_MANAGER as OPERATOR_MANAGER
from authz_operator.spec import GROUP, PLURAL, VERSION
from benchmarks.scale_cluster import FIELD_MANAGER, ScaleCluster
from benchmarks.scale_env import load_state
from benchmarks.scale_model import Obj, resource, resource_spec
from benchmarks.scale_watch import cpu_seconds
from benchmarks.service_bench import machine
from devenv import paths

SAMPLE = ("rwadurian", "authorization-service")
MERGE = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
SERVERS = ("kube-apiserver", "etcd")


@dataclass(frozen=True)
class Cost:
    label: str
    api_ms: float    # kube-apiserver CPU per request, idle time taken out
    etcd_ms: float
    wall_ms: float


def crd_variant(installed: Obj, group: str, how: str) -> Obj:
    """The installed CRD under `group`: as shipped, without CEL rules, or unvalidated."""
    crd = copy.deepcopy(installed)
    crd["metadata"] = {"name": f"{PLURAL}.{group}"}
    crd.pop("status", None)
    crd["spec"]["group"] = group
    [version] = crd["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    if how == "no-cel":
        _drop_cel(schema)
    elif how == "unvalidated":
        schema.pop("x-kubernetes-validations", None)
        for part in ("spec", "status"):
            schema["properties"][part] = {"type": "object",
                                          "x-kubernetes-preserve-unknown-fields": True}
    return crd


def _drop_cel(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("x-kubernetes-validations", None)
        for value in node.values():
            _drop_cel(value)
    elif isinstance(node, list):
        for value in node:
            _drop_cel(value)


class ApiCost(ScaleCluster):
    """The admin's client (ScaleCluster's), a scratch namespace and CRD copies, and the
    CPU the API server and etcd spend per request of each kind."""

    def __init__(self, run_dir: Path, requests: int) -> None:
        st = load_state(run_dir)
        super().__init__(st, run_dir, secrets.token_hex(3), resource_spec(2))
        self.requests = requests
        self.namespace = f"api-cost-{self.run_id}"
        self.crds: list[str] = []
        self.idle_per_second = dict.fromkeys(SERVERS, 0.0)

    def cpu(self) -> dict[str, float]:
        return cpu_seconds({name: self.st.pids.get(name) for name in SERVERS})

    def measure_idle(self, seconds: float = 3.0) -> None:
        before, started = self.cpu(), time.monotonic()
        time.sleep(seconds)
        after, spent = self.cpu(), time.monotonic() - started
        self.idle_per_second = {n: (after[n] - before[n]) / spent for n in SERVERS}

    def measure(self, label: str, request: Callable[[int], object]) -> Cost:
        request(-1)   # the first of a kind (a cold cache, a new field manager) is not counted
        before, started = self.cpu(), time.monotonic()
        for i in range(self.requests):
            request(i)
        after, spent = self.cpu(), time.monotonic() - started
        per = [((after[n] - before[n]) - self.idle_per_second[n] * spent) / self.requests
               * 1000 for n in SERVERS]
        cost = Cost(label, per[0], per[1], spent / self.requests * 1000)
        print(f"[api-cost] {label}: {cost.api_ms:.2f} ms", file=sys.stderr)
        return cost

    @contextlib.contextmanager
    def scratch(self) -> Iterator[None]:
        self.call("POST", "/api/v1/namespaces", {"metadata": {"name": self.namespace}})
        try:
            yield
        finally:
            with contextlib.suppress(RuntimeError):
                self.call("DELETE", f"/api/v1/namespaces/{self.namespace}")
            for name in self.crds:
                with contextlib.suppress(RuntimeError):
                    self.call("DELETE", f"{CRD_PATH}/{name}")
            with contextlib.suppress(OSError):   # ScaleCluster's folder for operator logs
                self.work.rmdir()

    def install_crd(self, installed: Obj, how: str) -> str:
        group = f"{how}.{self.run_id}.api-cost.bench"
        crd = crd_variant(installed, group, how)
        self.call("POST", CRD_PATH, crd)
        self.crds.append(crd["metadata"]["name"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = self.call("GET", f"{CRD_PATH}/{crd['metadata']['name']}")
            if any(c["type"] == "Established" and c["status"] == "True"
                   for c in (got.get("status") or {}).get("conditions") or []):
                return group
            time.sleep(0.2)
        raise RuntimeError(f"CRD {crd['metadata']['name']} not established in 60 s")

    def apply_one(self, path: str, obj: Obj) -> object:
        """Server-side apply of `obj` into the collection at `path`, by one request (not
        kubectl, whose discovery requests would count as the API server's work)."""
        name = obj["metadata"]["name"]
        return self.call("PATCH", f"{path}/{name}?fieldManager={FIELD_MANAGER}&force=true",
                         obj, APPLY)

    def resource_costs(self, group: str, how: str, status: Obj) -> list[Cost]:
        path = f"/apis/{group}/{VERSION}/namespaces/{self.namespace}/{PLURAL}"
        body = resource((self.namespace, "r"), self.spec)
        body["apiVersion"] = f"{group}/{VERSION}"
        self.apply_one(path, body)

        def status_patch(new: Obj) -> object:   # as the operator writes it
            return self.call("PATCH", f"{path}/r/status?fieldManager={OPERATOR_MANAGER}",
                             {"status": new}, MERGE)

        status_patch(status)
        size = len(json.dumps(self.call("GET", f"{path}/r")))   # defaults filled in

        def annotation_patch(i: int) -> object:
            return self.call("PATCH", f"{path}/r",
                             {"metadata": {"annotations": {"bench/n": str(i)}}}, MERGE)

        def apply(i: int) -> object:
            changed = copy.deepcopy(body)
            changed["metadata"]["annotations"] = {"bench/applied": str(i)}
            return self.apply_one(path, changed)

        def create(i: int) -> object:
            new = copy.deepcopy(body)
            new["metadata"]["name"] = f"c{i + 1}"
            return self.apply_one(path, new)

        costs = [self.measure(f"{how}: status merge patch (~{size // 1000} kB object)",
                              lambda i: status_patch({"readyReplicas": i % 3})),
                 self.measure(f"{how}: metadata merge patch (kopf's bookkeeping)",
                              annotation_patch)]
        if how == "shipped":
            costs += [self.measure(f"{how}: server-side apply, one annotation changed", apply),
                      self.measure(f"{how}: server-side apply, a new resource", create),
                      self.measure(f"{how}: GET", lambda i: self.call("GET", f"{path}/r"))]
        return costs

    def other_costs(self, template: Obj) -> list[Cost]:
        ns = self.namespace
        owner = {"apiVersion": "v1", "kind": "Namespace", "name": ns, "namespace": ns}

        def event(i: int) -> object:
            return self.call("POST", f"/api/v1/namespaces/{ns}/events", {
                "metadata": {"name": f"e.{secrets.token_hex(8)}"}, "involvedObject": owner,
                "type": "Normal", "reason": "Bench", "message": f"event {i}",
                "source": {"component": "api-cost"}, "count": 1})

        path = f"/apis/apps/v1/namespaces/{ns}/deployments"

        def deployment(name: str) -> Obj:
            return {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"replicas": 0, "selector": template["selector"],
                             "template": template["template"]}}

        self.apply_one(path, deployment("kept"))
        return [
            self.measure("an Event (POST)", event),
            self.measure("Deployment: server-side apply, a new one (0 replicas)",
                         lambda i: self.apply_one(path, deployment(f"d{i + 1}"))),
            self.measure("Deployment: server-side apply, nothing changed",
                         lambda i: self.apply_one(path, deployment("kept"))),
            self.measure("Deployment: GET", lambda i: self.call("GET", f"{path}/kept")),
        ]


def table(costs: Sequence[Cost]) -> list[str]:
    lines = ["| request | kube-apiserver CPU | etcd CPU | wall time |", "| --- | --- | --- | --- |"]
    lines += [f"| {c.label} | {c.api_ms:.2f} ms | {c.etcd_ms:.2f} ms | {c.wall_ms:.2f} ms |"
              for c in costs]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--run-dir", type=Path, default=paths.RUN)
    args = parser.parse_args(argv)
    bench = ApiCost(args.run_dir, args.requests)
    sample = bench.call("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{SAMPLE[0]}/{PLURAL}/"
                        f"{SAMPLE[1]}")
    template = bench.call("GET", f"/apis/apps/v1/namespaces/{SAMPLE[0]}/deployments/"
                          f"{SAMPLE[1]}")["spec"]
    installed = bench.call("GET", f"{CRD_PATH}/{PLURAL}.{GROUP}")
    costs: list[Cost] = []
    with bench.scratch():
        groups = {how: bench.install_crd(installed, how)
                  for how in ("shipped", "no-cel", "unvalidated")}
        bench.measure_idle()
        for how, group in groups.items():
            costs += bench.resource_costs(group, how, sample.get("status") or {})
        costs += bench.other_costs(template)
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"Machine: {machine()}")
    print(f"{args.requests} requests of each kind, one at a time; CPU of the API server and "
          f"etcd from /proc, less their idle rate ({bench.idle_per_second['kube-apiserver']:.3f}"
          f" and {bench.idle_per_second['etcd']:.3f} CPU s a second)\n")
    print("\n".join(table(costs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
